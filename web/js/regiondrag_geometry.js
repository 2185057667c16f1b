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
// image spans [-0.5, W - 0.5] x [-0.5, H - 0.5]. The points checks are the backend's, on the same
// documents (tests/golden/shapes_v2_cases.json); that a handle point lies inside its handle
// region is checked where the backend rasterises the shapes.

export const SHAPES_VERSION = 2; // the newest version read; serializeShapes writes 1 unless a pair has points
export const SHAPES_VERSIONS = [1, 2];
export const MAX_POINT_PAIRS = 32;
const MAX_COORD = 1e6;

const isNum = (v) => typeof v === "number" && Number.isFinite(v);

function checkPoints(raw, where) {
  if (!Array.isArray(raw)) return `${where}: "points" must be a list of [x, y] pairs.`;
  for (let k = 0; k < raw.length; k++) {
    const p = raw[k];
    if (!Array.isArray(p) || p.length !== 2 || !isNum(p[0]) || !isNum(p[1])) {
      return `${where}: point ${k} is not a pair of numbers [x, y].`;
    }
    if (Math.abs(p[0]) > MAX_COORD || Math.abs(p[1]) > MAX_COORD) return `${where}: a coordinate is too large.`;
  }
  return null;
}

function parseShape(raw, where) {
  if (raw === undefined) return { error: `${where}: missing.` };
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return { error: `${where}: must be a shape object.` };
  if (raw.type === "polygon") {
    const err = checkPoints(raw.points, where);
    if (err) return { error: err };
    if (raw.points.length < 3) return { error: `${where}: a polygon needs at least 3 points.` };
    return { shape: { type: "polygon", points: raw.points.map((p) => [p[0], p[1]]) } };
  }
  if (raw.type === "brush") {
    if (!Array.isArray(raw.strokes) || raw.strokes.length === 0) {
      return { error: `${where}: a brush shape needs a non-empty "strokes" list.` };
    }
    const strokes = [];
    for (let s = 0; s < raw.strokes.length; s++) {
      const st = raw.strokes[s];
      if (!st || typeof st !== "object" || !isNum(st.size) || st.size <= 0) {
        return { error: `${where}: stroke ${s} needs a positive "size".` };
      }
      const err = checkPoints(st.points, `${where} stroke ${s}`);
      if (err) return { error: err };
      if (st.points.length === 0) return { error: `${where}: stroke ${s} has no points.` };
      strokes.push({ size: st.size, points: st.points.map((p) => [p[0], p[1]]) });
    }
    return { shape: { type: "brush", strokes } };
  }
  return { error: `${where}: unknown shape type ${JSON.stringify(raw.type)} (use "polygon" or "brush").` };
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
 * Only the last pair may lack both its target and points (a pair being drawn), unless `strict`
 * (the backend's reading: every pair complete).
 */
export function parseShapes(text, { strict = false } = {}) {
  if (text == null || (typeof text === "string" && !text.trim())) {
    return { ok: true, width: null, height: null, pairs: [] };
  }
  if (typeof text !== "string") return { ok: false, error: "the shapes value is not text." };
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
  if (width !== null && !(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0)) {
    return { ok: false, error: '"width" and "height" must be positive integers.' };
  }
  if (!Array.isArray(data.pairs)) return { ok: false, error: 'missing "pairs" list.' };
  const pairs = [];
  for (let i = 0; i < data.pairs.length; i++) {
    const rp = data.pairs[i];
    if (!rp || typeof rp !== "object" || Array.isArray(rp)) return { ok: false, error: `pair ${i + 1} must be an object.` };
    const h = parseShape(rp.handle, `pair ${i + 1} handle`);
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
      const t = hasTarget ? parseShape(rp.target, `pair ${i + 1} target`) : { error: `pair ${i + 1} target: missing.` };
      if (t.error) return { ok: false, error: t.error };
      pairs.push({ handle: h.shape, target: t.shape });
      continue;
    }
    let target = null;
    if (rp.target !== undefined || !draft) {
      const t = parseShape(rp.target, `pair ${i + 1} target`);
      if (t.error) return { ok: false, error: t.error };
      target = t.shape;
    }
    pairs.push({ handle: h.shape, target });
  }
  return { ok: true, width, height, pairs };
}

const r2 = (v) => Math.round(v * 100) / 100;

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

/** Whether segments p1-p2 and p3-p4 cross (proper intersection). */
function segmentsCross(p1, p2, p3, p4) {
  const d = (a, b, c) => (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
  const d1 = d(p3, p4, p1), d2 = d(p3, p4, p2), d3 = d(p1, p2, p3), d4 = d(p1, p2, p4);
  return ((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0));
}

/** A short problem description when a polygon is not simple (the backend rejects it), else null. */
export function polygonProblem(pts) {
  const n = pts.length;
  if (n < 3) return "needs at least 3 corners";
  let area = 0;
  for (let i = 0; i < n; i++) {
    const [x0, y0] = pts[i];
    const [x1, y1] = pts[(i + 1) % n];
    area += x0 * y1 - x1 * y0;
  }
  if (Math.abs(area) < 1e-6) return "has zero area";
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      if (j === i + 1 || (i === 0 && j === n - 1)) continue;
      if (segmentsCross(pts[i], pts[(i + 1) % n], pts[j], pts[(j + 1) % n])) return "crosses itself";
    }
  }
  return null;
}
