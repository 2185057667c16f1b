// The region editor's Points tool and the drawing rules that keep the saved JSON what the node
// accepts (web/js/regiondrag_model.js), without a browser: node --test tests/js
import test from "node:test";
import assert from "node:assert/strict";

import { isComplete, MESSAGES, ShapesModel } from "../../web/js/regiondrag_model.js";
import {
  MAX_BRUSH_POINTS,
  MAX_PAIRS,
  MAX_POINT_PAIRS,
  MAX_POLYGON_VERTICES,
  MAX_SHAPES_CHARS,
  parseShapes,
} from "../../web/js/regiondrag_geometry.js";
import { rasterizeShape } from "../../web/js/regiondrag_raster.js";

const QUAD = [[10, 10], [50, 10], [50, 40], [10, 40]];
const TRI = [[70, 10], [110, 10], [90, 40]];

function model(W = 200, H = 100) {
  const m = new ShapesModel();
  m.load("", [W, H]);
  return m;
}

function polygon(m, pts) {
  for (const p of pts) assert.equal(m.addCorner(p), null);
  return m.closePolygon();
}

const json = (m) => JSON.parse(m.toText());

/** The saved text is always one the node reads (or empty). */
function assertSaved(m) {
  const text = m.toText();
  if (!text) return;
  const r = parseShapes(text, { strict: true });
  assert.ok(r.ok, `saved text refused: ${r.error}`);
  assert.ok(r.pairs.every((p) => p.target || p.points), "an incomplete pair was saved");
}

function point(m, h, t) {
  assert.equal(m.beginPoint(h), null);
  return m.completePoint(t);
}

test("a point pair: a handle point inside the handle region, then its target; saved as version 2", () => {
  const m = model();
  assert.equal(polygon(m, QUAD), null);
  assert.equal(m.toText(), "", "a handle region alone is not saved");
  assert.equal(m.beginPoint([20, 20]), null);
  assert.deepEqual(m.pendingPoint, { pair: 0, handle: [20, 20] });
  assert.equal(m.toText(), "", "nor is a handle point without its target");
  assert.equal(m.history.length, 1);
  assert.equal(m.completePoint([30.123, 25]), null);
  assert.equal(m.pendingPoint, null);
  assert.equal(m.history.length, 2);
  assert.deepEqual(json(m), { version: 2, width: 200, height: 100, pairs: [
    { handle: { type: "polygon", points: QUAD }, points: [{ handle: [20, 20], target: [30.12, 25] }] }] });
  assert.equal(point(m, [45, 35], [60, 60]), null);
  assert.equal(json(m).pairs[0].points.length, 2);
  assert.equal(m.completeCount(), 1);
  // the next polygon starts a new pair: a points pair takes no target region
  assert.deepEqual(m.currentSide(), { index: 1, side: "handle" });
  assertSaved(m);
  // a pair with a target region only: version 1
  polygon(m, TRI);
  polygon(m, TRI.map(([x, y]) => [x, y + 50]));
  m.select({ pair: 0, side: "handle" });
  m.deleteSelected();
  assert.equal(json(m).version, 1);
});

test("a handle point outside every handle region, or in a pair with a target region, is refused", () => {
  const m = model();
  assert.equal(m.beginPoint([20, 20]), MESSAGES.noHandle);
  polygon(m, QUAD);
  polygon(m, TRI); // pair 1: QUAD -> TRI
  assert.match(m.beginPoint([20, 20]), /^Pair 1 moves onto its target region \(blue\).*not both/);
  assert.equal(m.pendingPoint, null);
  polygon(m, [[10, 60], [60, 60], [60, 90], [10, 90]]); // pair 2, no target yet
  assert.equal(m.beginPoint([100, 80]), MESSAGES.outside);
  assert.equal(m.beginPoint([20, 70]), null);
  assert.equal(m.pendingPoint.pair, 1);
  assert.equal(m.history.length, 3, "refusals leave no history");
});

test("a handle point is inside as the backend checks it: the pixel floor(x + .5) of the rasterised region", () => {
  const m = model(64, 48);
  polygon(m, [[10.3, 10.3], [30.6, 10.3], [30.6, 30.6], [10.3, 30.6]]);
  const mask = rasterizeShape(m.pairs[0].handle, 64, 48);
  let inside = 0, outside = 0;
  for (let y = 8; y < 34; y += 0.25) {
    for (let x = 8; x < 34; x += 0.25) {
      const want = !!mask[Math.floor(y + 0.5) * 64 + Math.floor(x + 0.5)];
      const got = m.beginPoint([x, y]) === null;
      assert.equal(got, want, `(${x}, ${y})`);
      m.cancel();
      if (want) inside++;
      else outside++;
    }
  }
  assert.ok(inside > 1000 && outside > 500);
  // a brush region: its painted pixels, not the stroke's hit area
  const b = model(64, 48);
  b.addStroke({ size: 5, points: [[20, 20], [40, 20]] });
  b.finishOpen();
  assert.equal(b.beginPoint([30, 22]), null);
  b.cancel();
  assert.equal(b.beginPoint([30, 23]), MESSAGES.outside);
});

test(`the ${MAX_POINT_PAIRS + 1}th point pair of a pair is refused`, () => {
  const m = model();
  polygon(m, QUAD);
  for (let k = 0; k < MAX_POINT_PAIRS; k++) assert.equal(point(m, [12 + k, 12 + (k % 20)], [100, 50]), null);
  assert.equal(json(m).pairs[0].points.length, MAX_POINT_PAIRS);
  const h = m.history.length;
  assert.match(m.beginPoint([30, 30]), new RegExp(`^Pair 1 has ${MAX_POINT_PAIRS} point pairs, the limit`));
  assert.equal(m.pendingPoint, null);
  assert.equal(m.history.length, h);
  assertSaved(m);
});

test("moving a point: handle points stay in their region, target points on the image; undo and redo", () => {
  const m = model();
  polygon(m, QUAD);
  point(m, [20, 20], [80, 60]);
  point(m, [40, 30], [90, 70]);
  const placed = m.toText();
  // the hit test finds the point ends, target first
  assert.deepEqual(m.pointAt([80.5, 60.5], 2), { pair: 0, side: "point", index: 0, end: "target" });
  assert.deepEqual(m.pointAt([40, 31], 2), { pair: 0, side: "point", index: 1, end: "handle" });
  assert.equal(m.pointAt([60, 60], 2), null);
  // move the target of point pair 1 by (+15, -10)
  m.select(m.pointAt([80, 60], 2));
  m.beginEdit("point");
  m.updateEdit(5, 5);
  m.updateEdit(15, -10);
  assert.equal(m.commitEdit(), null);
  const moved = m.toText();
  assert.deepEqual(json(m).pairs[0].points[0], { handle: [20, 20], target: [95, 50] });
  // a target point dragged off the image stays on its edge pixel
  m.select({ pair: 0, side: "point", index: 0, end: "target" });
  m.beginEdit("point");
  m.updateEdit(500, 500);
  assert.equal(m.commitEdit(), null);
  assert.deepEqual(json(m).pairs[0].points[0].target, [199.49, 99.49]);
  assertSaved(m);
  // a handle point dragged out of its region is put back
  m.select({ pair: 0, side: "point", index: 1, end: "handle" });
  m.beginEdit("point");
  m.updateEdit(30, 0);
  assert.match(m.commitEdit(), /handle point stays inside its handle region.*put back/);
  assert.deepEqual(m.pairs[0].points[1].handle, [40, 30]);
  // ... and moved within it, it moves
  m.beginEdit("point");
  m.updateEdit(-25, 5);
  assert.equal(m.commitEdit(), null);
  assert.deepEqual(json(m).pairs[0].points[1].handle, [15, 35]);
  const last = m.toText();
  // undo each move, then redo them
  assert.ok(m.undo());
  assert.ok(m.undo());
  assert.equal(m.toText(), moved);
  assert.ok(m.undo());
  assert.equal(m.toText(), placed);
  assert.ok(m.canRedo());
  assert.ok(m.redo());
  assert.equal(m.toText(), moved);
  assert.ok(m.redo());
  assert.ok(m.redo());
  assert.equal(m.toText(), last);
  assert.equal(m.redo(), false);
});

test("deleting a point pair; the last one leaves the handle region as a pair being drawn; undo and redo", () => {
  const m = model();
  polygon(m, QUAD);
  point(m, [20, 20], [80, 60]);
  point(m, [40, 30], [90, 70]);
  const two = m.toText();
  m.select({ pair: 0, side: "point", index: 0, end: "handle" });
  assert.ok(m.deleteSelected());
  assert.deepEqual(json(m).pairs[0].points, [{ handle: [40, 30], target: [90, 70] }]);
  const one = m.toText();
  m.select({ pair: 0, side: "point", index: 0, end: "target" });
  assert.ok(m.deleteSelected());
  assert.equal(m.toText(), "", "a handle region without target or points is not saved");
  assert.equal(m.pairs.length, 1);
  assert.equal(isComplete(m.pairs[0]), false);
  assert.deepEqual(m.currentSide(), { index: 0, side: "target" });
  // new point pairs go to it again
  assert.equal(m.beginPoint([30, 30]), null);
  m.cancel();
  assert.ok(m.undo());
  assert.equal(m.toText(), one);
  assert.ok(m.undo());
  assert.equal(m.toText(), two);
  assert.ok(m.redo());
  assert.equal(m.toText(), one);
  // a new change drops what could be redone
  m.select({ pair: 0, side: "handle" });
  m.beginEdit("move");
  m.updateEdit(3, 4);
  assert.equal(m.commitEdit(), null);
  assert.equal(m.canRedo(), false);
  assert.deepEqual(json(m).pairs[0].points, [{ handle: [43, 34], target: [93, 74] }]);
});

test("undo takes back the handle point being placed first (also Backspace and Esc), then the point pair", () => {
  const m = model();
  polygon(m, QUAD);
  point(m, [20, 20], [80, 60]);
  const one = m.toText();
  m.beginPoint([30, 30]);
  assert.ok(m.canUndo());
  assert.ok(m.undo());
  assert.equal(m.pendingPoint, null);
  assert.equal(m.toText(), one);
  m.beginPoint([30, 30]);
  assert.ok(m.removeCorner()); // Backspace
  assert.equal(m.pendingPoint, null);
  m.beginPoint([30, 30]);
  assert.ok(m.cancel()); // Esc
  assert.equal(m.pendingPoint, null);
  assert.ok(m.undo());
  assert.equal(m.toText(), "");
  assert.equal(m.pairs.length, 1);
  assert.ok(m.redo());
  assert.equal(m.toText(), one);
});

test("moving or reshaping a handle region moves its point pairs; what would break them is put back", () => {
  const m = model();
  polygon(m, QUAD);
  point(m, [12, 12], [30, 20]);
  point(m, [48, 38], [150, 90]);
  const placed = m.toText();
  m.select({ pair: 0, side: "handle" });
  m.beginEdit("move");
  m.updateEdit(20, 5);
  assert.equal(m.commitEdit(), null);
  assert.deepEqual(json(m).pairs[0].points, [{ handle: [32, 17], target: [50, 25] }, { handle: [68, 43], target: [170, 95] }]);
  m.undo();
  assert.equal(m.toText(), placed);
  // a move that takes a target point off the image is put back
  m.select({ pair: 0, side: "handle" });
  m.beginEdit("move");
  m.updateEdit(60, 0);
  assert.match(m.commitEdit(), /point pair off the image; the region was put back/);
  assert.equal(m.toText(), placed);
  // a corner dragged so that a handle point falls outside the region is put back
  m.select({ pair: 0, side: "handle" });
  m.beginEdit("vertex", 2);
  m.updateEdit(-20, -20);
  assert.match(m.commitEdit(), /handle point outside its region; the corner was put back/);
  assert.equal(m.toText(), placed);
});

test("a region dragged wholly off the image is put back (the node refuses a region on no pixel)", () => {
  const m = model();
  polygon(m, QUAD);
  polygon(m, TRI);
  const drawn = m.toText();
  m.select({ pair: 0, side: "target" });
  m.beginEdit("move");
  m.updateEdit(150, 0);
  assert.match(m.commitEdit(), /off the image; the region was put back/);
  assert.equal(m.toText(), drawn);
  m.beginEdit("move");
  m.updateEdit(100, 0); // partly off the image: fine, the node clips it
  assert.equal(m.commitEdit(), null);
  assertSaved(m);
});

test("the saved text never holds an incomplete pair and always reads strictly, over random edits", () => {
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const m = model(120, 90);
  const seen = { points: 0, pairs: 0 };
  for (let step = 0; step < 600; step++) {
    const r = rnd();
    const p = [rnd() * 120 - 0.5, rnd() * 90 - 0.5];
    if (r < 0.25) {
      m.addCorner(p);
      if (rnd() < 0.3) m.closePolygon();
    } else if (r < 0.35) {
      m.addStroke({ size: 1 + Math.floor(rnd() * 10), points: [p, [p[0] + 5, p[1] + 3]] });
      if (rnd() < 0.5) m.finishOpen();
    } else if (r < 0.55) {
      if (m.pendingPoint) m.completePoint(p);
      else {
        // mostly inside a handle region without a target, sometimes anywhere
        const open = m.pairs.filter((q) => !q.target);
        let h = p;
        if (open.length && rnd() < 0.8) {
          const mask = rasterizeShape(open[Math.floor(rnd() * open.length)].handle, 120, 90);
          const on = [];
          mask.forEach((v, i) => v && on.push(i));
          if (on.length) {
            const i = on[Math.floor(rnd() * on.length)];
            h = [(i % 120) + rnd() * 0.98 - 0.49, Math.floor(i / 120) + rnd() * 0.98 - 0.49];
          }
        }
        if (m.beginPoint(h) === null && rnd() < 0.7) m.completePoint([rnd() * 130 - 5, rnd() * 100 - 5]);
      }
    } else if (r < 0.65) {
      const hit = m.pointAt(p, 8) || m.hitTest(p, 2);
      if (hit) {
        m.select(hit);
        m.beginEdit(hit.side === "point" ? "point" : "move");
        m.updateEdit(rnd() * 40 - 20, rnd() * 40 - 20);
        m.commitEdit();
      }
    } else if (r < 0.72) {
      const hit = m.pointAt(p, 8) || m.hitTest(p, 2);
      if (hit) {
        m.select(hit);
        m.deleteSelected();
      }
    } else if (r < 0.82) {
      m.undo();
    } else if (r < 0.9) {
      m.redo();
    } else if (r < 0.95) {
      m.cancel();
    } else {
      m.finishOpen();
    }
    assertSaved(m);
    assert.equal(m.problem, null, `step ${step}: ${m.problem}`);
    seen.points = Math.max(seen.points, ...m.pairs.map((q) => q.points?.length || 0));
    seen.pairs = Math.max(seen.pairs, m.completeCount());
  }
  assert.ok(m.history.length > 20);
  assert.ok(seen.points >= 3 && seen.pairs >= 3, JSON.stringify(seen));
});

test(`drawing past the caps is refused: ${MAX_PAIRS} pairs, ${MAX_POLYGON_VERTICES} corners, ${MAX_BRUSH_POINTS} brush points`, () => {
  const m = model(400, 400);
  for (let i = 0; i < MAX_PAIRS; i++) {
    const x = (i % 8) * 50, y = Math.floor(i / 8) * 50;
    polygon(m, [[x, y], [x + 20, y], [x + 10, y + 20]]);
    if (i % 2) polygon(m, [[x + 25, y], [x + 45, y], [x + 35, y + 20]]);
    else point(m, [x + 10, y + 8], [x + 30, y + 30]);
  }
  assert.equal(m.completeCount(), MAX_PAIRS);
  assertSaved(m);
  const h = m.history.length;
  assert.equal(m.addCorner([5, 390]), MESSAGES.pairsFull);
  assert.equal(m.draft.length, 0);
  assert.equal(m.addStroke({ size: 5, points: [[5, 390]] }), MESSAGES.pairsFull);
  assert.deepEqual(m.strokeRoom(), { room: 0, problem: MESSAGES.pairsFull });
  assert.equal(m.history.length, h);
  // a handle region being drawn counts as a pair: its target may still be drawn
  m.undo();
  assert.equal(m.pairs.length, MAX_PAIRS);
  assert.equal(m.completeCount(), MAX_PAIRS - 1);
  assert.equal(m.addCorner([5, 390]), null, "the target of pair 64 may be drawn");
  m.cancel();

  const c = model(5000, 100);
  for (let i = 0; i < MAX_POLYGON_VERTICES - 2; i++) assert.equal(c.addCorner([i, 10 + (i % 2)]), null);
  assert.equal(c.addCorner([MAX_POLYGON_VERTICES - 3, 30]), null);
  assert.equal(c.addCorner([0, 30]), null);
  assert.equal(c.addCorner([0, 50]), MESSAGES.cornersFull);
  assert.equal(c.draft.length, MAX_POLYGON_VERTICES);
  assert.equal(c.closePolygon(), null);
  assertSaved(c);

  const b = model();
  const dots = (n, y0 = 0) => Array.from({ length: n }, (_, i) => [i % 100, y0 + Math.floor(i / 100) / 10]);
  assert.equal(b.addStroke({ size: 3, points: dots(10000) }), null);
  assert.equal(b.strokeRoom().room, MAX_BRUSH_POINTS - 10000);
  assert.equal(b.addStroke({ size: 3, points: dots(MAX_BRUSH_POINTS - 10000 + 1) }), MESSAGES.brushFull);
  assert.equal(b.pairs[0].handle.strokes.length, 1);
  assert.equal(b.addStroke({ size: 3, points: dots(MAX_BRUSH_POINTS - 10000) }), null);
  assert.deepEqual(b.strokeRoom(), { room: 0, problem: MESSAGES.brushFull });
  b.finishOpen();
  assert.equal(b.strokeRoom().room, MAX_BRUSH_POINTS, "the next region starts afresh");
  b.addStroke({ size: 3, points: [[150, 50]] });
  b.finishOpen();
  assertSaved(b);
});

test("polygons that cross, touch or fold back are not closed, with the node's reason", () => {
  const m = model();
  for (const [pts, why] of [
    [[[0, 0], [40, 40], [40, 0], [0, 40]], /intersects itself \(edge 0-1 crosses edge 2-3\)/],
    [[[0, 0], [40, 0], [30, 20], [20, 0], [10, 20]], /intersects itself/], // corner 3 touches edge 0-1
    [[[0, 0], [40, 0], [40, 40], [40, 20], [0, 40]], /folds back onto itself/],
    [[[0, 0], [10, 10], [20, 20]], /zero area/],
  ]) {
    const problem = polygon(m, pts);
    assert.match(problem, /^This region can't be closed: /);
    assert.match(problem, why);
    assert.equal(m.pairs.length, 0);
    assert.equal(m.draft.length, pts.length, "the corners stay, to be fixed");
    m.cancel();
  }
  // rounding to the JSON's 1/100 px is what is checked: corner 3 0.001 px off edge 0-1 rounds onto it
  assert.match(polygon(m, [[0, 0], [40, 0], [30, 20], [20, 0.001], [10, 20]]), /intersects itself/);
  m.cancel();
  assert.equal(polygon(m, [[0, 0], [40, 0], [30, 20], [20, 0.01], [10, 20]]), null);
  assertSaved(m);
});

test("a change that would make the JSON longer than the node takes is refused", () => {
  const m = model(16384, 16384);
  const stroke = (k) => Array.from({ length: MAX_BRUSH_POINTS }, (_, i) => [1000.11 + k + (i % 5000), 2000.22 + i / 5000]);
  let refused = null;
  for (let k = 0; k < 40 && !refused; k++) {
    refused = m.addStroke({ size: 3, points: stroke(k) });
    m.finishOpen();
  }
  assert.equal(refused, MESSAGES.textFull);
  assert.ok(m.toText().length <= MAX_SHAPES_CHARS);
  assertSaved(m);
});

test("loaded text the node would refuse is shown, with the reason, and fixing it clears the reason", () => {
  const m = new ShapesModel();
  const sq = { type: "polygon", points: QUAD };
  m.load(JSON.stringify({ version: 2, width: 200, height: 100, pairs: [
    { handle: sq, points: [{ handle: [20, 20], target: [30, 30] }, { handle: [100, 80], target: [110, 80] }] }] }));
  assert.equal(m.error, null);
  assert.equal(m.problem, "pair 1 point 2 handle: (100, 80) is not inside the pair's handle region.");
  m.select({ pair: 0, side: "point", index: 1, end: "handle" });
  m.deleteSelected();
  assert.equal(m.problem, null);
  m.load(JSON.stringify({ version: 1, width: 200, height: 100, pairs: [
    { handle: { type: "polygon", points: [[0, 0], [40, 40], [40, 0], [0, 40]] }, target: sq }] }));
  assert.match(m.problem, /pair 1 handle: the polygon intersects itself/);
  m.load(JSON.stringify({ version: 1, width: 200, height: 100, pairs: Array(MAX_PAIRS + 1).fill({ handle: sq, target: sq }) }));
  assert.match(m.problem, /65 pairs; the limit is 64/);
});

test("a new image size scales point pairs with the regions and keeps them on the image", () => {
  const m = model(200, 100);
  polygon(m, QUAD);
  point(m, [20, 20], [199.49, 99.49]);
  assert.ok(m.setImageSize(100, 50));
  assert.deepEqual(json(m).pairs[0].points, [{ handle: [9.75, 9.75], target: [99.49, 49.49] }]);
  assertSaved(m);
  assert.ok(m.undo());
  assert.deepEqual(json(m).pairs[0].points, [{ handle: [20, 20], target: [199.49, 99.49] }]);
});
