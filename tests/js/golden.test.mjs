// The editor's preview geometry (web/js/regiondrag_geometry.js, regiondrag_raster.js,
// regiondrag_mapping.js, regiondrag_points.js) against the Python core, point for point, on golden
// vectors written by tools/make_golden.py from regiondrag_core (the files are checked against the
// core by tests/test_golden.py).
import test from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { parseShapes } from "../../web/js/regiondrag_geometry.js";
import { mapPairMasks, mapPairPoints, mapPointsPair, previewPixels } from "../../web/js/regiondrag_mapping.js";
import { rasterizeShape } from "../../web/js/regiondrag_raster.js";

const load = (name) => JSON.parse(readFileSync(new URL(`./golden/${name}`, import.meta.url), "utf8")).cases;
const SHAPES = load("shapes.json");
const MASKS = load("masks.json");
const POINTS = load("points.json");

function maskOf(flat, W, H) {
  const m = new Uint8Array(W * H);
  for (const i of flat) m[i] = 1;
  return m;
}

function pairOf(c) {
  if (!c.shapes) return { handle: null, target: null };
  const r = parseShapes(c.shapes);
  assert.ok(r.ok, r.error);
  return r.pairs[0];
}

/** Rows where the JS map differs from the golden map (ambiguous .5 ties excepted). */
function mapDiff(c, got) {
  const want = c.map;
  assert.deepEqual(Array.from(got.target), want.target, `${c.name}: target pixels`);
  const amb = new Set(c.ambiguous);
  const bad = [];
  for (let i = 0; i < want.handle.length; i++) {
    if (got.handle[i] !== want.handle[i] && !amb.has(i)) bad.push(i);
  }
  return bad;
}

for (const c of [...SHAPES, ...MASKS]) {
  test(`${c.name}: ${c.method} map on the core's masks equals the core's, point for point`, () => {
    const [H, W] = c.size;
    const got = mapPairMasks(pairOf(c), maskOf(c.handle_mask, W, H), maskOf(c.target_mask, W, H), W, H);
    const bad = mapDiff(c, got);
    const show = bad.slice(0, 5).map((i) => {
      const p = (k) => [k % W, Math.floor(k / W)];
      return `target ${p(c.map.target[i])}: js ${p(got.handle[i])} core ${p(c.map.handle[i])}`;
    });
    assert.equal(bad.length, 0, `${bad.length} of ${c.map.target.length} points differ:\n${show.join("\n")}`);
  });
}

// The JS port draws shapes as the core's OpenCV calls do (cv2.fillPoly for polygons, cv2.circle and
// thick cv2.line for brush strokes, 1/16-px fixed point), so masks and whole maps must be equal.
// Where they are not, the report says whether the difference stays on the region's edge.
function edgeOnlyDiff(mine, want, W, H) {
  let diff = 0, inner = 0;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = y * W + x;
      if (!mine[i] === !want[i]) continue;
      diff++;
      let edge = false;
      for (let dy = -1; dy <= 1 && !edge; dy++) {
        for (let dx = -1; dx <= 1 && !edge; dx++) {
          const u = x + dx, v = y + dy;
          if (u >= 0 && v >= 0 && u < W && v < H && !want[v * W + u] !== !want[i]) edge = true;
        }
      }
      if (!edge) inner++;
    }
  }
  return { diff, inner };
}

for (const c of SHAPES) {
  test(`${c.name}: rasterisation and the whole map from the shapes equal the core's`, (t) => {
    const [H, W] = c.size;
    const pair = pairOf(c);
    const notes = [];
    for (const side of ["handle", "target"]) {
      const want = maskOf(c[`${side}_mask`], W, H);
      const { diff, inner } = edgeOnlyDiff(rasterizeShape(pair[side], W, H), want, W, H);
      notes.push(`${side} ${diff}/${c[`${side}_mask`].length} px differ`);
      assert.equal(diff, 0, `${side} ${pair[side].type}: ${diff} pixels differ from OpenCV's (${inner} off the edge)`);
    }
    const got = mapPairPoints(pair, W, H);
    const want = new Map(c.map.target.map((ti, k) => [ti, c.map.handle[k]]));
    let same = 0;
    for (let k = 0; k < got.target.length; k++) if (want.get(got.target[k]) === got.handle[k]) same++;
    const share = same / c.map.target.length;
    notes.push(`map from the shapes: ${same}/${c.map.target.length} target pixels as the core`);
    t.diagnostic(`${c.name}: ${notes.join("; ")}`);
    assert.equal(share, 1, notes.join("; "));
    assert.equal(mapDiff(c, got).length, 0, "the pair maps exactly as in the core");
  });
}

// Region + points (shapes version 2): the handle region moved by its point pairs, as
// regiondrag_core.points.map_region_points moves it (OpenCV's contours and fills, the weighting with
// its tie rule and float order): every row equal and in the same order.
const flat = (m) => {
  const o = [];
  m.forEach((v, i) => {
    if (v) o.push(i);
  });
  return o;
};

for (const c of POINTS) {
  test(`${c.name}: region + points map equals the core's, row for row`, () => {
    const [H, W] = c.size;
    const r = parseShapes(c.shapes, { strict: true });
    assert.ok(r.ok, r.error);
    const pair = r.pairs[0];
    assert.deepEqual(flat(rasterizeShape(pair.handle, W, H)), c.handle_mask, "handle region");
    const got = mapPointsPair(pair, W, H);
    assert.deepEqual(flat(got.part), c.part, "moved parts");
    assert.deepEqual(flat(got.region), c.region, "target region");
    assert.equal(got.target.length, c.map.target.length, "rows");
    const bad = [];
    for (let i = 0; i < c.map.target.length; i++) {
      if (got.target[i] !== c.map.target[i] || got.handle[i] !== c.map.handle[i]) bad.push(i);
    }
    assert.equal(bad.length, 0, `${bad.length} rows differ, first ${bad.slice(0, 5)}`);
  });
}

test("the preview copies a points pair's handle pixels onto its target, later pairs last", () => {
  const c = POINTS.find((x) => x.name === "points-one-pair-translation");
  const [H, W] = c.size;
  const pair = parseShapes(c.shapes).pairs[0];
  const src = new Uint8ClampedArray(4 * W * H).map((_, i) => (i * 7) % 251);
  const out = previewPixels(src, W, H, [pair]);
  for (let i = 0; i < c.map.target.length; i++) {
    const t = c.map.target[i], h = c.map.handle[i];
    assert.deepEqual(Array.from(out.slice(4 * t, 4 * t + 4)), Array.from(src.slice(4 * h, 4 * h + 4)));
  }
  const untouched = flat(Uint8Array.from({ length: W * H }, (_, i) => !c.region.includes(i)));
  for (const i of untouched.slice(0, 200)) assert.equal(out[4 * i], src[4 * i]);
});
