// The region editor's shapes model (web/js/regiondrag_model.js) without a browser: node --test tests/js
import test from "node:test";
import assert from "node:assert/strict";

import { HISTORY_MAX, ShapesModel } from "../../web/js/regiondrag_model.js";
import { parseShapes } from "../../web/js/regiondrag_geometry.js";

const QUAD = [[10, 10], [50, 10], [50, 40], [10, 40]];
const TRI = [[70, 10], [110, 10], [90, 40]];

function model(W = 200, H = 100) {
  const m = new ShapesModel();
  m.load("", [W, H]);
  const events = [];
  m.subscribe((k) => events.push(k));
  return { m, events };
}

function polygon(m, pts) {
  for (const p of pts) m.addCorner(p);
  return m.closePolygon();
}

const json = (m) => JSON.parse(m.toText());

test("a polygon pair: handle then target, written as the backend's JSON", () => {
  const { m, events } = model();
  assert.equal(m.currentSide().side, "handle");
  assert.equal(polygon(m, QUAD), null);
  assert.deepEqual(m.currentSide(), { index: 0, side: "target" });
  assert.equal(polygon(m, TRI), null);
  const d = json(m);
  assert.deepEqual(d, { version: 1, width: 200, height: 100, pairs: [
    { handle: { type: "polygon", points: QUAD }, target: { type: "polygon", points: TRI } }] });
  assert.equal(m.completeCount(), 1);
  assert.equal(events.filter((e) => e === "shapes").length, 2);
  // the text reads back to the same pairs
  const again = new ShapesModel();
  again.load(m.toText());
  assert.deepEqual(again.pairs, m.pairs);
  assert.deepEqual([again.W, again.H], [200, 100]);
});

test("a self-crossing polygon is refused and stays a draft", () => {
  const { m } = model();
  const problem = polygon(m, [[0, 0], [40, 40], [40, 0], [0, 60]]);
  assert.match(problem, /can't be closed: the polygon intersects itself \(edge 0-1 crosses edge 2-3\)/);
  assert.equal(m.pairs.length, 0);
  assert.equal(m.draft.length, 4);
  assert.equal(m.history.length, 0);
  assert.ok(m.removeCorner());
  assert.equal(m.draft.length, 3);
  assert.ok(m.cancel());
  assert.equal(m.draft.length, 0);
});

test("brush strokes gather in the open region until finishOpen", () => {
  const { m } = model();
  m.addStroke({ size: 20, points: [[30, 30], [40, 35]] });
  assert.equal(m.openBrush, "handle");
  m.addStroke({ size: 10, points: [[60, 30]] });
  assert.equal(m.pairs[0].handle.strokes.length, 2);
  assert.equal(m.pairs[0].target, null);
  assert.equal(m.finishOpen(), null);
  m.addStroke({ size: 20, points: [[130, 30], [140, 50]] });
  assert.equal(m.openBrush, "target");
  m.finishOpen();
  const d = json(m);
  assert.equal(d.pairs.length, 1);
  assert.deepEqual(d.pairs[0].target, { type: "brush", strokes: [{ size: 20, points: [[130, 30], [140, 50]] }] });
  // a polygon corner click ends the open brush region too
  m.addStroke({ size: 5, points: [[5, 5]] });
  m.addCorner([1, 1]);
  assert.equal(m.openBrush, null);
});

test("a pair being drawn stays in the editor: the JSON holds complete pairs only", () => {
  const { m } = model();
  polygon(m, QUAD);
  assert.equal(m.pairs.length, 1);
  assert.equal(m.toText(), "");
  polygon(m, TRI);
  polygon(m, TRI.map(([x, y]) => [x, y + 50]));
  assert.equal(m.pairs.length, 2);
  assert.equal(json(m).pairs.length, 1);
  assert.ok(parseShapes(m.toText(), { strict: true }).ok);
  // a text saved by an older editor, with the pair being drawn, still loads: that pair is being drawn
  const old = JSON.stringify({ version: 1, width: 200, height: 100, pairs: [{ handle: { type: "polygon", points: QUAD } }] });
  m.load(old);
  assert.equal(m.pairs.length, 1);
  assert.deepEqual(m.currentSide(), { index: 0, side: "target" });
  assert.equal(m.toText(), "");
});

test("move and reshape are one undo step each, through the one history", () => {
  const { m } = model();
  polygon(m, QUAD);
  polygon(m, TRI);
  const drawn = m.toText();
  assert.equal(m.history.length, 2);
  const hit = m.hitTest([30, 25], 0.5);
  assert.deepEqual(hit, { pair: 0, side: "handle" });
  m.select(hit);
  m.beginEdit("move");
  m.updateEdit(5, 1);
  m.updateEdit(20, 15); // offsets are from where the drag started
  assert.equal(m.commitEdit(), null);
  assert.deepEqual(json(m).pairs[0].handle.points, QUAD.map(([x, y]) => [x + 20, y + 15]));
  assert.equal(m.history.length, 3);
  // reshape: the selected polygon's corner 2
  assert.equal(m.vertexAt([70, 55], 2), 2);
  m.beginEdit("vertex", 2);
  m.updateEdit(10, 5);
  m.commitEdit();
  assert.deepEqual(json(m).pairs[0].handle.points[2], [80, 60]);
  assert.equal(m.history.length, 4);
  m.undo();
  assert.deepEqual(json(m).pairs[0].handle.points, QUAD.map(([x, y]) => [x + 20, y + 15]));
  m.undo();
  assert.equal(m.toText(), drawn);
});

test("an edit that makes a polygon cross itself is put back, with no history entry", () => {
  const { m } = model();
  polygon(m, QUAD);
  m.select({ pair: 0, side: "handle" });
  m.beginEdit("vertex", 3);
  m.updateEdit(50, 0); // corner 3 past the right edge: edges 1 and 3 cross
  const problem = m.commitEdit();
  assert.match(problem, /cross, touch or fold back on itself; the corner was put back/);
  assert.deepEqual(m.pairs[0].handle.points, QUAD);
  assert.equal(m.history.length, 1);
});

test("a click without a drag adds no history", () => {
  const { m } = model();
  polygon(m, QUAD);
  m.select({ pair: 0, side: "handle" });
  m.beginEdit("move");
  assert.equal(m.commitEdit(), null);
  assert.equal(m.history.length, 1);
});

test("undo takes back draft corners first, then changes; delete and clear undo too", () => {
  const { m } = model();
  polygon(m, QUAD);
  polygon(m, TRI);
  m.addCorner([1, 1]);
  assert.ok(m.canUndo());
  m.undo();
  assert.equal(m.draft.length, 0);
  assert.equal(m.pairs.length, 1);
  m.select({ pair: 0, side: "target" });
  assert.ok(m.deleteSelected());
  assert.equal(m.toText(), "");
  m.undo();
  assert.equal(m.completeCount(), 1);
  assert.ok(m.clear([300, 150]));
  assert.deepEqual([m.W, m.H], [300, 150]);
  m.undo();
  assert.deepEqual([m.W, m.H], [200, 100]);
  assert.equal(m.completeCount(), 1);
  m.undo();
  m.undo();
  assert.equal(m.pairs.length, 0);
  assert.equal(m.undo(), false);
});

test("the history is capped", () => {
  const { m } = model();
  for (let i = 0; i < HISTORY_MAX + 20; i++) m.addStroke({ size: 3, points: [[i, 1]] });
  assert.equal(m.history.length, HISTORY_MAX);
});

test("a new image size rescales the shapes pixel-centre aligned, undoably", () => {
  const { m } = model(200, 100);
  polygon(m, QUAD);
  m.addStroke({ size: 10, points: [[100, 50]] });
  m.finishOpen();
  assert.ok(m.setImageSize(400, 200));
  const d = json(m);
  assert.deepEqual([d.width, d.height], [400, 200]);
  assert.deepEqual(d.pairs[0].handle.points[0], [20.5, 20.5]);
  assert.deepEqual(d.pairs[0].target.strokes[0], { size: 20, points: [[200.5, 100.5]] });
  m.undo();
  assert.deepEqual([m.W, m.H], [200, 100]);
  assert.equal(m.setImageSize(200, 100), false);
});

test("unreadable text: nothing drawn, error kept, clear recovers without history", () => {
  const m = new ShapesModel();
  m.load('{"pairs": [{"handle": 3');
  assert.match(m.error, /not valid JSON/);
  assert.equal(m.canDraw(), false);
  m.load('{"version": 1, "pairs": [{"handle": {"type": "circle"}}]}');
  assert.match(m.error, /unknown shape type/);
  assert.ok(m.clear([64, 64]));
  assert.equal(m.error, null);
  assert.equal(m.history.length, 0);
  assert.ok(m.canDraw());
});

test("load resets the draft and the selection but keeps the history", () => {
  const { m } = model();
  polygon(m, QUAD);
  m.addCorner([1, 1]);
  m.select({ pair: 0, side: "handle" });
  m.load(m.toText());
  assert.equal(m.draft.length, 0);
  assert.equal(m.selected, null);
  assert.equal(m.history.length, 1);
});

test("hit test: later pairs and targets first; brush radius counts", () => {
  const { m } = model();
  m.addStroke({ size: 20, points: [[50, 50]] });
  m.finishOpen();
  m.addStroke({ size: 20, points: [[55, 50]] });
  m.finishOpen();
  assert.deepEqual(m.hitTest([52, 50], 0), { pair: 0, side: "target" });
  assert.deepEqual(m.hitTest([41, 50], 0), { pair: 0, side: "handle" });
  assert.equal(m.hitTest([41, 70], 0), null);
});

test("committed shapes keep the JSON text's precision, so the model is what the backend reads", () => {
  const { m } = model();
  polygon(m, [[10.123456, 10.987654], [50.005, 10], [50, 40.3333333]]);
  m.addStroke({ size: 12.345678, points: [[1.23456, 2.34567]] });
  assert.deepEqual(m.pairs[0].handle.points, [[10.12, 10.99], [50.01, 10], [50, 40.33]]);
  assert.deepEqual(m.pairs[0].target.strokes[0], { size: 12.35, points: [[1.23, 2.35]] });
  const again = new ShapesModel();
  again.load(m.toText());
  assert.deepEqual(again.pairs, m.pairs);
});
