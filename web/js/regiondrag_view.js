// RegionDrag region editor: the view. Draws the shapes model (and what the pointer is doing) on
// the editor's canvas: background image, copy-paste preview or the graph's result (the last edit;
// both under the regions' outlines), regions tinted red (handle) and blue (target), arrows and pair
// numbers, point pairs as arrows from a handle point (red) to its target point (head and blue dot),
// the polygon being clicked, the point being placed, the brush cursor. `pointArrows` lists the
// point-pair arrows of the last frame (canvas pixels), for tests.
import { shapeCenter } from "./regiondrag_geometry.js";
import { previewPixels } from "./regiondrag_mapping.js";
import { isComplete } from "./regiondrag_model.js";

export const COLORS = {
  handle: { solid: "rgb(235, 40, 40)", label: "#e02020" },
  target: { solid: "rgb(30, 110, 250)", label: "#1a5fe0" },
};
const REGION_ALPHA = 0.42;

/** Begin a path on `ctx` through `points` (image pixels), mapped to the canvas by `m.f`. */
function tracePoints(ctx, points, m) {
  ctx.beginPath();
  points.forEach(([x, y], k) => {
    const [u, v] = m.f(x, y);
    if (k === 0) ctx.moveTo(u, v);
    else ctx.lineTo(u, v);
  });
}

/** A canvas holding the copy-paste preview of `pairs` on `image` (W x H). */
export function copyPastePreview(image, W, H, pairs) {
  const c = document.createElement("canvas");
  c.width = W;
  c.height = H;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(image, 0, 0, W, H);
  const src = ctx.getImageData(0, 0, W, H);
  ctx.putImageData(new ImageData(previewPixels(src.data, W, H, pairs), W, H), 0, 0);
  return c;
}

/**
 * A line from (x0, y0) to (x1, y1) with an arrow head at its end (unit direction (ux, uy), head length
 * `head`, half-width `spread` of it), stroked once per [style, width] in `strokes` (an outline first).
 */
function strokeArrow(ctx, x0, y0, x1, y1, ux, uy, head, spread, strokes) {
  for (const [style, width] of strokes) {
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.lineTo(x1, y1);
    ctx.moveTo(x1 - ux * head - uy * head * spread, y1 - uy * head + ux * head * spread);
    ctx.lineTo(x1, y1);
    ctx.lineTo(x1 - ux * head + uy * head * spread, y1 - uy * head - ux * head * spread);
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = width;
    ctx.strokeStyle = style;
    ctx.stroke();
  }
}

export class RegionView {
  /** `canvas`: the editor's canvas; `model`: a ShapesModel. */
  constructor(canvas, model) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.model = model;
    this.bg = null; // HTMLImageElement of the image being edited
    this.showPreview = false;
    this.previewCache = null;
    this.layer = null;
    this.pending = false;
    this.destroyed = false;
    this.pointArrows = []; // [{pair, index, from: [u, v], to: [u, v]}] drawn in the last frame
  }

  /** Size the canvas to fit `stage` (CSS px) with the image's aspect; backing store in device px. */
  layout(stageWidth, stageHeight) {
    if (!stageWidth || !stageHeight) return;
    const W = this.model.W || 1, H = this.model.H || 1;
    const s = Math.min(stageWidth / W, stageHeight / H);
    const cw = Math.max(1, Math.floor(W * s)), ch = Math.max(1, Math.floor(H * s));
    const dpr = window.devicePixelRatio || 1;
    this.canvas.style.width = `${cw}px`;
    this.canvas.style.height = `${ch}px`;
    const bw = Math.round(cw * dpr), bh = Math.round(ch * dpr);
    if (this.canvas.width !== bw || this.canvas.height !== bh) {
      this.canvas.width = bw;
      this.canvas.height = bh;
    }
  }

  /** Draw on the next animation frame; `state()` gives what the input is doing. */
  render(state) {
    this.state = state;
    if (this.pending || this.destroyed) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      try {
        this.draw(this.state());
      } catch (err) {
        console.warn("RegionDrag editor: drawing failed", err);
      }
    });
  }

  /** Image point -> canvas backing-store pixel. */
  mapper() {
    const { W, H } = this.model;
    const kx = this.canvas.width / (W || 1), ky = this.canvas.height / (H || 1);
    return { kx, ky, f: (x, y) => [(x + 0.5) * kx, (y + 0.5) * ky] };
  }

  previewCanvas(key) {
    const { W, H, pairs } = this.model;
    if (!this.previewCache || this.previewCache.key !== key || this.previewCache.bg !== this.bg) {
      const complete = pairs.filter(isComplete);
      this.previewCache = { key, bg: this.bg, canvas: copyPastePreview(this.bg, W, H, complete) };
    }
    return this.previewCache.canvas;
  }

  /** `s`: {tool, brushSize, hover, stroke, dragging, textKey, result (an image or null)}. */
  draw(s) {
    const { ctx, canvas, model } = this;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = "#1b1b1b";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    this.pointArrows = [];
    if (!model.W || !model.H) return;
    const result = !model.error && s.result ? s.result : null; // the edit the graph made (Result layer)
    const preview = !result && this.showPreview && this.bg && !model.error;
    const background = result || (preview ? this.previewCanvas(s.textKey) : this.bg);
    if (background) {
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(background, 0, 0, canvas.width, canvas.height);
    }
    if (model.error) return;
    const m = this.mapper();
    const dpr = window.devicePixelRatio || 1;
    const layer = this.layerCanvas();
    const pairs = model.pairs;
    const open = model.openBrush;
    const last = pairs.length - 1;
    pairs.forEach((pair, i) => {
      for (const side of ["handle", "target"]) {
        let shape = pair[side];
        if (!shape) continue;
        if (s.stroke && i === last && open === side && shape.type === "brush") {
          shape = { type: "brush", strokes: [...shape.strokes, s.stroke] };
        }
        const sel = model.selected?.pair === i && model.selected?.side === side;
        this.drawShape(shape, COLORS[side], m, dpr, layer, { outlineOnly: !!(preview || result), selected: sel });
      }
    });
    // the stroke being painted, when it starts a new region
    if (s.stroke && !(open && pairs[last]?.[open]?.type === "brush")) {
      const side = model.currentSide().side;
      this.drawShape({ type: "brush", strokes: [s.stroke] }, COLORS[side], m, dpr, layer, {});
    }
    for (const pair of pairs) {
      if (pair.handle && pair.target) this.drawArrow(shapeCenter(pair.handle), shapeCenter(pair.target), m, dpr);
    }
    pairs.forEach((pair, i) => {
      for (const side of ["handle", "target"]) {
        if (pair[side]) this.drawLabel(String(i + 1), shapeCenter(pair[side]), COLORS[side].label, m, dpr);
      }
    });
    const arrows = [];
    pairs.forEach((pair, i) => {
      (pair.points || []).forEach((q, k) => {
        const sel = model.selected?.side === "point" && model.selected.pair === i && model.selected.index === k
          ? model.selected.end : null;
        arrows.push({ pair: i, index: k, ...this.drawPointPair(q.handle, q.target, m, dpr, sel) });
      });
    });
    this.pointArrows = arrows;
    const pp = model.pendingPoint;
    if (pp) this.drawPendingPoint(pp.handle, s.tool === "points" ? s.hover : null, m, dpr);
    this.drawDraft(m, dpr, s.hover);
    if (s.tool === "brush" && s.hover && !s.dragging) {
      const [u, v] = m.f(...s.hover);
      ctx.beginPath();
      ctx.ellipse(u, v, (s.brushSize / 2) * m.kx, (s.brushSize / 2) * m.ky, 0, 0, 2 * Math.PI);
      ctx.lineWidth = 1.5 * dpr;
      ctx.strokeStyle = "rgba(255,255,255,0.9)";
      ctx.stroke();
    }
  }

  layerCanvas() {
    if (!this.layer) this.layer = document.createElement("canvas");
    if (this.layer.width !== this.canvas.width || this.layer.height !== this.canvas.height) {
      this.layer.width = this.canvas.width;
      this.layer.height = this.canvas.height;
    }
    return this.layer;
  }

  /** Paint a brush shape opaque on a layer, each stroke `grow` device px wider than its size. */
  paintBrush(lc, shape, m, grow) {
    lc.lineCap = "round";
    lc.lineJoin = "round";
    for (const st of shape.strokes) {
      const [u0, v0] = m.f(...st.points[0]);
      const rx = (st.size / 2) * m.kx + grow / 2, ry = (st.size / 2) * m.ky + grow / 2;
      lc.beginPath();
      lc.ellipse(u0, v0, rx, ry, 0, 0, 2 * Math.PI);
      lc.fill();
      if (st.points.length > 1) {
        lc.lineWidth = st.size * m.kx + grow;
        tracePoints(lc, st.points, m);
        lc.stroke();
      }
    }
  }

  drawShape(shape, color, m, dpr, layer, { outlineOnly = false, selected = false }) {
    const ctx = this.ctx;
    const path = (c) => {
      tracePoints(c, shape.points, m);
      c.closePath();
    };
    const lc = layer.getContext("2d");
    const resetLayer = (style) => {
      lc.setTransform(1, 0, 0, 1, 0, 0);
      lc.globalCompositeOperation = "source-over";
      lc.clearRect(0, 0, layer.width, layer.height);
      lc.fillStyle = style;
      lc.strokeStyle = style;
    };
    const lineColor = selected ? "#ffe14d" : color.solid;
    if (!outlineOnly) {
      // Opaque on a layer, then blended once: overlapping strokes do not darken.
      resetLayer(color.solid);
      if (shape.type === "polygon") {
        path(lc);
        lc.fill();
      } else {
        this.paintBrush(lc, shape, m, 0);
      }
      ctx.save();
      ctx.globalAlpha = selected ? 0.6 : REGION_ALPHA;
      ctx.drawImage(layer, 0, 0);
      ctx.restore();
    }
    if (shape.type === "polygon") {
      path(ctx);
      ctx.lineJoin = "round";
      ctx.lineWidth = (selected ? 3 : 2) * dpr;
      ctx.setLineDash(outlineOnly ? [5 * dpr, 4 * dpr] : []);
      ctx.strokeStyle = lineColor;
      ctx.stroke();
      ctx.setLineDash([]);
      if (selected) {
        ctx.fillStyle = lineColor;
        for (const [x, y] of shape.points) {
          const [u, v] = m.f(x, y);
          ctx.fillRect(u - 4 * dpr, v - 4 * dpr, 8 * dpr, 8 * dpr);
        }
      }
    } else if (outlineOnly || selected) {
      // outline: the shape grown by the line width, minus the shape
      const w = (selected ? 3 : 2) * dpr;
      resetLayer(lineColor);
      this.paintBrush(lc, shape, m, 2 * w);
      lc.globalCompositeOperation = "destination-out";
      this.paintBrush(lc, shape, m, 0);
      lc.globalCompositeOperation = "source-over";
      ctx.drawImage(layer, 0, 0);
    }
  }

  drawArrow(a, b, m, dpr) {
    const ctx = this.ctx;
    const [x0, y0] = m.f(...a);
    const [x1, y1] = m.f(...b);
    const len = Math.hypot(x1 - x0, y1 - y0);
    if (len < 24 * dpr) return;
    const ux = (x1 - x0) / len, uy = (y1 - y0) / len;
    const sx = x0 + ux * 11 * dpr, sy = y0 + uy * 11 * dpr; // leave the number badges free
    const ex = x1 - ux * 11 * dpr, ey = y1 - uy * 11 * dpr;
    const head = 9 * dpr;
    const grad = ctx.createLinearGradient(sx, sy, ex, ey);
    grad.addColorStop(0, COLORS.handle.solid);
    grad.addColorStop(1, COLORS.target.solid);
    strokeArrow(ctx, sx, sy, ex, ey, ux, uy, head, 0.55, [["rgba(0,0,0,0.7)", 5 * dpr], [grad, 2.5 * dpr]]);
  }

  /**
   * A point pair of a region + points pair: a red dot at the handle point, an arrow with its head
   * on the target point, a small blue dot there. `selected`: "handle" | "target" ringed in yellow.
   * Returns {from, to} in canvas pixels.
   */
  drawPointPair(a, b, m, dpr, selected = null) {
    const ctx = this.ctx;
    const [x0, y0] = m.f(...a);
    const [x1, y1] = m.f(...b);
    const len = Math.hypot(x1 - x0, y1 - y0);
    if (len > 1) {
      const ux = (x1 - x0) / len, uy = (y1 - y0) / len;
      const head = Math.min(10 * dpr, len * 0.6);
      strokeArrow(ctx, x0, y0, x1, y1, ux, uy, head, 0.5, [["rgba(0,0,0,0.75)", 5 * dpr], ["#fff", 2.5 * dpr]]);
    }
    for (const [u, v, c, r, end] of [[x0, y0, COLORS.handle.solid, 5, "handle"], [x1, y1, COLORS.target.solid, 3.5, "target"]]) {
      ctx.beginPath();
      ctx.arc(u, v, r * dpr, 0, 2 * Math.PI);
      ctx.fillStyle = c;
      ctx.fill();
      ctx.lineWidth = (selected === end ? 3 : 1.5) * dpr;
      ctx.strokeStyle = selected === end ? "#ffe14d" : "#fff";
      ctx.stroke();
    }
    return { from: [x0, y0], to: [x1, y1] };
  }

  /** The handle point being placed, and a dashed line to the pointer. */
  drawPendingPoint(a, hover, m, dpr) {
    const ctx = this.ctx;
    const [x0, y0] = m.f(...a);
    if (hover) {
      ctx.beginPath();
      ctx.moveTo(x0, y0);
      ctx.lineTo(...m.f(...hover));
      ctx.lineWidth = 2 * dpr;
      ctx.strokeStyle = "#fff";
      ctx.setLineDash([6 * dpr, 4 * dpr]);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    ctx.beginPath();
    ctx.arc(x0, y0, 5 * dpr, 0, 2 * Math.PI);
    ctx.fillStyle = COLORS.handle.solid;
    ctx.fill();
    ctx.lineWidth = 2 * dpr;
    ctx.strokeStyle = "#ffe14d";
    ctx.stroke();
  }

  drawLabel(text, at, color, m, dpr) {
    const ctx = this.ctx;
    const [u, v] = m.f(...at);
    const r = 9 * dpr;
    ctx.beginPath();
    ctx.arc(u, v, r, 0, 2 * Math.PI);
    ctx.fillStyle = color;
    ctx.fill();
    ctx.lineWidth = 1.5 * dpr;
    ctx.strokeStyle = "#fff";
    ctx.stroke();
    ctx.fillStyle = "#fff";
    ctx.font = `bold ${11 * dpr}px sans-serif`;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(text, u, v + 0.5 * dpr);
  }

  drawDraft(m, dpr, hover) {
    const d = this.model.draft;
    if (!d.length) return;
    const ctx = this.ctx;
    const color = COLORS[this.model.currentSide().side].solid;
    tracePoints(ctx, d, m);
    if (hover) ctx.lineTo(...m.f(...hover));
    ctx.lineWidth = 2 * dpr;
    ctx.strokeStyle = color;
    ctx.setLineDash([6 * dpr, 4 * dpr]);
    ctx.stroke();
    ctx.setLineDash([]);
    d.forEach(([x, y], k) => {
      const [u, v] = m.f(x, y);
      ctx.beginPath();
      ctx.arc(u, v, (k === 0 ? 6 : 3.5) * dpr, 0, 2 * Math.PI);
      ctx.fillStyle = k === 0 ? "#fff" : color;
      ctx.fill();
      ctx.lineWidth = 2 * dpr;
      ctx.strokeStyle = color;
      ctx.stroke();
    });
  }
}
