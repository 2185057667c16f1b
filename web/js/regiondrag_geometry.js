// RegionDrag region editor: the shapes JSON and plain shape geometry (no DOM; node --test imports it).
// Rasterisation is in regiondrag_raster.js, the point maps of the preview in regiondrag_mapping.js.
//
// Shape JSON (the format of regiondrag_core/shapes.py, which documents it in full):
//   {"version": 2, "width": W, "height": H,
//    "pairs": [{"handle": SHAPE, "target": SHAPE},
//              {"handle": SHAPE, "points": [{"handle": [x, y], "target": [x, y]}, ...]}, ...]}
//   SHAPE = {"type": "polygon", "points": [[x, y], ...]}
//         | {"type": "brush", "strokes": [{"size": d, "points": [[x, y], ...]}, ...]}
// Version 1 (also a document without "version") has no point pairs: a pair's "points" key is
// ignored there. Version 2: a pair has a target shape or 1..MAX_POINT_PAIRS point pairs, not
// both. Coordinates are image pixels with pixel (i, j) centred on the integer point (i, j), so the
// image spans [-0.5, W - 0.5] x [-0.5, H - 0.5]. parseShapes(text, {strict: true}) accepts exactly
// what the backend's parser accepts: the same checks and limits, and polygonProblem is
// regiondrag_core.geometry.polygon_problem (tests/golden/shapes_v2_cases.json and
// shapes_limits_cases.json, read by both test suites). That a handle point lies inside its handle
// region is checked where the shapes are rasterised (the backend; the editor's model).

export const SHAPES_VERSION = 2; // the newest version read; serializeShapes writes 1 unless a pair has points
export const SHAPES_VERSIONS = [1, 2];
// The backend's limits (regiondrag_core/shapes.py); parseShapes(text, {strict: true}) refuses past them.
export const MAX_POINT_PAIRS = 32;
export const MAX_PAIRS = 64;
export const MAX_POLYGON_VERTICES = 4096;
export const MAX_BRUSH_POINTS = 16384;
export const MAX_BRUSH_SIZE = 16384;
export const MAX_SIDE = 16384;
export const MAX_SHAPES_CHARS = 4000000;
export const MAX_JSON_DEPTH = 16;
const MAX_COORD = 1e6;

const isNum = (v) => typeof v === "number" && Number.isFinite(v);

/** Deepest nesting of [ / { outside strings, as shapes._json_depth counts it. */
export function jsonDepth(text) {
  const stripped = text.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  let d = 0, best = 0;
  for (let i = 0; i < stripped.length; i++) {
    const c = stripped.charCodeAt(i);
    if (c === 91 || c === 123) best = Math.max(best, ++d);
    else if (c === 93 || c === 125) d--;
  }
  return best;
}

/** A list of [x, y] points (at most `limit`, when given): null or the problem. */
function checkPoints(raw, where, limit = Infinity) {
  if (!Array.isArray(raw)) return `${where}: "points" must be a list of [x, y] pairs.`;
  if (raw.length > limit) return `${where}: has ${raw.length} points; the limit is ${limit}.`;
  for (let k = 0; k < raw.length; k++) {
    const p = raw[k];
    if (!Array.isArray(p) || p.length !== 2 || typeof p[0] !== "number" || typeof p[1] !== "number") {
      return `${where}: point ${k} is ${JSON.stringify(p)?.slice(0, 60)}, not a pair of numbers [x, y].`;
    }
    if (!isNum(p[0]) || !isNum(p[1])) return `${where}: a point has a non-finite coordinate (NaN or Infinity).`;
    if (Math.abs(p[0]) > MAX_COORD || Math.abs(p[1]) > MAX_COORD) return `${where}: a coordinate exceeds 1e+06 px.`;
  }
  return null;
}

/**
 * One shape: {shape} or {error}. `strict`: the backend's limits and its simple-polygon check
 * (without, a readable shape is kept even when the backend would refuse it, so the editor can show
 * it and say why).
 */
function parseShape(raw, where, strict) {
  if (raw === undefined) return { error: `${where}: missing.` };
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return { error: `${where}: must be a shape object.` };
  if (raw.type === "polygon") {
    if (!("points" in raw)) return { error: `${where}: polygon has no "points".` };
    const err = checkPoints(raw.points, where, strict ? MAX_POLYGON_VERTICES : Infinity);
    if (err) return { error: err };
    const n = dedupeClosed(raw.points).length;
    if (n < 3) return { error: `${where}: a polygon needs at least 3 distinct vertices, got ${n}.` };
    if (strict) {
      const problem = polygonProblem(raw.points);
      if (problem) return { error: `${where}: ${problem}.` };
    }
    return { shape: { type: "polygon", points: raw.points.map((p) => [p[0], p[1]]) } };
  }
  if (raw.type === "brush") {
    if (!Array.isArray(raw.strokes) || raw.strokes.length === 0) {
      return { error: `${where}: a brush shape needs a non-empty "strokes" list.` };
    }
    const strokes = [];
    let budget = strict ? MAX_BRUSH_POINTS : Infinity;
    for (let s = 0; s < raw.strokes.length; s++) {
      const st = raw.strokes[s];
      const w = `${where} stroke ${s}`;
      if (!st || typeof st !== "object" || Array.isArray(st)) return { error: `${w}: a stroke must be an object.` };
      if (!("size" in st) || !("points" in st)) return { error: `${w}: a stroke needs "size" and "points".` };
      if (!isNum(st.size) || st.size <= 0 || (strict && st.size > MAX_BRUSH_SIZE)) {
        return { error: `${w}: brush size must be a number in (0, ${MAX_BRUSH_SIZE}], got ${JSON.stringify(st.size)?.slice(0, 40)}.` };
      }
      const err = checkPoints(st.points, w, budget);
      if (err) return { error: err };
      if (st.points.length === 0) return { error: `${w}: the stroke has no points.` };
      budget -= st.points.length;
      strokes.push({ size: st.size, points: st.points.map((p) => [p[0], p[1]]) });
    }
    return { shape: { type: "brush", strokes } };
  }
  if (!("type" in raw)) return { error: `${where}: a shape needs a "type" ("polygon" or "brush").` };
  return { error: `${where}: unknown shape type ${JSON.stringify(raw.type)?.slice(0, 40)}; expected "polygon" or "brush".` };
}

/** One [x, y] point (on the W x H image when W is given): {xy} or {error}. */
function parseXY(raw, where, W, H) {
  if (!Array.isArray(raw) || raw.length !== 2 || typeof raw[0] !== "number" || typeof raw[1] !== "number") {
    return { error: `${where}: is ${JSON.stringify(raw)?.slice(0, 60)}, not a pair of numbers [x, y].` };
  }
  const [x, y] = raw;
  if (!isNum(x) || !isNum(y) || Math.abs(x) > MAX_COORD || Math.abs(y) > MAX_COORD) {
    return { error: `${where}: has a coordinate that is not finite or exceeds 1e+06 px.` };
  }
  if (W !== null) {
    const px = Math.floor(x + 0.5), py = Math.floor(y + 0.5);
    if (!(px >= 0 && px < W && py >= 0 && py < H)) return { error: `${where}: (${x}, ${y}) lies outside the ${W}x${H} image.` };
  }
  return { xy: [x, y] };
}

/** A version 2 pair's "points": {points: [{handle: [x, y], target: [x, y]}]} or {error}. */
function parsePointPairs(raw, i, W, H) {
  const where = `pair ${i + 1} points`;
  if (!Array.isArray(raw)) return { error: `${where}: must be a list of {"handle": [x, y], "target": [x, y]} objects.` };
  if (raw.length === 0) return { error: `${where}: is empty: the handle region has neither a target region nor point pairs.` };
  if (raw.length > MAX_POINT_PAIRS) {
    return { error: `${where}: has ${raw.length} point pairs; the limit is ${MAX_POINT_PAIRS} per region.` };
  }
  const points = [];
  for (let k = 0; k < raw.length; k++) {
    const e = raw[k];
    const w = `pair ${i + 1} point ${k + 1}`;
    if (!e || typeof e !== "object" || Array.isArray(e)) return { error: `${w}: must be an object {"handle": [x, y], "target": [x, y]}.` };
    if (e.handle == null) return { error: `${w}: has no "handle" point.` };
    if (e.target == null) return { error: `${w}: has a handle point but no "target" point.` };
    const h = parseXY(e.handle, `${w} handle`, W, H);
    if (h.error) return h;
    const t = parseXY(e.target, `${w} target`, W, H);
    if (t.error) return t;
    points.push({ handle: h.xy, target: t.xy });
  }
  return { points };
}

/**
 * Parse the widget text. Never throws.
 * Returns {ok: true, width, height, pairs: [{handle, target|null[, points]}]} or {ok: false, error};
 * a region + points pair has `points` ([{handle: [x, y], target: [x, y]}]) and target null.
 *
 * `strict`: the backend's reading (regiondrag_core.shapes.parse_shapes): every pair complete, and
 * its limits (text length and nesting, pairs, polygon vertices, brush points and sizes, width and
 * height) and the simple-polygon check. Without it (the editor loading the widget's text) the last
 * pair may lack both its target and points (a pair being drawn, as older versions saved it), and a
 * readable document past the limits or with a non-simple polygon is kept, so the editor can show it;
 * the editor reports what the strict reading says.
 */
export function parseShapes(text, { strict = false } = {}) {
  if (text == null || (typeof text === "string" && !text.trim())) {
    return { ok: true, width: null, height: null, pairs: [] };
  }
  if (typeof text !== "string") return { ok: false, error: "the shapes value is not text." };
  if (strict) {
    if (text.length > MAX_SHAPES_CHARS) {
      let n = 0;
      for (const _ of text) n++; // code points, as Python's len
      if (n > MAX_SHAPES_CHARS) {
        return { ok: false, error: `the shapes text is ${n.toLocaleString("en-US")} characters; the limit is ${MAX_SHAPES_CHARS.toLocaleString("en-US")}.` };
      }
    }
    const depth = jsonDepth(text);
    if (depth > MAX_JSON_DEPTH) return { ok: false, error: `the JSON is nested ${depth} levels deep; the limit is ${MAX_JSON_DEPTH}.` };
  }
  let data;
  try {
    data = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `not valid JSON (${e.message}).` };
  }
  if (!data || typeof data !== "object" || Array.isArray(data)) {
    return { ok: false, error: "the top level must be a JSON object." };
  }
  const version = data.version === undefined ? 1 : data.version;
  if (!SHAPES_VERSIONS.includes(version)) {
    return { ok: false, error: `unsupported shapes version ${JSON.stringify(data.version)}.` };
  }
  let width = data.width ?? null;
  let height = data.height ?? null;
  if ((width === null) !== (height === null)) return { ok: false, error: 'give both "width" and "height", or neither.' };
  if (width !== null) {
    for (const [name, v] of [["width", width], ["height", height]]) {
      if (!(Number.isInteger(v) && v > 0 && v <= MAX_SIDE)) {
        return { ok: false, error: `"${name}" must be a positive integer up to ${MAX_SIDE}, got ${JSON.stringify(v)?.slice(0, 40)}.` };
      }
    }
  }
  if (!("pairs" in data)) return { ok: false, error: 'missing "pairs" list.' };
  if (!Array.isArray(data.pairs)) return { ok: false, error: '"pairs" must be a list.' };
  if (strict && data.pairs.length > MAX_PAIRS) {
    return { ok: false, error: `${data.pairs.length} pairs; the limit is ${MAX_PAIRS} per node chain.` };
  }
  const pairs = [];
  for (let i = 0; i < data.pairs.length; i++) {
    const rp = data.pairs[i];
    if (!rp || typeof rp !== "object" || Array.isArray(rp)) return { ok: false, error: `pair ${i + 1} must be an object.` };
    const h = parseShape(rp.handle, `pair ${i + 1} handle`, strict);
    if (h.error) return { ok: false, error: h.error };
    const draft = !strict && i === data.pairs.length - 1;
    if (version >= 2) {
      const hasTarget = rp.target != null, hasPoints = rp.points != null;
      if (hasTarget && hasPoints) {
        return { ok: false, error: `pair ${i + 1}: has both a "target" shape and "points"; use one of them.` };
      }
      if (hasPoints) {
        const r = parsePointPairs(rp.points, i, width, height);
        if (r.error) return { ok: false, error: r.error };
        pairs.push({ handle: h.shape, target: null, points: r.points });
        continue;
      }
      if (!hasTarget && draft) {
        pairs.push({ handle: h.shape, target: null });
        continue;
      }
      const t = hasTarget ? parseShape(rp.target, `pair ${i + 1} target`, strict) : { error: `pair ${i + 1} target: missing.` };
      if (t.error) return { ok: false, error: t.error };
      pairs.push({ handle: h.shape, target: t.shape });
      continue;
    }
    let target = null;
    if (rp.target !== undefined || !draft) {
      const t = parseShape(rp.target, `pair ${i + 1} target`, strict);
      if (t.error) return { ok: false, error: t.error };
      target = t.shape;
    }
    pairs.push({ handle: h.shape, target });
  }
  return { ok: true, width, height, pairs };
}

/** A coordinate as the JSON text keeps it (1/100 px). */
export const roundCoord = (v) => Math.round(v * 100) / 100;
const r2 = roundCoord;

/** A shape with its coordinates rounded as the JSON text keeps them (1/100 px). */
export function roundShape(s) {
  if (s.type === "polygon") return { type: "polygon", points: s.points.map(([x, y]) => [r2(x), r2(y)]) };
  return {
    type: "brush",
    strokes: s.strokes.map((st) => ({ size: r2(st.size), points: st.points.map(([x, y]) => [r2(x), r2(y)]) })),
  };
}

/** Point pairs with their coordinates rounded as the JSON text keeps them. */
export function roundPoints(points) {
  return points.map(({ handle: [hx, hy], target: [tx, ty] }) => ({ handle: [r2(hx), r2(hy)], target: [r2(tx), r2(ty)] }));
}

/** A pair with its coordinates rounded as the JSON text keeps them (points kept when it has them). */
export function roundPair(p) {
  const o = { handle: roundShape(p.handle), target: p.target ? roundShape(p.target) : null };
  if (p.points) o.points = roundPoints(p.points);
  return o;
}

/** The JSON text for the widget (coordinates rounded to 1/100 px); version 2 only when a pair has points. */
export function serializeShapes(width, height, pairs) {
  const out = { version: pairs.some((p) => p.points) ? 2 : 1 };
  if (width && height) {
    out.width = width;
    out.height = height;
  }
  out.pairs = pairs.map((p) => {
    const o = { handle: roundShape(p.handle) };
    if (p.points) o.points = roundPoints(p.points);
    else if (p.target) o.target = roundShape(p.target);
    return o;
  });
  return JSON.stringify(out);
}

export function cloneShape(s) {
  return s ? JSON.parse(JSON.stringify(s)) : s;
}

export function clonePairs(pairs) {
  return pairs.map((p) => {
    const o = { handle: cloneShape(p.handle), target: cloneShape(p.target) };
    if (p.points) o.points = cloneShape(p.points);
    return o;
  });
}

/** Point pairs mapped point by point through f([x, y]) -> [x', y']. */
export function mapPoints(points, f) {
  return points.map((q) => ({ handle: f(q.handle), target: f(q.target) }));
}

/** Pixel-centre aligned rescale, as regiondrag_core.geometry.scale_shape: x' = (x + .5) * sx - .5. */
export function scaleShape(s, sx, sy) {
  const f = ([x, y]) => [(x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5];
  if (s.type === "polygon") return { type: "polygon", points: s.points.map(f) };
  const k = Math.sqrt(sx * sy);
  return { type: "brush", strokes: s.strokes.map((st) => ({ size: st.size * k, points: st.points.map(f) })) };
}

export function translateShape(s, dx, dy) {
  const f = ([x, y]) => [x + dx, y + dy];
  if (s.type === "polygon") return { type: "polygon", points: s.points.map(f) };
  return { type: "brush", strokes: s.strokes.map((st) => ({ size: st.size, points: st.points.map(f) })) };
}

/** [xmin, ymin, xmax, ymax], brush radius included. */
export function shapeBBox(s) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  const add = (x, y, r) => {
    x0 = Math.min(x0, x - r); y0 = Math.min(y0, y - r);
    x1 = Math.max(x1, x + r); y1 = Math.max(y1, y + r);
  };
  if (s.type === "polygon") for (const [x, y] of s.points) add(x, y, 0);
  else for (const st of s.strokes) for (const [x, y] of st.points) add(x, y, st.size / 2);
  return [x0, y0, x1, y1];
}

export function shapeCenter(s) {
  const [x0, y0, x1, y1] = shapeBBox(s);
  return [(x0 + x1) / 2, (y0 + y1) / 2];
}

export function pointInPolygon(x, y, pts) {
  let inside = false;
  for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
    const [xi, yi] = pts[i];
    const [xj, yj] = pts[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

export function distToSegment(px, py, ax, ay, bx, by) {
  const dx = bx - ax, dy = by - ay;
  const len2 = dx * dx + dy * dy;
  let t = len2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / len2 : 0;
  t = Math.max(0, Math.min(1, t));
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}

/** Whether image point (x, y) is on the shape; `tol` widens the hit area (image px). */
export function hitShape(s, x, y, tol) {
  if (s.type === "polygon") {
    if (pointInPolygon(x, y, s.points)) return true;
    const p = s.points;
    for (let i = 0; i < p.length; i++) {
      const q = p[(i + 1) % p.length];
      if (distToSegment(x, y, p[i][0], p[i][1], q[0], q[1]) <= tol) return true;
    }
    return false;
  }
  for (const st of s.strokes) {
    const r = st.size / 2 + tol;
    const p = st.points;
    if (p.length === 1 && Math.hypot(x - p[0][0], y - p[0][1]) <= r) return true;
    for (let i = 0; i + 1 < p.length; i++) {
      if (distToSegment(x, y, p[i][0], p[i][1], p[i + 1][0], p[i + 1][1]) <= r) return true;
    }
  }
  return false;
}

/** regiondrag_core.geometry.dedupe_closed: no repeated consecutive vertices, no closing copy of the first. */
export function dedupeClosed(pts) {
  const close = (a, b) => Math.abs(a[0] - b[0]) <= 1e-9 && Math.abs(a[1] - b[1]) <= 1e-9;
  const out = pts.filter((p, k) => k === 0 || !close(p, pts[k - 1]));
  while (out.length > 1 && close(out[out.length - 1], out[0])) out.pop();
  return out;
}

const orient = (a, b, c) => (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);

/**
 * Why a polygon is not one the backend takes, in its words (regiondrag_core.geometry.polygon_problem
 * on the de-duplicated vertices, with the same tolerances), or null: fewer than 3 distinct vertices,
 * zero area, two consecutive edges folding back onto each other, an edge crossing or touching a
 * non-adjacent edge (a corner on another edge included).
 */
export function polygonProblem(points) {
  const pts = dedupeClosed(points);
  const n = pts.length;
  if (n < 3) return `a polygon needs at least 3 distinct vertices, got ${n}`;
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const [x, y] of pts) {
    x0 = Math.min(x0, x); x1 = Math.max(x1, x);
    y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  const extent = Math.max(x1 - x0, y1 - y0);
  const scale2 = Math.max(extent, 1.0) ** 2;
  const eps = 1e-12 * scale2;
  const rel = pts.map(([x, y]) => [x - pts[0][0], y - pts[0][1]]);
  let ref = rel[0], best = -1;
  for (const r of rel) {
    const d = r[0] ** 2 + r[1] ** 2;
    if (d > best) {
      best = d;
      ref = r;
    }
  }
  if (rel.every((r) => Math.abs(ref[0] * r[1] - ref[1] * r[0]) <= 1e-9 * scale2)) {
    return "the polygon has zero area (its vertices lie on one line)";
  }
  const a = pts, b = pts.map((_, i) => pts[(i + 1) % n]);
  const d = a.map((p, i) => [b[i][0] - p[0], b[i][1] - p[1]]);
  for (let i = 0; i < n; i++) {
    const d0 = d[i], d1 = d[(i + 1) % n];
    const cross = d0[0] * d1[1] - d0[1] * d1[0];
    const dot = d0[0] * d1[0] + d0[1] * d1[1];
    if (Math.abs(cross) <= eps && dot < 0) return "the polygon folds back onto itself (two consecutive edges overlap)";
  }
  const onSeg = (p, q, r, o) => Math.abs(o) <= eps &&
    Math.min(p[0], q[0]) - 1e-9 <= r[0] && r[0] <= Math.max(p[0], q[0]) + 1e-9 &&
    Math.min(p[1], q[1]) - 1e-9 <= r[1] && r[1] <= Math.max(p[1], q[1]) + 1e-9;
  for (let i = 0; i < n; i++) {
    const ai = a[i], bi = b[i];
    for (let j = i + 2; j < n; j++) {
      if (i === 0 && j === n - 1) continue;
      const aj = a[j], bj = b[j];
      const o1 = orient(ai, bi, aj), o2 = orient(ai, bi, bj), o3 = orient(aj, bj, ai), o4 = orient(aj, bj, bi);
      const proper = o1 * o2 < 0 && o3 * o4 < 0 && Math.abs(o1) > eps && Math.abs(o2) > eps &&
        Math.abs(o3) > eps && Math.abs(o4) > eps;
      if (proper || onSeg(ai, bi, aj, o1) || onSeg(ai, bi, bj, o2) || onSeg(aj, bj, ai, o3) || onSeg(aj, bj, bi, o4)) {
        return `the polygon intersects itself (edge ${i}-${(i + 1) % n} crosses edge ${j}-${(j + 1) % n})`;
      }
    }
  }
  let area = 0;
  for (let i = 0; i < n; i++) area += pts[i][0] * b[i][1] - b[i][0] * pts[i][1];
  if (Math.abs(0.5 * area) <= 1e-9 * scale2) return "the polygon has zero area";
  return null;
}
