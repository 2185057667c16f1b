// RegionDrag region editor: the shapes model. Region pairs, the polygon being clicked, the point
// pair being placed, the selection, and one undo/redo history; every change of the pairs is a
// command below and goes through `record()`. No DOM and no ComfyUI here: `node --test` runs it
// (tests/js/model.test.mjs, tests/js/points_tool.test.mjs).
//
// Coordinates are image pixels (pixel centres on integers), as in the shapes JSON.
//
// What is saved: the widget's JSON (`toText`) holds the complete pairs only, in order: those with a
// target region or with point pairs. A pair still being drawn (a handle region alone) lives here, in
// the editor's state, until it gets its target or its first point pair; it is not in the saved
// workflow. So the saved text always reads with parseShapes(text, {strict: true}), as the backend
// reads it: the commands refuse what the backend would refuse (more than MAX_PAIRS pairs,
// MAX_POLYGON_VERTICES corners, MAX_BRUSH_POINTS brush points or MAX_POINT_PAIRS point pairs; a
// polygon that crosses, touches or folds back on itself; a region moved off the image; a handle
// point outside its handle region; a text past MAX_SHAPES_CHARS) and return a short message saying
// why.
import {
  clonePairs,
  hitShape,
  mapPoints,
  MAX_BRUSH_POINTS,
  MAX_PAIRS,
  MAX_POINT_PAIRS,
  MAX_POLYGON_VERTICES,
  MAX_SHAPES_CHARS,
  parseShapes,
  polygonProblem,
  roundCoord,
  roundPair,
  roundShape,
  scaleShape,
  serializeShapes,
  translateShape,
} from "./regiondrag_geometry.js";
import { rasterizeShape } from "./regiondrag_raster.js";

export const HISTORY_MAX = 100;
export const SIDES = ["handle", "target"];

/** A pair the JSON holds: a handle region and a target region or point pairs. */
export const isComplete = (p) => !!p?.handle && (!!p.target || !!p.points?.length);

export const MESSAGES = {
  pairsFull: `The limit is ${MAX_PAIRS} pairs: delete a pair (Select, then Delete) to draw another.`,
  cornersFull: `A polygon has at most ${MAX_POLYGON_VERTICES} corners: close this one (Enter) or remove corners (Backspace).`,
  brushFull: `A brush region holds at most ${MAX_BRUSH_POINTS} points over its strokes: press Enter or Done, then paint the next region.`,
  textFull: `That would make the shapes JSON longer than ${MAX_SHAPES_CHARS.toLocaleString("en-US")} characters, the node's limit; it was not added.`,
  noHandle: "Draw a handle region first (Polygon or Brush); then click inside it to place a handle point.",
  outside: "A handle point goes inside a handle region (red) without a target region: click inside one.",
};

export class ShapesModel {
  constructor({ historyMax = HISTORY_MAX } = {}) {
    // [{handle: SHAPE, target: SHAPE|null[, points]}]: a region + points pair (shapes version 2)
    // has `points` ([{handle: [x, y], target: [x, y]}], never empty) instead of a target. A pair
    // with neither is being drawn: it is shown, not saved.
    this.pairs = [];
    this.W = null; // the coordinate space: the image's size in pixels
    this.H = null;
    this.error = null; // the text could not be read (then the pairs are empty and nothing is drawn)
    this.problem = null; // what the node would refuse in the saved text (hand edits, old workflows), or null
    this.draft = []; // corners of the polygon being clicked
    this.openBrush = null; // "handle" | "target": the last pair's brush side still taking strokes
    this.pendingPoint = null; // {pair, handle: [x, y]}: a handle point waiting for its target point
    this.selected = null; // {pair, side} | {pair, side: "point", index, end: "handle" | "target"}
    this.history = [];
    this.future = []; // undone changes, for redo
    this.historyMax = historyMax;
    this.edit = null; // a move/reshape in progress: {kind, vertex, orig}
    this.listeners = new Set();
    this.masks = new WeakMap(); // handle shape -> its rasterised mask at W x H
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
      this.refreshProblem();
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
    this.pendingPoint = null;
    this.edit = null;
    this.future = [];
    if (!r.ok) {
      this.error = r.error;
      this.pairs = [];
    } else {
      this.error = null;
      this.pairs = r.pairs;
      if (r.width) [this.W, this.H] = [r.width, r.height];
      else if (fallbackSize) [this.W, this.H] = fallbackSize;
    }
    this.refreshProblem();
    this.emit("load");
  }

  /** The JSON text of the complete pairs ("" when there are none). */
  toText() {
    const done = this.pairs.filter(isComplete);
    return done.length ? serializeShapes(this.W, this.H, done) : "";
  }

  canDraw() {
    return !this.error && this.W > 0 && this.H > 0;
  }

  /**
   * What the node would refuse in the saved text: the strict parse (the backend's limits and
   * polygon rule) and, as the backend checks when it rasterises, every handle point inside its
   * handle region. Numbers are the saved pairs'.
   */
  refreshProblem() {
    this.problem = null;
    if (this.error) return;
    const r = parseShapes(this.toText(), { strict: true });
    if (!r.ok) {
      this.problem = r.error;
      return;
    }
    if (!this.W || !this.H) return;
    let n = 0;
    for (const p of this.pairs) {
      if (!isComplete(p)) continue;
      n++;
      const k = (p.points || []).findIndex((q) => !this.insideHandle(p.handle, q.handle));
      if (k >= 0) {
        const [x, y] = p.points[k].handle;
        this.problem = `pair ${n} point ${k + 1} handle: (${x}, ${y}) is not inside the pair's handle region.`;
        return;
      }
    }
  }

  // ----------------------------------------------------------------------- history

  snapshot() {
    return { pairs: clonePairs(this.pairs), openBrush: this.openBrush, W: this.W, H: this.H };
  }

  /** The one way into the history: the state before a change (default: now). */
  record(before = this.snapshot()) {
    this.history.push(before);
    if (this.history.length > this.historyMax) this.history.shift();
    this.future = [];
  }

  clearHistory() {
    this.history = [];
    this.future = [];
  }

  restore(s) {
    this.pairs = s.pairs;
    this.openBrush = s.openBrush;
    this.W = s.W;
    this.H = s.H;
  }

  /** Make a change (`fn` mutates the pairs; it may return why it cannot): one history entry, or none
   * and the state as before when it fails or the text would pass the node's limit. */
  change(fn) {
    const before = this.snapshot();
    const problem = fn();
    if (problem) {
      this.restore(before);
      return problem;
    }
    if (this.toText().length > MAX_SHAPES_CHARS) {
      this.restore(before);
      return MESSAGES.textFull;
    }
    this.record(before);
    this.emit("shapes");
    return null;
  }

  canUndo() {
    return this.draft.length > 0 || !!this.pendingPoint || this.history.length > 0;
  }

  canRedo() {
    return this.future.length > 0;
  }

  /** Undo the handle point being placed, else the last corner of the polygon being clicked, else the
   * last change. */
  undo() {
    if (this.pendingPoint) {
      this.pendingPoint = null;
      this.emit("draft");
      return true;
    }
    if (this.draft.length) {
      this.draft.pop();
      this.emit("draft");
      return true;
    }
    const prev = this.history.pop();
    if (!prev) return false;
    this.future.push(this.snapshot());
    this.restore(prev);
    this.selected = null;
    this.edit = null;
    this.emit("shapes");
    return true;
  }

  /** Redo the last undone change. */
  redo() {
    const next = this.future.pop();
    if (!next) return false;
    this.history.push(this.snapshot());
    this.restore(next);
    this.pendingPoint = null;
    this.selected = null;
    this.edit = null;
    this.emit("shapes");
    return true;
  }

  // ------------------------------------------------------------------------ drawing

  /** Which region the next shape becomes: {index, side}. */
  currentSide() {
    const last = this.pairs[this.pairs.length - 1];
    if (last && !isComplete(last)) return { index: this.pairs.length - 1, side: "target" };
    return { index: this.pairs.length, side: "handle" };
  }

  /** Why the next shape cannot start a new pair (the node's limit on pairs), or null. */
  newPairProblem() {
    return this.currentSide().side === "handle" && this.pairs.length >= MAX_PAIRS ? MESSAGES.pairsFull : null;
  }

  commitShape(shape) {
    const last = this.pairs[this.pairs.length - 1];
    if (last && !isComplete(last)) {
      last.target = shape;
      return "target";
    }
    this.pairs.push({ handle: shape, target: null });
    return "handle";
  }

  /** Add a corner to the polygon being clicked. Returns null, or why not (a limit). */
  addCorner(p) {
    if (!this.draft.length) {
      const full = this.newPairProblem();
      if (full) return full;
    }
    if (this.draft.length >= MAX_POLYGON_VERTICES) return MESSAGES.cornersFull;
    this.openBrush = null;
    this.pendingPoint = null;
    this.draft.push([p[0], p[1]]);
    this.emit("draft");
    return null;
  }

  removeCorner() {
    if (this.pendingPoint) {
      this.pendingPoint = null;
      this.emit("draft");
      return true;
    }
    if (!this.draft.length) return false;
    this.draft.pop();
    this.emit("draft");
    return true;
  }

  /** Close the polygon being clicked. Returns null, or why it cannot be closed. */
  closePolygon() {
    const pts = this.draft.map(([x, y]) => [roundCoord(x), roundCoord(y)]); // as the JSON keeps them
    const problem = polygonProblem(pts);
    if (problem) {
      return `This region can't be closed: ${problem}. Move or remove corners (Backspace), or press Esc to start over.`;
    }
    const draft = this.draft;
    const err = this.newPairProblem() || this.change(() => {
      this.openBrush = null;
      this.draft = [];
      this.commitShape({ type: "polygon", points: pts });
    });
    if (err) this.draft = draft;
    return err;
  }

  /** Room left for the brush stroke about to be painted: {room} points, or {problem}. */
  strokeRoom() {
    const into = this.openBrushShape();
    if (!into) {
      const full = this.newPairProblem();
      return full ? { room: 0, problem: full } : { room: MAX_BRUSH_POINTS };
    }
    const room = MAX_BRUSH_POINTS - into.strokes.reduce((n, st) => n + st.points.length, 0);
    return room > 0 ? { room } : { room: 0, problem: MESSAGES.brushFull };
  }

  openBrushShape() {
    const last = this.pairs[this.pairs.length - 1];
    return this.openBrush && last?.[this.openBrush]?.type === "brush" ? last[this.openBrush] : null;
  }

  /** Add a finished brush stroke {size, points}: to the open brush region, else as a new region.
   * Returns null, or why not (a limit). */
  addStroke(stroke) {
    if (!stroke?.points?.length) return null;
    const { room, problem } = this.strokeRoom();
    if (problem) return problem;
    if (stroke.points.length > room) return MESSAGES.brushFull;
    return this.change(() => {
      this.pendingPoint = null;
      const into = this.openBrushShape();
      const st = { size: stroke.size, points: stroke.points.map(([x, y]) => [x, y]) };
      if (into) into.strokes.push(st);
      else this.openBrush = this.commitShape({ type: "brush", strokes: [st] });
    });
  }

  /** Close a polygon being clicked (when it can be) and end the brush region being painted. */
  finishOpen() {
    let problem = null;
    if (this.draft.length) problem = this.closePolygon();
    if (this.openBrush || this.pendingPoint) {
      this.openBrush = null;
      this.pendingPoint = null;
      this.emit("draft");
    }
    return problem;
  }

  /** Esc: drop the polygon being clicked, the handle point being placed, the selection and the open
   * brush region. */
  cancel() {
    if (!this.draft.length && !this.selected && !this.openBrush && !this.pendingPoint) return false;
    this.draft = [];
    this.selected = null;
    this.openBrush = null;
    this.pendingPoint = null;
    this.emit("draft");
    return true;
  }

  // --------------------------------------------------------------------- point pairs

  /** The handle region's mask at the image size (cached per shape). */
  handleMask(shape) {
    let m = this.masks.get(shape);
    if (!m) {
      m = rasterizeShape(shape, this.W, this.H);
      this.masks.set(shape, m);
    }
    return m;
  }

  /** Whether point [x, y] lies in the region `shape` as the backend checks it: the pixel
   * floor(x + .5), floor(y + .5) of the rasterised region. */
  insideHandle(shape, [x, y]) {
    const px = Math.floor(x + 0.5), py = Math.floor(y + 0.5);
    if (!(px >= 0 && px < this.W && py >= 0 && py < this.H)) return false;
    return !!this.handleMask(shape)[py * this.W + px];
  }

  /** A point as the JSON keeps it (1/100 px), moved onto the image if it is off it. */
  onImage([x, y]) {
    const c = (v, n) => Math.min(n - 0.51, Math.max(-0.5, roundCoord(v)));
    return [c(x, this.W), c(y, this.H)];
  }

  /** The pair a handle point at p goes to: {pair, xy}, or {error}. The topmost pair whose handle
   * region holds the point and that has no target region; a pair with a target region is refused
   * (the node takes a target region or point pairs, not both), as is one with MAX_POINT_PAIRS. */
  pointPairAt(p) {
    const xy = this.onImage(p);
    let withTarget = -1, open = false;
    for (let i = this.pairs.length - 1; i >= 0; i--) {
      const pair = this.pairs[i];
      if (!pair.target) open = true;
      if (!this.insideHandle(pair.handle, xy)) continue;
      if (pair.target) {
        if (withTarget < 0) withTarget = i;
        continue;
      }
      if ((pair.points?.length || 0) >= MAX_POINT_PAIRS) {
        return { error: `Pair ${i + 1} has ${MAX_POINT_PAIRS} point pairs, the limit: move or delete one (Delete) to place another.` };
      }
      return { pair: i, xy };
    }
    if (withTarget >= 0) {
      const n = withTarget + 1;
      return { error: `Pair ${n} moves onto its target region (blue): a pair moves by a target region or by point pairs, ` +
        `not both. Place points in a handle region without a target, or delete pair ${n} and draw it again.` };
    }
    return { error: open ? MESSAGES.outside : MESSAGES.noHandle };
  }

  /** Points tool, first click: the handle point. Returns null, or why not. */
  beginPoint(p) {
    const r = this.pointPairAt(p);
    if (r.error) return r.error;
    this.draft = [];
    this.openBrush = null;
    this.selected = null;
    this.pendingPoint = { pair: r.pair, handle: r.xy };
    this.emit("draft");
    return null;
  }

  /** Points tool, second click: the target point; adds the point pair. Returns null, or why not. */
  completePoint(p) {
    const pp = this.pendingPoint;
    if (!pp) return null;
    this.pendingPoint = null;
    const target = this.onImage(p);
    return this.change(() => {
      const pair = this.pairs[pp.pair];
      if (!pair || pair.target || !this.insideHandle(pair.handle, pp.handle)) return MESSAGES.outside;
      if ((pair.points?.length || 0) >= MAX_POINT_PAIRS) return `Pair ${pp.pair + 1} has ${MAX_POINT_PAIRS} point pairs, the limit.`;
      pair.points = [...(pair.points || []), { handle: pp.handle, target }];
      return null;
    });
  }

  /** The point of a point pair within `tol` of p (later pairs and points, target ends, first):
   * a selection {pair, side: "point", index, end}, or null. */
  pointAt(p, tol) {
    for (let i = this.pairs.length - 1; i >= 0; i--) {
      const pts = this.pairs[i].points || [];
      for (let k = pts.length - 1; k >= 0; k--) {
        for (const end of ["target", "handle"]) {
          const [x, y] = pts[k][end];
          if (Math.hypot(p[0] - x, p[1] - y) <= tol) return { pair: i, side: "point", index: k, end };
        }
      }
    }
    return null;
  }

  /** Why a points pair is not what the node takes (a point off the image, a handle point outside
   * the region; checked as the JSON keeps it), or null. */
  pointsPairProblem(pair) {
    if (!pair?.points) return null;
    const p = roundPair(pair);
    const off = ([x, y]) => !(Math.floor(x + 0.5) >= 0 && Math.floor(x + 0.5) < this.W &&
      Math.floor(y + 0.5) >= 0 && Math.floor(y + 0.5) < this.H);
    if (p.points.some((q) => off(q.handle) || off(q.target))) return "off";
    if (p.points.some((q) => !this.insideHandle(p.handle, q.handle))) return "outside";
    return null;
  }

  // --------------------------------------------------------------- select and edit

  shapeAt(sel) {
    if (!sel || sel.side === "point") return null;
    return this.pairs[sel.pair]?.[sel.side] ?? null;
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

  /** Start moving the selected region (kind "move"), one of its corners ("vertex") or the selected
   * point ("point"). */
  beginEdit(kind, vertex = -1) {
    if (!this.selected) return false;
    this.edit = { kind, vertex, orig: this.snapshot() };
    return true;
  }

  /** The edit in progress, offset by (dx, dy) image pixels from where it started. */
  updateEdit(dx, dy) {
    const ed = this.edit;
    if (!ed) return;
    const sel = this.selected;
    const { pair, side } = sel;
    if (ed.kind === "point") {
      const q = ed.orig.pairs[pair].points[sel.index];
      const pts = this.pairs[pair].points.slice();
      pts[sel.index] = { ...pts[sel.index], [sel.end]: this.onImage([q[sel.end][0] + dx, q[sel.end][1] + dy]) };
      this.pairs[pair].points = pts;
    } else if (ed.kind === "move") {
      const orig = ed.orig.pairs[pair][side];
      this.pairs[pair][side] = translateShape(orig, dx, dy);
      const pts = ed.orig.pairs[pair].points;
      if (side === "handle" && pts) this.pairs[pair].points = mapPoints(pts, ([x, y]) => [x + dx, y + dy]);
    } else {
      const orig = ed.orig.pairs[pair][side];
      const pts = orig.points.map((q) => [q[0], q[1]]);
      pts[ed.vertex] = [pts[ed.vertex][0] + dx, pts[ed.vertex][1] + dy];
      this.pairs[pair][side] = { type: "polygon", points: pts };
    }
    ed.moved = ed.moved || dx !== 0 || dy !== 0;
    this.emit("edit");
  }

  /** End the edit. Returns null, or why it was undone (what the node would refuse). */
  commitEdit() {
    const ed = this.edit;
    this.edit = null;
    if (!ed || !ed.moved) return null;
    const sel = this.selected;
    const pair = this.pairs[sel.pair];
    let problem = null;
    if (sel.side === "point") {
      if (this.pointsPairProblem(pair)) problem = "A handle point stays inside its handle region (red); the point was put back.";
    } else {
      const moved = roundShape(this.selectedShape());
      const what = ed.kind === "vertex" ? "the corner" : "the region";
      if (moved.type === "polygon" && polygonProblem(moved.points)) {
        problem = `That would make the region cross, touch or fold back on itself; ${what} was put back.`;
      } else if (!rasterizeShape(moved, this.W, this.H).some((v) => v)) {
        problem = `That would take the region off the image; ${what} was put back.`;
      } else if (sel.side === "handle" && this.pointsPairProblem(pair)) {
        problem = this.pointsPairProblem(pair) === "off"
          ? `That would move a point pair off the image; ${what} was put back.`
          : `That would leave a handle point outside its region; ${what} was put back.`;
      }
    }
    if (problem) {
      this.pairs = ed.orig.pairs;
      this.emit("edit");
      return problem;
    }
    this.record(ed.orig);
    this.emit("shapes");
    return null;
  }

  /** Delete the selected point pair, or the selected region's pair. */
  deleteSelected() {
    const sel = this.selected;
    if (!sel) return false;
    this.selected = null;
    this.openBrush = null;
    this.pendingPoint = null;
    this.change(() => {
      if (sel.side !== "point") {
        this.pairs.splice(sel.pair, 1);
        return null;
      }
      const pair = this.pairs[sel.pair];
      const pts = pair.points.filter((_, k) => k !== sel.index);
      if (pts.length) pair.points = pts;
      else delete pair.points; // the handle region stays, as a pair being drawn
      return null;
    });
    return true;
  }

  /** Remove everything (also unreadable text); `size` [W, H] becomes the coordinate space. */
  clear(size = null) {
    if (!this.pairs.length && !this.draft.length && !this.error && !this.pendingPoint) return false;
    if (!this.error) this.record();
    this.pairs = [];
    this.draft = [];
    this.openBrush = null;
    this.pendingPoint = null;
    this.selected = null;
    this.error = null;
    if (size) [this.W, this.H] = size;
    this.emit("shapes");
    return true;
  }

  /** The image's size is the coordinate space; shapes drawn on another size are rescaled. */
  setImageSize(w, h) {
    if (this.error || (this.W === w && this.H === h)) return false;
    this.pendingPoint = null;
    if (this.W && this.H && this.pairs.length) {
      const sx = w / this.W, sy = h / this.H;
      const f = ([x, y]) => [(x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5];
      this.record();
      this.W = w;
      this.H = h;
      this.pairs = this.pairs.map((p) => {
        const o = { handle: scaleShape(p.handle, sx, sy), target: p.target ? scaleShape(p.target, sx, sy) : null };
        if (p.points) o.points = mapPoints(p.points, (q) => this.onImage(f(q)));
        return o;
      });
      this.draft = this.draft.map(f);
      this.emit("shapes");
      return true;
    }
    this.W = w;
    this.H = h;
    this.refreshProblem();
    this.emit("draft");
    return false;
  }

  /** Number of complete pairs (those the JSON holds). */
  completeCount() {
    return this.pairs.filter(isComplete).length;
  }
}
