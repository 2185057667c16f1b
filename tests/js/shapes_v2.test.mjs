// Shapes JSON version 2 (region + points) in the editor's parser (web/js/regiondrag_geometry.js):
// the same documents accepted and rejected as regiondrag_core.shapes.parse_shapes, on the shared
// cases of tests/golden/shapes_v2_cases.json and shapes_limits_cases.json (tests/test_shapes_v2.py
// runs them in Python), and point pairs kept through the editor's model (load, text, rescale, move,
// undo).
import test from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import {
  MAX_BRUSH_POINTS,
  MAX_BRUSH_SIZE,
  MAX_PAIRS,
  MAX_POINT_PAIRS,
  MAX_POLYGON_VERTICES,
  MAX_SIDE,
  parseShapes,
  serializeShapes,
} from "../../web/js/regiondrag_geometry.js";
import { ShapesModel } from "../../web/js/regiondrag_model.js";

const CASES = JSON.parse(readFileSync(new URL("../golden/shapes_v2_cases.json", import.meta.url), "utf8")).cases;
const LIMIT_CASES = JSON.parse(readFileSync(new URL("../golden/shapes_limits_cases.json", import.meta.url), "utf8")).cases;

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

/** The shorthands of shapes_limits_cases.json (its "about" says what they give). */
function expand(v) {
  if (typeof v === "string" && v.startsWith("$")) {
    const [kind, k] = v.slice(1).split(" ");
    const n = Number(k);
    if (kind === "zigzag") return [...Array.from({ length: n - 2 }, (_, i) => [i, 10 + (i % 2)]), [n - 3, 30], [0, 30]];
    if (kind === "dots") return Array.from({ length: n }, (_, i) => [i % 100, Math.floor(i / 100)]);
    if (kind === "chars") return "x".repeat(n);
    throw new Error(v);
  }
  if (Array.isArray(v)) return v.map(expand);
  if (v && typeof v === "object") {
    if ("$repeat" in v) return Array.from({ length: v.$repeat }, () => expand(v.item));
    return Object.fromEntries(Object.entries(v).map(([key, x]) => [key, expand(x)]));
  }
  return v;
}

for (const raw of LIMIT_CASES) {
  test(`shared limit case: ${raw.name}`, () => {
    const c = expand(raw);
    const text = JSON.stringify(c.doc);
    const r = parseShapes(text, { strict: true });
    const editor = parseShapes(text);
    if (!c.accept) {
      assert.equal(r.ok, false, "accepted a document the backend rejects");
      assert.ok(r.error.includes(c.error), `"${r.error}" lacks "${c.error}"`);
      if (c.where) assert.ok(r.error.includes(c.where), `"${r.error}" lacks "${c.where}"`);
      assert.equal(editor.ok, !!c.editor_loads, editor.error);
      return;
    }
    assert.ok(r.ok, r.error);
    assert.deepEqual(kinds(r), c.pairs);
    assert.deepEqual(editor, r, "the editor's reading equals the strict one");
  });
}

test("the limits are the backend's", () => {
  assert.deepEqual([MAX_POINT_PAIRS, MAX_PAIRS, MAX_POLYGON_VERTICES, MAX_BRUSH_POINTS, MAX_BRUSH_SIZE, MAX_SIDE],
    [32, 64, 4096, 16384, 16384, 16384]);
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
