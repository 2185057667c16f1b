// RegionDrag region editor: the editor's element (toolbar, canvas, status line) and its glue:
// the shapes model, the view and the input handling. It knows ComfyUI only through `host`
// (regiondrag_editor.js), so it runs on any page. What the model refuses (a limit, a polygon that
// would cross, touch or fold back, a handle point outside its region) is a one-line notice in the
// status line; what the node would refuse in text loaded from elsewhere is a warning there.
//
// Live editing (with the front-end's "Run (On Change)"): the shapes JSON is written once per
// finished gesture, never while the pointer moves, and only when it changed; the Result layer shows
// the last edit the graph made (regiondrag_editor.js picks it) under the regions' outlines.
import { isComplete, ShapesModel } from "./regiondrag_model.js";
import { MAX_POINT_PAIRS } from "./regiondrag_geometry.js";
import { RegionView } from "./regiondrag_view.js";
import { sameShapes } from "./regiondrag_live.js";
import { EditorInput } from "./regiondrag_input.js";

export const DEFAULT_BRUSH = 24;

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

/**
 * `host`: {writeText(text[, {typing}]), shapesLinked(), forwardPointer(e, phase), forwardWheel(e),
 * brushSize, setBrushSize(d)}; optional `option(name)` / `setOption(name, on)` for the toggles kept
 * in the node's properties ("result", "stopStale").
 */
export class RegionEditor {
  constructor(host) {
    this.host = host;
    this.model = new ShapesModel();
    this.tool = "polygon";
    this.brushSize = Number(host.brushSize) || DEFAULT_BRUSH;
    this.notice = null; // one-off warning in the status line
    this.lastText = undefined; // the widget text the model was last read from / written to
    this.bg = null;
    this.bgUrl = null;
    this.bgError = null;
    this.destroyed = false;
    this.result = null; // {url, img, preview, shownAt}: the last edit the graph made (Result layer)
    this.resultWanted = null;
    this.running = false; // a run of this graph is on its way (shown in the status line)
    this.buildDom();
    this.view = new RegionView(this.canvas, this.model);
    this.input = new EditorInput(this);
    this.model.subscribe((kind) => this.onModelChange(kind));
    this.resizeObserver = new ResizeObserver(() => this.layout());
    this.resizeObserver.observe(this.stage);
  }

  buildDom() {
    const b = (label, title, data) => el("button", { type: "button", textContent: label, title, dataset: data });
    this.toolButtons = {
      polygon: b("Polygon", "Click corners; click the first corner, double-click or press Enter to close", { tool: "polygon" }),
      brush: b("Brush", "Paint a region; press Enter or Done to finish it", { tool: "brush" }),
      points: b("Points", "Move a handle region by point pairs: click a handle point inside the region (red), " +
        `then where it goes; drag a point to move it (at most ${MAX_POINT_PAIRS} per region)`, { tool: "points" }),
      select: b("Select", "Drag a region to move it, drag a corner to reshape it, drag a point to move it", { tool: "select" }),
    };
    this.sizeInput = el("input", { type: "range", min: "1", max: "256", step: "1", value: String(this.brushSize),
      title: "Brush diameter in image pixels" });
    this.sizeLabel = el("span", { textContent: String(this.brushSize) });
    this.actionButtons = {
      done: b("Done", "Finish the brush region being painted (Enter)", { action: "done" }),
      undo: b("Undo", "Undo the last change", { action: "undo" }),
      redo: b("Redo", "Redo the change just undone", { action: "redo" }),
      delete: b("Delete", "Delete the selected pair or point pair (Delete key)", { action: "delete" }),
      clear: b("Clear", "Remove all regions", { action: "clear" }),
      preview: b("Preview", "Show the pixel copy-paste preview of the edit", { action: "preview" }),
      result: b("Result", "Show the last edit this graph made (the image after RegionDrag KSampler, e.g. its " +
        "Preview Image) under the regions' outlines: with Run (On Change) it follows your drawing", { action: "result" }),
      stopStale: b("Stop stale", "With Run (On Change): a change made while RegionDrag KSampler is still denoising " +
        "the previous regions interrupts that run, so the newest drawing runs next (the inversion is never " +
        "interrupted)", { action: "stopStale" }),
      json: b("JSON", "Show or hide the shapes JSON text", { action: "json" }),
    };
    const sep = () => el("span", { className: "rd-sep" });
    const a = this.actionButtons;
    this.toolbar = el("div", { className: "rd-toolbar" }, [
      ...Object.values(this.toolButtons),
      el("label", { className: "rd-size" }, ["Size", this.sizeInput, this.sizeLabel]),
      a.done, sep(), a.undo, a.redo, a.delete, a.clear, sep(), a.preview, a.result, a.stopStale, a.json,
    ]);
    this.canvas = el("canvas", { className: "rd-canvas" });
    this.overlay = el("div", { className: "rd-overlay", hidden: true });
    this.stage = el("div", { className: "rd-stage" }, [this.canvas, this.overlay]);
    this.status = el("div", { className: "rd-status" });
    // The shapes JSON, editable (the node's own text widget stays hidden in every renderer).
    this.jsonArea = el("textarea", { className: "rd-json", hidden: true, spellcheck: false,
      title: "The shapes JSON (what the node reads). Edit it by hand, or draw." });
    this.root = el("div", { className: "regiondrag-editor", tabIndex: 0 },
      [this.toolbar, this.jsonArea, this.stage, this.status]);
    // Typing writes the widget as it goes; the change is announced once, when the text is left.
    this.jsonArea.addEventListener("input", () => {
      const text = this.jsonArea.value;
      this.host.writeText(text, { typing: true });
      this.loadText(text);
    });
    this.jsonArea.addEventListener("change", () => this.host.writeText(this.jsonArea.value));

    this.toolbar.addEventListener("click", (e) => {
      const btn = e.target.closest("button");
      if (!btn || btn.disabled) return;
      if (btn.dataset.tool) this.setTool(btn.dataset.tool);
      else this.action(btn.dataset.action);
    });
    this.sizeInput.addEventListener("input", () => {
      this.brushSize = Number(this.sizeInput.value) || DEFAULT_BRUSH;
      this.host.setBrushSize(this.brushSize);
      this.sizeLabel.textContent = String(this.brushSize);
      this.render();
    });
  }

  setBrushSize(d) {
    this.brushSize = Number(d) || this.brushSize;
    this.sizeInput.value = String(this.brushSize);
    this.sizeLabel.textContent = String(this.brushSize);
  }

  destroy() {
    this.resizeObserver?.disconnect();
    this.destroyed = true;
    this.view.destroyed = true;
  }

  // ------------------------------------------------------------------ text <-> model

  /** Read the widget's text (load, configure, hand edits); a text seen before is skipped. */
  loadText(text, force = false) {
    text = text ?? "";
    if (!force && text === this.lastText) return;
    this.lastText = text;
    if (!this.jsonArea.hidden && document.activeElement !== this.jsonArea) this.jsonArea.value = text;
    this.input.stroke = null;
    this.input.dragging = false;
    this.view.previewCache = null;
    this.model.load(text, this.bg ? [this.bg.naturalWidth, this.bg.naturalHeight] : null);
  }

  onModelChange(kind) {
    if (kind === "shapes") {
      // One write per finished change, and none when the shapes stay the same (a handle region
      // alone, a region put back; the same shapes written another way are kept as they are): each
      // write is one change for the front-end's auto-queue.
      const text = this.model.toText();
      if (!sameShapes(text, this.lastText)) {
        this.lastText = text;
        if (!this.jsonArea.hidden) this.jsonArea.value = text;
        this.view.previewCache = null;
        this.host.writeText(text);
      }
    }
    if (kind === "load" || kind === "shapes") this.layout();
    if (kind === "edit") this.render();
    else this.changed();
  }

  // ------------------------------------------------------------------------- image

  /** Show the image at `url` as the background; its size becomes the coordinate space. */
  setBackground(url) {
    if (url === this.bgUrl && (this.bg || !this.bgError)) return;
    this.bgUrl = url;
    const img = new Image();
    img.onload = () => {
      if (this.bgUrl !== url || this.destroyed) return;
      this.bg = img;
      this.view.bg = img;
      this.bgError = null;
      this.view.previewCache = null;
      this.model.setImageSize(img.naturalWidth, img.naturalHeight);
      this.canvas.dataset.imageWidth = String(img.naturalWidth);
      this.canvas.dataset.imageHeight = String(img.naturalHeight);
      this.canvas.dataset.background = "loaded";
      this.canvas.dataset.src = url;
      this.layout();
      this.changed();
    };
    img.onerror = () => {
      if (this.bgUrl !== url || this.destroyed) return;
      this.bg = null;
      this.view.bg = null;
      this.bgError = "The connected image could not be loaded; run the graph once to show it here.";
      this.canvas.dataset.background = "error";
      this.changed();
    };
    img.src = url;
  }

  // ------------------------------------------------------------------------ result

  option(name) {
    return this.host.option?.(name) ?? (name === "stopStale");
  }

  /** Show `url` (an image of the edit; `preview`: a latent preview during the run) as the Result
   * layer once it has loaded. */
  setResult(url, preview = false) {
    this.resultWanted = url;
    const img = new Image();
    img.onload = () => {
      if (this.destroyed || this.resultWanted !== url) {
        if (preview) URL.revokeObjectURL(url);
        return;
      }
      const old = this.result;
      if (old?.preview && old.url !== url) URL.revokeObjectURL(old.url);
      this.result = { url, img, preview, shownAt: performance.now() };
      if (!preview) {
        this.canvas.dataset.result = url;
        this.running = false;
      }
      this.changed();
    };
    img.onerror = () => {
      if (preview) URL.revokeObjectURL(url);
    };
    img.src = url;
  }

  /** A run of this graph started or ended (status line). */
  setRunning(on) {
    if (this.running === on) return;
    this.running = on;
    this.updateControls();
  }

  // ------------------------------------------------------------------------- actions

  setTool(tool) {
    if (this.tool === tool) return;
    this.finishOpen();
    this.tool = tool;
    if (tool !== "select") this.model.selected = null;
    this.changed();
  }

  finishOpen() {
    const problem = this.model.finishOpen();
    if (problem) this.setNotice(problem);
  }

  action(name) {
    const m = this.model;
    switch (name) {
      case "done":
        this.finishOpen();
        break;
      case "undo":
        m.undo();
        break;
      case "redo":
        m.redo();
        break;
      case "delete":
        m.deleteSelected();
        break;
      case "clear":
        m.clear(this.bg ? [this.bg.naturalWidth, this.bg.naturalHeight] : null);
        break;
      case "preview":
        this.view.showPreview = !this.view.showPreview;
        if (this.view.showPreview) this.setShowResult(false);
        break;
      case "result":
        this.setShowResult(!this.option("result"));
        if (this.option("result")) this.view.showPreview = false;
        break;
      case "stopStale":
        this.host.setOption?.("stopStale", !this.option("stopStale"));
        break;
      case "json":
        this.jsonArea.hidden = !this.jsonArea.hidden;
        this.jsonArea.value = this.lastText ?? "";
        this.layout();
        break;
    }
    this.changed();
  }

  setShowResult(on) {
    if (this.option("result") !== on) this.host.setOption?.("result", on);
  }

  setNotice(text) {
    if (this.notice === text) return;
    this.notice = text;
    this.changed();
  }

  // ------------------------------------------------------------------------ drawing

  layout() {
    this.view.layout(this.stage.clientWidth, this.stage.clientHeight);
    this.render();
  }

  render() {
    this.view.render(() => ({
      tool: this.tool,
      brushSize: this.brushSize,
      hover: this.input.hover,
      stroke: this.input.stroke,
      dragging: this.input.dragging,
      textKey: this.lastText,
      result: this.option("result") ? this.result?.img ?? null : null,
    }));
  }

  /** Controls, overlay and status from the state, then a redraw. */
  changed() {
    this.updateControls();
    this.render();
  }

  updateControls() {
    const m = this.model;
    const drawable = m.canDraw();
    for (const [tool, btn] of Object.entries(this.toolButtons)) {
      btn.setAttribute("aria-pressed", String(this.tool === tool));
      btn.disabled = !drawable;
    }
    const a = this.actionButtons;
    a.done.disabled = !(m.openBrush || m.draft.length >= 3);
    a.undo.disabled = !m.canUndo();
    a.redo.disabled = !m.canRedo();
    a.delete.disabled = !m.selected;
    a.clear.disabled = !(m.pairs.length || m.draft.length || m.pendingPoint || m.error);
    a.preview.disabled = !this.bg || !!m.error;
    a.preview.setAttribute("aria-pressed", String(this.view.showPreview && !a.preview.disabled));
    a.json.setAttribute("aria-pressed", String(!this.jsonArea.hidden));
    a.result.disabled = !!m.error;
    a.result.setAttribute("aria-pressed", String(this.option("result")));
    a.stopStale.setAttribute("aria-pressed", String(this.option("stopStale")));
    this.root.dataset.result = this.option("result") ? (this.result ? "shown" : "waiting") : "off";
    this.sizeInput.disabled = !drawable;
    const maxSize = String(Math.max(64, Math.round(Math.max(m.W || 0, m.H || 0) / 4)));
    if (this.sizeInput.max !== maxSize) {
      this.sizeInput.max = maxSize;
      this.sizeInput.value = String(this.brushSize);
    }
    this.canvas.style.cursor = this.tool === "select" ? "default" : this.tool === "brush" ? "none" : "crosshair";
    this.root.dataset.tool = this.tool;

    // overlay: what is wrong, or which clicks to make when nothing is drawn
    let overlay = null, isError = false;
    if (m.error) {
      overlay = `The shapes JSON can't be read: ${m.error}\nFix it in the JSON text (JSON button), or press Clear to start over.`;
      isError = true;
    } else if (!m.W) {
      overlay = this.bgError ||
        "Connect the image being edited (e.g. Load Image) to this node's image input, or run the graph once; then draw the regions here.";
    } else if (this.bgError && !this.bg) {
      overlay = this.bgError;
    } else if (!m.pairs.length && !m.draft.length && !this.input.stroke) {
      overlay = this.tool === "brush"
        ? "Paint the handle region (red): what to move. Press Enter or Done.\nThen paint the target region (blue): where it goes."
        : this.tool === "points"
          ? "Draw the handle region (red) first, with Polygon or Brush.\nThen, with Points, click inside it for a handle point and click where that point goes."
          : "Click the corners of the handle region (red): what to move.\nClick the first corner, double-click or press Enter to close it.\nThen draw the target region (blue): where it goes.";
    }
    this.overlay.hidden = !overlay;
    this.overlay.textContent = overlay || "";
    this.overlay.classList.toggle("rd-error", isError);
    this.root.dataset.state = m.error ? "error" : m.W ? "ready" : "no-image";
    this.root.dataset.pairs = String(m.completeCount());

    this.status.textContent = this.statusText();
    this.status.classList.toggle("rd-warn", !!(this.notice || m.error || this.bgError || m.problem));
  }

  statusText() {
    const m = this.model;
    if (this.notice) return this.notice;
    if (this.host.shapesLinked()) return "The shapes input is connected: the node uses that text, not what is drawn here.";
    if (m.error) return "RegionMaskPair / shapes: the JSON is not readable, the run will stop with this error.";
    if (!m.W) return "No image yet.";
    if (m.problem) return `The node will refuse these shapes: ${m.problem} Fix it here or in the JSON text.`;
    let summary = `${m.completeCount()} pair(s) ready.`;
    if (this.option("result")) {
      summary += this.running ? " Result: running…"
        : this.result ? " Result: the last run's edit." : " Result: run the graph.";
    }
    const sel = m.selected;
    if (sel?.side === "point") {
      return `Pair ${sel.pair + 1} point pair ${sel.index + 1}, ${sel.end} point selected: drag to move it, Delete removes the point pair.`;
    }
    if (this.tool === "select") {
      return sel
        ? `Pair ${sel.pair + 1} ${sel.side} selected: drag to move, drag a corner to reshape, Delete removes the pair.`
        : `Click a region or a point to select it. ${summary}`;
    }
    if (this.tool === "points") return this.pointsStatus(summary);
    const cur = m.currentSide();
    const name = cur.side === "handle" ? "handle (red, what moves)" : "target (blue, where it goes)";
    if (m.openBrush) {
      const side = m.openBrush === "handle" ? "handle (red)" : "target (blue)";
      return `Painting pair ${m.pairs.length} ${side}: add strokes, then press Enter or Done.`;
    }
    if (m.draft.length) {
      return `Pair ${cur.index + 1} ${name}: ${m.draft.length} corner(s). Click the first corner, double-click or ` +
        "press Enter to close; Backspace removes a corner, Esc cancels.";
    }
    let hint = "";
    const handle = m.pairs[cur.index]?.handle;
    if (cur.side === "target" && handle?.type === "polygon" && handle.points.length <= 4) {
      hint = ` Use ${handle.points.length} corners in the same order for the exact ${handle.points.length === 3 ? "affine" : "perspective"} map.`;
    }
    if (cur.side === "target") hint += " (Or move it by point pairs with Points. A pair is saved once it has either.)";
    const verb = this.tool === "brush" ? "Paint" : "Click the corners of";
    return `${summary} Next: ${verb} pair ${cur.index + 1} ${name}.${hint}`;
  }

  pointsStatus(summary) {
    const m = this.model;
    if (m.pendingPoint) {
      return `Pair ${m.pendingPoint.pair + 1}: click where this handle point goes (its target). Esc cancels.`;
    }
    const open = m.pairs.map((p, i) => [p, i]).filter(([p]) => !p.target);
    if (!open.length) return `${summary} Draw a handle region (Polygon or Brush), then place point pairs inside it here.`;
    const [p, i] = open[open.length - 1];
    const n = p.points?.length || 0;
    const saved = isComplete(p) ? "" : " It is saved once it has a point pair.";
    return `${summary} Click inside pair ${i + 1}'s handle region (red) for a handle point, then click its target ` +
      `(${n}/${MAX_POINT_PAIRS} point pairs).${saved} Drag a point to move it.`;
  }
}
