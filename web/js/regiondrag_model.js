// RegionDrag region editor: the shapes model. Region pairs, the polygon being clicked, the
// selection, and one undo history; every change of the pairs is a command below and goes through
// `record()`. No DOM and no ComfyUI here: `node --test` runs it (tests/js/model.test.mjs).
//
// Coordinates are image pixels (pixel centres on integers), as in the shapes JSON.
import {
  clonePairs,
  hitShape,
  mapPoints,
  parseShapes,
  polygonProblem,
  roundPair,
  scaleShape,
  serializeShapes,
  translateShape,
} from "./regiondrag_geometry.js";

export const HISTORY_MAX = 100;
export const SIDES = ["handle", "target"];

export class ShapesModel {
  constructor({ historyMax = HISTORY_MAX } = {}) {
    // [{handle: SHAPE, target: SHAPE|null[, points]}]: a region + points pair (shapes version 2,
    // written by hand or another tool) has `points` instead of a target and is complete; besides
    // those only the last pair may lack its target. Point pairs are kept, scaled and moved with
    // their handle region; they are not drawn or edited here.
    this.pairs = [];
    this.W = null; // the coordinate space: the image's size in pixels
    this.H = null;
    this.error = null; // the text could not be read (then the pairs are empty and nothing is drawn)
    this.draft = []; // corners of the polygon being clicked
    this.openBrush = null; // "handle" | "target": the last pair's brush side still taking strokes
    this.selected = null; // {pair, side}
    this.history = [];
    this.historyMax = historyMax;
    this.edit = null; // a move/reshape in progress: {kind, vertex, orig}
    this.listeners = new Set();
  }

  /** `fn(kind)` after every change; kind "shapes" (the JSON changed), "draft" or "selection". */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(kind) {
    // A change of the pairs keeps the coordinates as the JSON text does (1/100 px), so what is
    // drawn and previewed here is exactly what the backend reads.
    if (kind === "shapes") {
      this.pairs = this.pairs.map(roundPair);
    }
    for (const fn of this.listeners) fn(kind);
  }

  // ------------------------------------------------------------------ text <-> pairs

  /** Replace the state with the JSON text (workflow load, hand edit). Never throws. */
  load(text, fallbackSize = null) {
    const r = parseShapes(text);
    this.draft = [];
    this.selected = null;
    this.openBrush = null;
    this.edit = null;
    if (!r.ok) {
      this.error = r.error;
      this.pairs = [];
    } else {
      this.error = null;
      this.pairs = r.pairs;
      if (r.width) [this.W, this.H] = [r.width, r.height];
      else if (fallbackSize) [this.W, this.H] = fallbackSize;
    }
    this.emit("load");
  }

  /** The JSON text of the pairs ("" when there are none). */
  toText() {
    return this.pairs.length ? serializeShapes(this.W, this.H, this.pairs) : "";
  }

  canDraw() {
    return !this.error && this.W > 0 && this.H > 0;
  }

  // ----------------------------------------------------------------------- history

  snapshot() {
    return { pairs: clonePairs(this.pairs), openBrush: this.openBrush, W: this.W, H: this.H };
  }

  /** The one way into the history: the state before a change (default: now). */
  record(before = this.snapshot()) {
    this.history.push(before);
    if (this.history.length > this.historyMax) this.history.shift();
  }

  clearHistory() {
    this.history = [];
  }

  canUndo() {
    return this.draft.length > 0 || this.history.length > 0;
  }

  /** Undo the last corner of the polygon being clicked, else the last change. */
  undo() {
    if (this.draft.length) {
      this.draft.pop();
      this.emit("draft");
      return true;
    }
    const prev = this.history.pop();
    if (!prev) return false;
    this.pairs = prev.pairs;
    this.openBrush = prev.openBrush;
    this.W = prev.W;
    this.H = prev.H;
    this.selected = null;
    this.edit = null;
    this.emit("shapes");
    return true;
  }

  // ------------------------------------------------------------------------ drawing

  /** Which region the next shape becomes: {index, side}. */
  currentSide() {
    const last = this.pairs[this.pairs.length - 1];
    if (last && !last.target && !last.points) return { index: this.pairs.length - 1, side: "target" };
    return { index: this.pairs.length, side: "handle" };
  }

  commitShape(shape) {
    const last = this.pairs[this.pairs.length - 1];
    if (last && !last.target && !last.points) {
      last.target = shape;
      return "target";
    }
    this.pairs.push({ handle: shape, target: null });
    return "handle";
  }

  addCorner(p) {
    this.openBrush = null;
    this.draft.push([p[0], p[1]]);
    this.emit("draft");
  }

  removeCorner() {
    if (!this.draft.length) return false;
    this.draft.pop();
    this.emit("draft");
    return true;
  }

  /** Close the polygon being clicked. Returns null, or why it cannot be closed. */
  closePolygon() {
    const problem = polygonProblem(this.draft);
    if (problem) return problem;
    this.record();
    this.openBrush = null;
    this.commitShape({ type: "polygon", points: this.draft.map(([x, y]) => [x, y]) });
    this.draft = [];
    this.emit("shapes");
    return null;
  }

  /** Add a finished brush stroke {size, points}: to the open brush region, else as a new region. */
  addStroke(stroke) {
    if (!stroke?.points?.length) return;
    this.record();
    const last = this.pairs[this.pairs.length - 1];
    const st = { size: stroke.size, points: stroke.points.map(([x, y]) => [x, y]) };
    if (this.openBrush && last?.[this.openBrush]?.type === "brush") last[this.openBrush].strokes.push(st);
    else this.openBrush = this.commitShape({ type: "brush", strokes: [st] });
    this.emit("shapes");
  }

  /** Close a polygon being clicked (when it can be) and end the brush region being painted. */
  finishOpen() {
    let problem = null;
    if (this.draft.length) problem = this.closePolygon();
    if (this.openBrush) {
      this.openBrush = null;
      this.emit("draft");
    }
    return problem;
  }

  /** Esc: drop the polygon being clicked, the selection and the open brush region. */
  cancel() {
    if (!this.draft.length && !this.selected && !this.openBrush) return false;
    this.draft = [];
    this.selected = null;
    this.openBrush = null;
    this.emit("draft");
    return true;
  }

  // --------------------------------------------------------------- select and edit

  shapeAt(sel) {
    return sel ? this.pairs[sel.pair]?.[sel.side] ?? null : null;
  }

  selectedShape() {
    return this.shapeAt(this.selected);
  }

  /** The topmost region under image point p (later pairs, then targets, first). */
  hitTest(p, tol) {
    for (let i = this.pairs.length - 1; i >= 0; i--) {
      for (const side of ["target", "handle"]) {
        const shape = this.pairs[i][side];
        if (shape && hitShape(shape, p[0], p[1], tol)) return { pair: i, side };
      }
    }
    return null;
  }

  /** The corner of the selected polygon within `tol` of p, or -1. */
  vertexAt(p, tol) {
    const s = this.selectedShape();
    if (s?.type !== "polygon") return -1;
    return s.points.findIndex(([x, y]) => Math.hypot(p[0] - x, p[1] - y) <= tol);
  }

  select(sel) {
    this.selected = sel;
    this.emit("selection");
  }

  /** Start moving the selected region (kind "move") or one of its corners (kind "vertex"). */
  beginEdit(kind, vertex = -1) {
    if (!this.selected) return false;
    this.edit = { kind, vertex, orig: this.snapshot() };
    return true;
  }

  /** The edit in progress, offset by (dx, dy) image pixels from where it started. */
  updateEdit(dx, dy) {
    const ed = this.edit;
    if (!ed) return;
    const { pair, side } = this.selected;
    const orig = ed.orig.pairs[pair][side];
    if (ed.kind === "move") {
      this.pairs[pair][side] = translateShape(orig, dx, dy);
      const pts = ed.orig.pairs[pair].points;
      if (side === "handle" && pts) this.pairs[pair].points = mapPoints(pts, ([x, y]) => [x + dx, y + dy]);
    } else {
      const pts = orig.points.map((q) => [q[0], q[1]]);
      pts[ed.vertex] = [pts[ed.vertex][0] + dx, pts[ed.vertex][1] + dy];
      this.pairs[pair][side] = { type: "polygon", points: pts };
    }
    ed.moved = ed.moved || dx !== 0 || dy !== 0;
    this.emit("edit");
  }

  /** End the edit. Returns null, or why it was undone (a polygon may not cross itself). */
  commitEdit() {
    const ed = this.edit;
    this.edit = null;
    if (!ed || !ed.moved) return null;
    const moved = this.selectedShape();
    if (moved?.type === "polygon" && polygonProblem(moved.points)) {
      this.pairs = ed.orig.pairs;
      this.emit("edit");
      return "That would make the region cross itself; the corner was put back.";
    }
    this.record(ed.orig);
    this.emit("shapes");
    return null;
  }

  deleteSelected() {
    if (!this.selected) return false;
    this.record();
    this.pairs.splice(this.selected.pair, 1);
    this.selected = null;
    this.openBrush = null;
    this.emit("shapes");
    return true;
  }

  /** Remove everything (also unreadable text); `size` [W, H] becomes the coordinate space. */
  clear(size = null) {
    if (!this.pairs.length && !this.draft.length && !this.error) return false;
    if (!this.error) this.record();
    this.pairs = [];
    this.draft = [];
    this.openBrush = null;
    this.selected = null;
    this.error = null;
    if (size) [this.W, this.H] = size;
    this.emit("shapes");
    return true;
  }

  /** The image's size is the coordinate space; shapes drawn on another size are rescaled. */
  setImageSize(w, h) {
    if (this.error || (this.W === w && this.H === h)) return false;
    if (this.W && this.H && this.pairs.length) {
      const sx = w / this.W, sy = h / this.H;
      this.record();
      this.pairs = this.pairs.map((p) => {
        const o = { handle: scaleShape(p.handle, sx, sy), target: p.target ? scaleShape(p.target, sx, sy) : null };
        if (p.points) o.points = mapPoints(p.points, ([x, y]) => [(x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5]);
        return o;
      });
      this.draft = this.draft.map(([x, y]) => [(x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5]);
      this.W = w;
      this.H = h;
      this.emit("shapes");
      return true;
    }
    this.W = w;
    this.H = h;
    this.emit("draft");
    return false;
  }

  /** Number of complete pairs. */
  completeCount() {
    return this.pairs.filter((p) => p.handle && (p.target || p.points)).length;
  }
}
