// RegionDrag region editor: draw handle (red) / target (blue) region pairs on RegionMaskPair.
//
// The node's `shapes` STRING widget keeps the regions as JSON (format: regiondrag_core/regions.py,
// coordinates in image pixels, pixel centres on integers) and is what the workflow saves and the
// backend reads; this editor is a view of that text. Its textarea is hidden (the JSON button shows
// it). Text it cannot read is left untouched for the backend to report, and the editor says so.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";
import {
  clonePairs,
  copyPastePreview,
  hitShape,
  parseShapes,
  polygonProblem,
  scaleShape,
  serializeShapes,
  shapeCenter,
  translateShape,
} from "./regiondrag_geometry.js";

const NODE_TYPE = "RegionMaskPair";
const COLORS = {
  handle: { solid: "rgb(235, 40, 40)", label: "#e02020" },
  target: { solid: "rgb(30, 110, 250)", label: "#1a5fe0" },
};
const REGION_ALPHA = 0.42;
const CLOSE_PX = 9; // screen px: a click this close to the first corner closes a polygon
const HISTORY_MAX = 100;
const DEFAULT_BRUSH = 24;

function chainCallback(object, property, callback) {
  const original = object[property];
  object[property] = function (...args) {
    const r = original?.apply(this, args);
    callback.apply(this, args);
    return r;
  };
}

function injectStyle() {
  if (document.getElementById("regiondrag-editor-style")) return;
  const style = document.createElement("style");
  style.id = "regiondrag-editor-style";
  style.textContent = `
.regiondrag-editor { display: flex; flex-direction: column; width: 100%; height: 100%; box-sizing: border-box;
  gap: 4px; font: 12px sans-serif; color: var(--input-text, #ddd); outline: none; }
.regiondrag-editor .rd-toolbar { display: flex; flex-wrap: wrap; gap: 3px; align-items: center; flex: 0 0 auto; }
.regiondrag-editor button { font: 12px sans-serif; padding: 2px 7px; border-radius: 4px; cursor: pointer;
  color: var(--input-text, #ddd); background: var(--comfy-input-bg, #222); border: 1px solid var(--border-color, #555); }
.regiondrag-editor button[aria-pressed="true"] { background: #3b5f8f; border-color: #7aa7e0; color: #fff; }
.regiondrag-editor button:disabled { opacity: 0.4; cursor: default; }
.regiondrag-editor .rd-size { display: inline-flex; align-items: center; gap: 3px; }
.regiondrag-editor .rd-size input { width: 70px; }
.regiondrag-editor .rd-sep { width: 1px; align-self: stretch; background: var(--border-color, #555); margin: 0 2px; }
.regiondrag-editor .rd-stage { position: relative; flex: 1 1 auto; min-height: 0; display: flex;
  align-items: center; justify-content: center; overflow: hidden; background: rgba(0, 0, 0, 0.25); border-radius: 4px; }
.regiondrag-editor canvas { display: block; touch-action: none; }
.regiondrag-editor .rd-overlay { position: absolute; left: 8px; right: 8px; bottom: 8px;
  pointer-events: none; text-align: center; padding: 8px 10px; border-radius: 6px; line-height: 1.45;
  background: rgba(0, 0, 0, 0.62); color: #fff; white-space: pre-line; }
.regiondrag-editor .rd-overlay.rd-error { background: rgba(120, 0, 0, 0.88); bottom: auto; top: 50%; transform: translateY(-50%); }
.regiondrag-editor .rd-overlay[hidden] { display: none; }
.regiondrag-editor .rd-status { flex: 0 0 auto; min-height: 2.6em; line-height: 1.3em; opacity: 0.9; }
.regiondrag-editor .rd-status.rd-warn { color: #ffb347; }
`;
  document.head.appendChild(style);
}

function el(tag, props = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(e.dataset, v);
    else if (k in e) e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

/** Begin a path on `ctx` through `points` (image pixels), mapped to the canvas by `m.f`. */
function tracePoints(ctx, points, m) {
  ctx.beginPath();
  points.forEach(([x, y], k) => {
    const [u, v] = m.f(x, y);
    if (k === 0) ctx.moveTo(u, v);
    else ctx.lineTo(u, v);
  });
}

/** `/view` URL of a LoadImage-style widget value ("sub/name.png", optionally "name.png [output]"). */
function viewUrlForFileValue(value) {
  let name = String(value).trim();
  let type = "input";
  const m = name.match(/^(.*) \[(input|output|temp)\]$/);
  if (m) {
    name = m[1];
    type = m[2];
  }
  const slash = name.lastIndexOf("/");
  const subfolder = slash >= 0 ? name.slice(0, slash) : "";
  const filename = slash >= 0 ? name.slice(slash + 1) : name;
  if (!filename) return null;
  const q = new URLSearchParams({ filename, type, subfolder });
  return api.apiURL(`/view?${q}`);
}

class RegionEditor {
  constructor(node, shapesWidget) {
    this.node = node;
    this.widget = shapesWidget;
    this.pairs = []; // [{handle: SHAPE, target: SHAPE|null}], only the last may lack its target
    this.W = null; // coordinate space: image pixels
    this.H = null;
    this.error = null; // the widget's text could not be read
    this.tool = "polygon";
    this.draft = []; // polygon corners being clicked
    this.openBrush = null; // "handle" | "target": the last pair's brush side still being painted
    this.stroke = null; // brush stroke being dragged
    this.selected = null; // {pair, side}
    this.drag = null;
    this.hover = null;
    this.history = [];
    this.showPreview = false;
    this.previewCache = null;
    this.bg = null; // loaded background image
    this.bgUrl = null;
    this.linkUrl = undefined; // URL of the connected LoadImage's file (checked every frame)
    this.bgError = null;
    this.lastText = undefined;
    this.notice = null; // one-off warning in the status line
    if (!node.properties) node.properties = {};
    this.brushSize = Number(node.properties.regiondrag_brush_size) || DEFAULT_BRUSH;
    this.buildDom();
    this.loadFromWidget(true);
  }

  // ------------------------------------------------------------------------------- DOM

  buildDom() {
    injectStyle();
    const b = (label, title, data) => el("button", { type: "button", textContent: label, title, dataset: data });
    this.toolButtons = {
      polygon: b("Polygon", "Click corners; click the first corner, double-click or press Enter to close", { tool: "polygon" }),
      brush: b("Brush", "Paint a region; press Enter or Done to finish it", { tool: "brush" }),
      select: b("Select", "Drag a region to move it, drag a corner to reshape it", { tool: "select" }),
    };
    this.sizeInput = el("input", { type: "range", min: "1", max: "256", step: "1", value: String(this.brushSize),
      title: "Brush diameter in image pixels" });
    this.sizeLabel = el("span", { textContent: String(this.brushSize) });
    this.actionButtons = {
      done: b("Done", "Finish the brush region being painted (Enter)", { action: "done" }),
      undo: b("Undo", "Undo the last change", { action: "undo" }),
      delete: b("Delete", "Delete the selected pair (Delete key)", { action: "delete" }),
      clear: b("Clear", "Remove all regions", { action: "clear" }),
      preview: b("Preview", "Show the pixel copy-paste preview of the edit", { action: "preview" }),
      json: b("JSON", "Show or hide the shapes JSON text", { action: "json" }),
    };
    const sep = () => el("span", { className: "rd-sep" });
    this.toolbar = el("div", { className: "rd-toolbar" }, [
      ...Object.values(this.toolButtons),
      el("label", { className: "rd-size" }, ["Size", this.sizeInput, this.sizeLabel]),
      this.actionButtons.done,
      sep(),
      this.actionButtons.undo,
      this.actionButtons.delete,
      this.actionButtons.clear,
      sep(),
      this.actionButtons.preview,
      this.actionButtons.json,
    ]);
    this.canvas = el("canvas", { className: "rd-canvas" });
    this.ctx = this.canvas.getContext("2d");
    this.overlay = el("div", { className: "rd-overlay", hidden: true });
    this.stage = el("div", { className: "rd-stage" }, [this.canvas, this.overlay]);
    this.status = el("div", { className: "rd-status" });
    this.root = el("div", { className: "regiondrag-editor", tabIndex: 0 }, [this.toolbar, this.stage, this.status]);

    this.toolbar.addEventListener("click", (e) => {
      const btn = e.target.closest("button");
      if (!btn || btn.disabled) return;
      if (btn.dataset.tool) this.setTool(btn.dataset.tool);
      else this.action(btn.dataset.action);
    });
    this.sizeInput.addEventListener("input", () => {
      this.brushSize = Number(this.sizeInput.value) || DEFAULT_BRUSH;
      this.node.properties.regiondrag_brush_size = this.brushSize;
      this.sizeLabel.textContent = String(this.brushSize);
      this.render();
    });
    this.canvas.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    this.canvas.addEventListener("pointermove", (e) => this.onPointerMove(e));
    this.canvas.addEventListener("pointerup", (e) => this.onPointerUp(e));
    this.canvas.addEventListener("pointercancel", (e) => this.onPointerUp(e));
    this.canvas.addEventListener("pointerleave", () => {
      this.hover = null;
      this.render();
    });
    this.canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    this.root.addEventListener("keydown", (e) => this.onKeyDown(e));
    // Wheel zooms the graph as elsewhere on the node.
    this.root.addEventListener("wheel", (e) => {
      const gc = app.canvas?.canvas;
      if (!gc) return;
      e.preventDefault();
      gc.dispatchEvent(new WheelEvent(e.type, e));
    }, { passive: false });
    this.resizeObserver = new ResizeObserver(() => this.layout());
    this.resizeObserver.observe(this.stage);
  }

  destroy() {
    this.resizeObserver?.disconnect();
    this.destroyed = true;
  }

  // ------------------------------------------------------------------ widget <-> state

  /** Read the widget's text (after load, configure, hand edits). Never throws. */
  loadFromWidget(force = false) {
    const text = this.widget.value ?? "";
    if (!force && text === this.lastText) return;
    this.lastText = text;
    const r = parseShapes(text);
    this.draft = [];
    this.stroke = null;
    this.drag = null;
    this.selected = null;
    this.openBrush = null;
    this.previewCache = null;
    if (!r.ok) {
      this.error = r.error;
      this.pairs = [];
    } else {
      this.error = null;
      this.pairs = r.pairs;
      if (r.width) {
        this.W = r.width;
        this.H = r.height;
      } else if (this.bg) {
        this.W = this.bg.naturalWidth;
        this.H = this.bg.naturalHeight;
      }
    }
    this.layout();
    this.update();
  }

  /** Write the state into the widget (the workflow's copy). */
  save() {
    const text = this.pairs.length ? serializeShapes(this.W, this.H, this.pairs) : "";
    this.lastText = text;
    this.widget.value = text;
    this.previewCache = null;
    this.node.setDirtyCanvas?.(true, true);
  }

  pushHistory() {
    this.history.push({ pairs: clonePairs(this.pairs), openBrush: this.openBrush, W: this.W, H: this.H });
    if (this.history.length > HISTORY_MAX) this.history.shift();
  }

  // ------------------------------------------------------------------------- image

  /** The connected LoadImage's file, when the upstream node names one; checked every frame. */
  checkSource() {
    const url = this.sourceUrl();
    if (url === this.linkUrl) return;
    this.linkUrl = url;
    if (url) this.setBackground(url);
  }

  sourceUrl() {
    const node = this.node;
    const slot = node.findInputSlot?.("image") ?? -1;
    if (slot < 0 || node.inputs?.[slot]?.link == null) return null;
    let src = null;
    try {
      src = node.getInputNode(slot);
    } catch {
      return null;
    }
    const w = src?.widgets?.find((x) => x.name === "image" && typeof x.value === "string");
    if (!w || !w.value) return null;
    return viewUrlForFileValue(w.value);
  }

  onExecuted(message) {
    const img = message?.images?.[0];
    if (!img?.filename) return;
    const q = new URLSearchParams({ filename: img.filename, type: img.type || "output", subfolder: img.subfolder || "" });
    this.setBackground(api.apiURL(`/view?${q}`));
  }

  setBackground(url) {
    if (url === this.bgUrl && this.bg) return;
    this.bgUrl = url;
    const img = new Image();
    img.onload = () => {
      if (this.bgUrl !== url || this.destroyed) return;
      this.bg = img;
      this.bgError = null;
      this.previewCache = null;
      this.adoptImageSize(img.naturalWidth, img.naturalHeight);
      this.canvas.dataset.imageWidth = String(img.naturalWidth);
      this.canvas.dataset.imageHeight = String(img.naturalHeight);
      this.canvas.dataset.background = "loaded";
      this.layout();
      this.update();
    };
    img.onerror = () => {
      if (this.bgUrl !== url || this.destroyed) return;
      this.bg = null;
      this.bgError = "The connected image could not be loaded; run the graph once to show it here.";
      this.canvas.dataset.background = "error";
      this.update();
    };
    img.src = url;
  }

  /** The image's size is the coordinate space; shapes drawn on another size are rescaled to it. */
  adoptImageSize(w, h) {
    if (this.error) return;
    if (this.W && this.H && (this.W !== w || this.H !== h) && this.pairs.length) {
      const sx = w / this.W, sy = h / this.H;
      this.pushHistory();
      this.pairs = this.pairs.map((p) => ({
        handle: scaleShape(p.handle, sx, sy),
        target: p.target ? scaleShape(p.target, sx, sy) : null,
      }));
      this.draft = this.draft.map(([x, y]) => [(x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5]);
      this.W = w;
      this.H = h;
      this.save();
    } else {
      this.W = w;
      this.H = h;
    }
  }

  // ------------------------------------------------------------------------ geometry

  /** Image pixel coordinates of a pointer event (pixel centres on integers). */
  toImage(e) {
    const r = this.canvas.getBoundingClientRect();
    return [((e.clientX - r.left) / r.width) * this.W - 0.5, ((e.clientY - r.top) / r.height) * this.H - 0.5];
  }

  /** Image px per screen px (the node may be zoomed). */
  pxScale() {
    const r = this.canvas.getBoundingClientRect();
    return r.width > 0 ? this.W / r.width : 1;
  }

  canDraw() {
    return !this.error && this.W > 0 && this.H > 0;
  }

  currentSide() {
    const last = this.pairs[this.pairs.length - 1];
    if (last && !last.target) return { index: this.pairs.length - 1, side: "target" };
    return { index: this.pairs.length, side: "handle" };
  }

  commitShape(shape) {
    const last = this.pairs[this.pairs.length - 1];
    if (last && !last.target) {
      last.target = shape;
      return "target";
    }
    this.pairs.push({ handle: shape, target: null });
    return "handle";
  }

  // ------------------------------------------------------------------------- actions

  setTool(tool) {
    if (this.tool === tool) return;
    this.finishOpen();
    this.tool = tool;
    if (tool !== "select") this.selected = null;
    this.update();
  }

  /** Close the polygon being clicked (if it can be) and end the brush region being painted. */
  finishOpen() {
    if (this.draft.length) this.closePolygon();
    this.openBrush = null;
  }

  closePolygon() {
    const pts = this.draft;
    const problem = polygonProblem(pts);
    if (problem) {
      this.notice = `This region ${problem}: add or remove corners (Backspace) or press Esc to start over.`;
      this.update();
      return false;
    }
    this.pushHistory();
    this.openBrush = null;
    this.commitShape({ type: "polygon", points: pts.map(([x, y]) => [x, y]) });
    this.draft = [];
    this.save();
    this.update();
    return true;
  }

  action(name) {
    switch (name) {
      case "done":
        this.finishOpen();
        break;
      case "undo":
        this.undo();
        break;
      case "delete":
        this.deleteSelected();
        break;
      case "clear":
        this.clear();
        break;
      case "preview":
        this.showPreview = !this.showPreview;
        break;
      case "json":
        setWidgetShown(this.widget, !!this.widget.hidden);
        this.node.setSize([this.node.size[0], Math.max(this.node.size[1], this.node.computeSize()[1])]);
        this.node.setDirtyCanvas?.(true, true);
        break;
    }
    this.update();
  }

  undo() {
    if (this.draft.length) {
      this.draft.pop();
      this.update();
      return;
    }
    const prev = this.history.pop();
    if (!prev) return;
    this.pairs = prev.pairs;
    this.openBrush = prev.openBrush;
    this.W = prev.W;
    this.H = prev.H;
    this.selected = null;
    this.save();
    this.update();
  }

  deleteSelected() {
    if (!this.selected) return;
    this.pushHistory();
    this.pairs.splice(this.selected.pair, 1);
    this.selected = null;
    this.openBrush = null;
    this.save();
    this.update();
  }

  clear() {
    if (!this.pairs.length && !this.draft.length && !this.error) return;
    if (!this.error) this.pushHistory();
    this.pairs = [];
    this.draft = [];
    this.openBrush = null;
    this.selected = null;
    this.error = null;
    if (this.bg) {
      this.W = this.bg.naturalWidth;
      this.H = this.bg.naturalHeight;
    }
    this.save();
    this.layout();
    this.update();
  }

  // -------------------------------------------------------------------------- input

  onPointerDown(e) {
    if (e.button === 1) {
      app.canvas?.processMouseDown?.(e); // middle button pans the graph
      return;
    }
    if (e.button !== 0) return;
    this.root.focus({ preventScroll: true });
    this.notice = null;
    if (!this.canDraw()) {
      this.update();
      return;
    }
    const p = this.toImage(e);
    const tol = CLOSE_PX * this.pxScale();
    if (this.tool === "polygon") {
      this.openBrush = null;
      const d = this.draft;
      if (d.length >= 3 && Math.hypot(p[0] - d[0][0], p[1] - d[0][1]) <= tol) {
        this.closePolygon();
      } else if (d.length && Math.hypot(p[0] - d[d.length - 1][0], p[1] - d[d.length - 1][1]) <= tol * 0.6) {
        if (d.length >= 3) this.closePolygon(); // second click of a double-click
      } else {
        d.push(p);
        this.update();
      }
      return;
    }
    if (this.tool === "brush") {
      this.canvas.setPointerCapture?.(e.pointerId);
      this.stroke = { size: this.brushSize, points: [p] };
      this.render();
      return;
    }
    // select: a corner of the selected polygon, else the topmost region under the pointer
    const sel = this.selectedShape();
    if (sel?.type === "polygon") {
      const k = sel.points.findIndex(([x, y]) => Math.hypot(p[0] - x, p[1] - y) <= tol);
      if (k >= 0) {
        this.startDrag(e, { kind: "vertex", vertex: k, start: p, orig: clonePairs(this.pairs) });
        return;
      }
    }
    const hit = this.hitTest(p, tol * 0.5);
    this.selected = hit;
    if (hit) this.startDrag(e, { kind: "move", start: p, orig: clonePairs(this.pairs) });
    this.update();
  }

  startDrag(e, drag) {
    this.canvas.setPointerCapture?.(e.pointerId);
    this.drag = { ...drag, moved: false };
  }

  onPointerMove(e) {
    if ((e.buttons & 4) === 4) {
      app.canvas?.processMouseMove?.(e);
      return;
    }
    if (!this.canDraw()) return;
    const p = this.toImage(e);
    this.hover = p;
    if (this.stroke) {
      const pts = this.stroke.points;
      const [lx, ly] = pts[pts.length - 1];
      if (Math.hypot(p[0] - lx, p[1] - ly) >= Math.max(0.5, this.pxScale())) pts.push(p);
    } else if (this.drag && this.selected) {
      const dx = p[0] - this.drag.start[0], dy = p[1] - this.drag.start[1];
      this.drag.moved = this.drag.moved || Math.hypot(dx, dy) > 0;
      const { pair, side } = this.selected;
      const orig = this.drag.orig[pair][side];
      if (this.drag.kind === "move") {
        this.pairs[pair][side] = translateShape(orig, dx, dy);
      } else {
        const pts = orig.points.map((q) => [q[0], q[1]]);
        pts[this.drag.vertex] = [pts[this.drag.vertex][0] + dx, pts[this.drag.vertex][1] + dy];
        this.pairs[pair][side] = { type: "polygon", points: pts };
      }
    }
    this.render();
  }

  onPointerUp(e) {
    if (e.button === 1) {
      app.canvas?.processMouseUp?.(e);
      return;
    }
    if (this.stroke) {
      const stroke = this.stroke;
      this.stroke = null;
      this.pushHistory();
      const last = this.pairs[this.pairs.length - 1];
      if (this.openBrush && last?.[this.openBrush]?.type === "brush") {
        last[this.openBrush].strokes.push(stroke);
      } else {
        this.openBrush = this.commitShape({ type: "brush", strokes: [stroke] });
      }
      this.save();
      this.update();
    } else if (this.drag) {
      const drag = this.drag;
      this.drag = null;
      if (drag.moved) {
        const { pair, side } = this.selected;
        const moved = this.pairs[pair][side];
        if (moved.type === "polygon" && polygonProblem(moved.points)) {
          this.pairs = drag.orig; // the backend would reject a polygon that crosses itself
          this.notice = "That would make the region cross itself; the corner was put back.";
        } else {
          this.history.push({ pairs: drag.orig, openBrush: this.openBrush, W: this.W, H: this.H });
          this.save();
        }
      }
      this.update();
    }
    try {
      this.canvas.releasePointerCapture?.(e.pointerId);
    } catch {
      /* not captured */
    }
  }

  onKeyDown(e) {
    const handled = () => {
      e.preventDefault();
      e.stopPropagation(); // keep Delete/Backspace/Enter from reaching the graph
    };
    if (e.ctrlKey || e.metaKey || e.altKey) return; // Ctrl+Z etc. stay ComfyUI's (its undo restores the shapes too)
    switch (e.key) {
      case "Enter":
        handled();
        this.finishOpen();
        this.update();
        break;
      case "Escape":
        if (this.draft.length || this.selected || this.openBrush) {
          handled();
          this.draft = [];
          this.selected = null;
          this.openBrush = null;
          this.notice = null;
          this.update();
        }
        break;
      case "Backspace":
      case "Delete":
        handled();
        if (this.draft.length) {
          this.draft.pop();
          this.update();
        } else if (this.selected) {
          this.deleteSelected();
        }
        break;
    }
  }

  selectedShape() {
    const s = this.selected;
    return s ? this.pairs[s.pair]?.[s.side] ?? null : null;
  }

  hitTest(p, tol) {
    for (let i = this.pairs.length - 1; i >= 0; i--) {
      for (const side of ["target", "handle"]) {
        const shape = this.pairs[i][side];
        if (shape && hitShape(shape, p[0], p[1], tol)) return { pair: i, side };
      }
    }
    return null;
  }

  // ------------------------------------------------------------------------ drawing

  layout() {
    const sw = this.stage.clientWidth, sh = this.stage.clientHeight;
    if (!sw || !sh) return;
    const W = this.W || 1, H = this.H || 1;
    const s = Math.min(sw / W, sh / H);
    const cw = Math.max(1, Math.floor(W * s)), ch = Math.max(1, Math.floor(H * s));
    const dpr = window.devicePixelRatio || 1;
    this.canvas.style.width = `${cw}px`;
    this.canvas.style.height = `${ch}px`;
    const bw = Math.round(cw * dpr), bh = Math.round(ch * dpr);
    if (this.canvas.width !== bw || this.canvas.height !== bh) {
      this.canvas.width = bw;
      this.canvas.height = bh;
    }
    this.render();
  }

  update() {
    this.updateControls();
    this.render();
  }

  render() {
    if (this.renderPending || this.destroyed) return;
    this.renderPending = true;
    requestAnimationFrame(() => {
      this.renderPending = false;
      try {
        this.draw();
      } catch (err) {
        console.warn("RegionDrag editor: drawing failed", err);
      }
    });
  }

  /** Image point -> canvas backing-store pixel. */
  mapper() {
    const kx = this.canvas.width / (this.W || 1), ky = this.canvas.height / (this.H || 1);
    return { kx, ky, f: (x, y) => [(x + 0.5) * kx, (y + 0.5) * ky] };
  }

  draw() {
    const { ctx, canvas } = this;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = "#1b1b1b";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (!this.W || !this.H) return;
    let background = this.bg;
    const preview = this.showPreview && this.bg && !this.error;
    if (preview) {
      const key = this.lastText;
      if (!this.previewCache || this.previewCache.key !== key || this.previewCache.bg !== this.bg) {
        const complete = this.pairs.filter((p) => p.handle && p.target);
        this.previewCache = { key, bg: this.bg, canvas: copyPastePreview(this.bg, this.W, this.H, complete) };
      }
      background = this.previewCache.canvas;
    }
    if (background) {
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(background, 0, 0, canvas.width, canvas.height);
    }
    if (this.error) return;
    const m = this.mapper();
    const dpr = window.devicePixelRatio || 1;
    const layer = this.layerCanvas();
    this.pairs.forEach((pair, i) => {
      for (const side of ["handle", "target"]) {
        let shape = pair[side];
        if (!shape) continue;
        if (this.stroke && i === this.pairs.length - 1 && this.openBrush === side && shape.type === "brush") {
          shape = { type: "brush", strokes: [...shape.strokes, this.stroke] };
        }
        const sel = this.selected?.pair === i && this.selected?.side === side;
        this.drawShape(shape, COLORS[side], m, dpr, layer, { outlineOnly: preview, selected: sel });
      }
    });
    // the stroke being painted, when it starts a new region
    if (this.stroke && !(this.openBrush && this.pairs[this.pairs.length - 1]?.[this.openBrush]?.type === "brush")) {
      const side = this.currentSide().side;
      this.drawShape({ type: "brush", strokes: [this.stroke] }, COLORS[side], m, dpr, layer, {});
    }
    this.pairs.forEach((pair, i) => {
      if (pair.handle && pair.target) this.drawArrow(shapeCenter(pair.handle), shapeCenter(pair.target), m, dpr);
    });
    this.pairs.forEach((pair, i) => {
      for (const side of ["handle", "target"]) {
        if (pair[side]) this.drawLabel(String(i + 1), shapeCenter(pair[side]), COLORS[side].label, m, dpr);
      }
    });
    this.drawDraft(m, dpr);
    if (this.tool === "brush" && this.hover && !this.drag) {
      const [u, v] = m.f(...this.hover);
      ctx.beginPath();
      ctx.ellipse(u, v, (this.brushSize / 2) * m.kx, (this.brushSize / 2) * m.ky, 0, 0, 2 * Math.PI);
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
    for (const [style, width] of [["rgba(0,0,0,0.7)", 5 * dpr], [grad, 2.5 * dpr]]) {
      ctx.beginPath();
      ctx.moveTo(sx, sy);
      ctx.lineTo(ex, ey);
      ctx.moveTo(ex - ux * head - uy * head * 0.55, ey - uy * head + ux * head * 0.55);
      ctx.lineTo(ex, ey);
      ctx.lineTo(ex - ux * head + uy * head * 0.55, ey - uy * head - ux * head * 0.55);
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.lineWidth = width;
      ctx.strokeStyle = style;
      ctx.stroke();
    }
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

  drawDraft(m, dpr) {
    const d = this.draft;
    if (!d.length) return;
    const ctx = this.ctx;
    const color = COLORS[this.currentSide().side].solid;
    tracePoints(ctx, d, m);
    if (this.hover) ctx.lineTo(...m.f(...this.hover));
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

  // ------------------------------------------------------------------- controls/text

  updateControls() {
    const drawable = this.canDraw();
    for (const [tool, btn] of Object.entries(this.toolButtons)) {
      btn.setAttribute("aria-pressed", String(this.tool === tool));
      btn.disabled = !drawable;
    }
    const a = this.actionButtons;
    a.done.disabled = !(this.openBrush || this.draft.length >= 3);
    a.undo.disabled = !(this.draft.length || this.history.length);
    a.delete.disabled = !this.selected;
    a.clear.disabled = !(this.pairs.length || this.draft.length || this.error);
    a.preview.disabled = !this.bg || !!this.error;
    a.preview.setAttribute("aria-pressed", String(this.showPreview && !a.preview.disabled));
    a.json.setAttribute("aria-pressed", String(!this.widget.hidden));
    this.sizeInput.disabled = !drawable;
    const maxSize = String(Math.max(64, Math.round(Math.max(this.W || 0, this.H || 0) / 4)));
    if (this.sizeInput.max !== maxSize) {
      this.sizeInput.max = maxSize;
      this.sizeInput.value = String(this.brushSize);
    }
    this.canvas.style.cursor = this.tool === "select" ? "default" : this.tool === "brush" ? "none" : "crosshair";

    // overlay: what is wrong, or which clicks to make when nothing is drawn
    let overlay = null, isError = false;
    if (this.error) {
      overlay = `The shapes JSON can't be read: ${this.error}\nFix it in the JSON text (JSON button), or press Clear to start over.`;
      isError = true;
    } else if (!this.W) {
      overlay = this.bgError ||
        "Connect the image being edited (e.g. Load Image) to this node's image input, or run the graph once; then draw the regions here.";
    } else if (this.bgError && !this.bg) {
      overlay = this.bgError;
    } else if (!this.pairs.length && !this.draft.length && !this.stroke) {
      overlay = this.tool === "brush"
        ? "Paint the handle region (red): what to move. Press Enter or Done.\nThen paint the target region (blue): where it goes."
        : "Click the corners of the handle region (red): what to move.\nClick the first corner, double-click or press Enter to close it.\nThen draw the target region (blue): where it goes.";
    }
    this.overlay.hidden = !overlay;
    this.overlay.textContent = overlay || "";
    this.overlay.classList.toggle("rd-error", isError);
    this.root.dataset.state = this.error ? "error" : this.W ? "ready" : "no-image";

    this.status.textContent = this.statusText();
    this.status.classList.toggle("rd-warn", !!(this.notice || this.error || this.bgError));
  }

  statusText() {
    if (this.notice) return this.notice;
    const linked = this.node.inputs?.find((i) => i.name === "shapes" || i.widget?.name === "shapes");
    if (linked?.link != null) return "The shapes input is connected: the node uses that text, not what is drawn here.";
    if (this.error) return "RegionMaskPair / shapes: the JSON is not readable, the run will stop with this error.";
    if (!this.W) return "No image yet.";
    const n = this.pairs.length;
    const summary = `${n - (this.pairs[n - 1]?.target ? 0 : Math.min(n, 1))} pair(s) ready.`;
    if (this.tool === "select") {
      return this.selected
        ? `Pair ${this.selected.pair + 1} ${this.selected.side} selected: drag to move, drag a corner to reshape, Delete removes the pair.`
        : `Click a region to select it. ${summary}`;
    }
    const cur = this.currentSide();
    const name = cur.side === "handle" ? "handle (red, what moves)" : "target (blue, where it goes)";
    if (this.openBrush) {
      const side = this.openBrush === "handle" ? "handle (red)" : "target (blue)";
      return `Painting pair ${this.pairs.length} ${side}: add strokes, then press Enter or Done.`;
    }
    if (this.draft.length) {
      return `Pair ${cur.index + 1} ${name}: ${this.draft.length} corner(s). Click the first corner, double-click or ` +
        "press Enter to close; Backspace removes a corner, Esc cancels.";
    }
    let hint = "";
    const handle = this.pairs[cur.index]?.handle;
    if (cur.side === "target" && handle?.type === "polygon" && handle.points.length <= 4) {
      hint = ` Use ${handle.points.length} corners in the same order for the exact ${handle.points.length === 3 ? "affine" : "perspective"} map.`;
    }
    const verb = this.tool === "brush" ? "Paint" : "Click the corners of";
    return `${summary} Next: ${verb} pair ${cur.index + 1} ${name}.${hint}`;
  }
}

/**
 * Show or hide a widget, keeping it serialised. `hidden` hides it (and its DOM element) in both
 * front-ends; the zero size keeps front-ends that still lay out hidden widgets (1.27) from
 * leaving a gap.
 */
function setWidgetShown(widget, shown) {
  widget.hidden = !shown;
  if (shown) delete widget.computeSize;
  else widget.computeSize = () => [0, -4];
}

function attachEditor(node) {
  const shapes = node.widgets?.find((w) => w.name === "shapes");
  if (!shapes) {
    console.warn("RegionDrag editor: RegionMaskPair has no 'shapes' widget; editor not added.");
    return;
  }
  // The JSON stays in the (serialised) shapes widget; the editor is its view.
  setWidgetShown(shapes, false);
  const editor = new RegionEditor(node, shapes);
  node.regionEditor = editor;
  chainCallback(shapes, "callback", () => editor.loadFromWidget());
  const widget = node.addDOMWidget("region_editor", "regiondrag_editor", editor.root, {
    serialize: false,
    hideOnZoom: true,
    getMinHeight: () => 240,
  });
  widget.serialize = false;
  editor.domWidget = widget;
  const [w, h] = node.size;
  node.setSize([Math.max(w, 420), Math.max(h, 520)]);
}

app.registerExtension({
  name: "RegionDrag.RegionEditor",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_TYPE) return;
    // The node's ui image is its input image: the editor shows it, not a preview below the editor.
    nodeType.prototype.onDrawBackground = function () {};
    chainCallback(nodeType.prototype, "onNodeCreated", function () {
      attachEditor(this);
    });
    chainCallback(nodeType.prototype, "onConfigure", function () {
      const ed = this.regionEditor;
      if (!ed) return;
      ed.brushSize = Number(this.properties?.regiondrag_brush_size) || ed.brushSize;
      ed.sizeInput.value = String(ed.brushSize);
      ed.sizeLabel.textContent = String(ed.brushSize);
      ed.history = [];
      ed.loadFromWidget(true);
    });
    chainCallback(nodeType.prototype, "onExecuted", function (message) {
      this.regionEditor?.onExecuted(message);
    });
    // The connected LoadImage's file is looked up when the node is drawn (it may change any time)
    // and when connections change.
    chainCallback(nodeType.prototype, "onDrawForeground", function () {
      this.regionEditor?.checkSource();
    });
    chainCallback(nodeType.prototype, "onConnectionsChange", function () {
      setTimeout(() => this.regionEditor?.checkSource(), 0);
    });
    chainCallback(nodeType.prototype, "onRemoved", function () {
      this.regionEditor?.destroy();
    });
  },
});
