// Shapes JSON version 2 (region + points) in the editor's parser (web/js/regiondrag_geometry.js):
// the same documents accepted and rejected as regiondrag_core.shapes.parse_shapes, on the shared
// cases of tests/golden/shapes_v2_cases.json (tests/test_shapes_v2.py runs them in Python), and
// point pairs kept through the editor's model (load, text, rescale, move, undo).
import test from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { MAX_POINT_PAIRS, parseShapes, serializeShapes } from "../../web/js/regiondrag_geometry.js";
import { ShapesModel } from "../../web/js/regiondrag_model.js";

const CASES = JSON.parse(readFileSync(new URL("../golden/shapes_v2_cases.json", import.meta.url), "utf8")).cases;

const kinds = (r) => r.pairs.map((p) => (p.points ? p.points.length : "shape"));

for (const c of CASES) {
  test(`shared case: ${c.name}`, () => {
    const text = JSON.stringify(c.doc);
    const r = parseShapes(text, { strict: true });
    if (!c.accept) {
      assert.equal(r.ok, false, "accepted a document the backend rejects");
      assert.ok(r.error.includes(c.error), `"${r.error}" lacks "${c.error}"`);
      if (c.where) assert.ok(r.error.includes(c.where), `"${r.error}" lacks "${c.where}"`);
      const editor = parseShapes(text);
      if (c.editor_draft) {
        assert.ok(editor.ok, editor.error);
        const last = editor.pairs[editor.pairs.length - 1];
        assert.equal(last.target, null);
        assert.equal(last.points, undefined);
      } else {
        assert.equal(editor.ok, false);
      }
      return;
    }
    assert.ok(r.ok, r.error);
    assert.deepEqual(kinds(r), c.pairs);
    c.doc.pairs.forEach((raw, i) => {
      if (r.pairs[i].points) assert.deepEqual(r.pairs[i].points, raw.points.map((q) => ({ handle: q.handle, target: q.target })));
    });
    assert.deepEqual(parseShapes(text), r, "the editor's reading equals the strict one");
  });
}

test("the limit is the backend's", () => {
  assert.equal(MAX_POINT_PAIRS, 32);
});

const SQ = { type: "polygon", points: [[10, 10], [40, 10], [40, 40], [10, 40]] };
const TRI = { type: "polygon", points: [[60, 10], [90, 10], [75, 40]] };
const DOC = {
  version: 2, width: 100, height: 80,
  pairs: [
    { handle: SQ, points: [{ handle: [20, 20], target: [30.123, 25] }, { handle: [35, 35], target: [50, 60] }] },
    { handle: TRI, target: SQ },
  ],
};

test("serializeShapes writes version 2 with points, version 1 without, and reads back", () => {
  const r = parseShapes(JSON.stringify(DOC));
  const back = JSON.parse(serializeShapes(100, 80, r.pairs));
  assert.equal(back.version, 2);
  assert.deepEqual(back.pairs[0], { handle: SQ, points: [{ handle: [20, 20], target: [30.12, 25] }, { handle: [35, 35], target: [50, 60] }] });
  assert.deepEqual(back.pairs[1], { handle: TRI, target: SQ });
  assert.equal(JSON.parse(serializeShapes(100, 80, r.pairs.slice(1))).version, 1);
});

test("the model keeps point pairs: a points pair is complete, survives text, rescale, move and undo", () => {
  const m = new ShapesModel();
  m.load(JSON.stringify(DOC));
  assert.equal(m.error, null);
  assert.equal(m.completeCount(), 2);
  assert.deepEqual(m.currentSide(), { index: 2, side: "handle" });
  const again = new ShapesModel();
  again.load(m.toText());
  assert.deepEqual(again.pairs[0].points, [{ handle: [20, 20], target: [30.12, 25] }, { handle: [35, 35], target: [50, 60] }]);
  // a new handle region after a points pair starts a new pair, it does not become its target
  for (const p of [[70, 60], [90, 60], [80, 75]]) m.addCorner(p);
  assert.equal(m.closePolygon(), null);
  assert.equal(m.pairs.length, 3);
  assert.equal(m.pairs[0].target, null);
  // rescaling the image scales the points as the shapes (pixel-centre aligned)
  assert.ok(m.setImageSize(200, 160));
  assert.deepEqual(m.pairs[0].points[0], { handle: [40.5, 40.5], target: [60.74, 50.5] });
  // moving the handle region moves its point pairs with it
  m.select({ pair: 0, side: "handle" });
  m.beginEdit("move");
  m.updateEdit(10, -5);
  assert.equal(m.commitEdit(), null);
  assert.deepEqual(m.pairs[0].points[0], { handle: [50.5, 35.5], target: [70.74, 45.5] });
  assert.ok(m.undo());
  assert.deepEqual(m.pairs[0].points[0], { handle: [40.5, 40.5], target: [60.74, 50.5] });
  assert.equal(JSON.parse(m.toText()).version, 2);
});
