// RegionDrag region editor: shape JSON, geometry and the copy-paste preview (no DOM widgets here).
//
// Shape JSON (the format of regiondrag_core/regions.py):
//   {"version": 1, "width": W, "height": H,
//    "pairs": [{"handle": SHAPE, "target": SHAPE}, ...]}
//   SHAPE = {"type": "polygon", "points": [[x, y], ...]}
//         | {"type": "brush", "strokes": [{"size": d, "points": [[x, y], ...]}, ...]}
// Coordinates are image pixels with pixel (i, j) centred on the integer point (i, j), so the
// image spans [-0.5, W - 0.5] x [-0.5, H - 0.5].

export const SHAPES_VERSION = 1;
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

/**
 * Parse the widget text. Never throws.
 * Returns {ok: true, width, height, pairs: [{handle, target|null}]} or {ok: false, error}.
 * Only the last pair may lack its target (a pair being drawn).
 */
export function parseShapes(text) {
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
  if (data.version !== undefined && data.version !== SHAPES_VERSION) {
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
    let target = null;
    if (rp.target !== undefined || i < data.pairs.length - 1) {
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

/** The JSON text for the widget (coordinates rounded to 1/100 px). */
export function serializeShapes(width, height, pairs) {
  const out = { version: SHAPES_VERSION };
  if (width && height) {
    out.width = width;
    out.height = height;
  }
  out.pairs = pairs.map((p) => {
    const o = { handle: roundShape(p.handle) };
    if (p.target) o.target = roundShape(p.target);
    return o;
  });
  return JSON.stringify(out);
}

export function cloneShape(s) {
  return s ? JSON.parse(JSON.stringify(s)) : s;
}

export function clonePairs(pairs) {
  return pairs.map((p) => ({ handle: cloneShape(p.handle), target: cloneShape(p.target) }));
}

/** Pixel-centre aligned rescale, as regiondrag_core.regions.scale_shape: x' = (x + .5) * sx - .5. */
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

// ------------------------------------------------------------------------------ preview

// ---------------------------------------------------------------- OpenCV's polygon fill
//
// regiondrag_core rasterises polygons with cv2.fillPoly(..., LINE_8, shift=4). The functions
// below follow OpenCV's drawing.cpp (CollectPolyEdges, FillEdgeCollection, Line with an 8-connected
// LineIterator and clipLine) step for step, in the same fixed-point integers, so the editor's
// polygons cover exactly the pixels the backend's do (tests/js/golden.test.mjs).

const XY_SHIFT = 16, XY_ONE = 1 << XY_SHIFT, CV_SHIFT = 4;
const shr = (v, k) => Math.floor(v / 2 ** k); // int64 >> k (arithmetic)
const tdiv = (a, b) => Math.trunc(a / b); // C integer division (exact for |a| < 2^53)

/** cv::clipLine on an image of W x H; returns [x1, y1, x2, y2] or null when outside. */
function clipLine(W, H, x1, y1, x2, y2) {
  const right = W - 1, bottom = H - 1;
  const code = (x, y) => (x < 0) + (x > right) * 2 + (y < 0) * 4 + (y > bottom) * 8;
  let c1 = code(x1, y1), c2 = code(x2, y2);
  if ((c1 & c2) === 0 && (c1 | c2) !== 0) {
    if (c1 & 12) {
      const a = c1 < 8 ? 0 : bottom;
      x1 += tdiv((a - y1) * (x2 - x1), y2 - y1);
      y1 = a;
      c1 = (x1 < 0) + (x1 > right) * 2;
    }
    if (c2 & 12) {
      const a = c2 < 8 ? 0 : bottom;
      x2 += tdiv((a - y2) * (x2 - x1), y2 - y1);
      y2 = a;
      c2 = (x2 < 0) + (x2 > right) * 2;
    }
    if ((c1 & c2) === 0 && (c1 | c2) !== 0) {
      if (c1) {
        const a = c1 === 1 ? 0 : right;
        y1 += tdiv((a - x1) * (y2 - y1), x2 - x1);
        x1 = a;
        c1 = 0;
      }
      if (c2) {
        const a = c2 === 1 ? 0 : right;
        y2 += tdiv((a - x2) * (y2 - y1), x2 - x1);
        x2 = a;
        c2 = 0;
      }
    }
  }
  return (c1 | c2) === 0 ? [x1, y1, x2, y2] : null;
}

/** cv::Line with an 8-connected LineIterator (left to right). */
function line8(m, W, H, x1, y1, x2, y2) {
  if (x1 < 0 || x1 >= W || x2 < 0 || x2 >= W || y1 < 0 || y1 >= H || y2 < 0 || y2 >= H) {
    const c = clipLine(W, H, x1, y1, x2, y2);
    if (!c) return;
    [x1, y1, x2, y2] = c;
  }
  let dx = x2 - x1, dy = y2 - y1;
  if (dx < 0) {
    [x1, y1] = [x2, y2];
    dx = -dx;
    dy = -dy;
  }
  const sy = dy < 0 ? -1 : 1;
  dy = Math.abs(dy);
  const steep = dy > dx;
  const major = steep ? dy : dx, minor = steep ? dx : dy;
  let err = major - 2 * minor;
  const plusDelta = 2 * major, minusDelta = -2 * minor;
  let x = x1, y = y1;
  for (let i = 0; i <= major; i++) {
    m[y * W + x] = 1;
    const step = err < 0;
    err += minusDelta + (step ? plusDelta : 0);
    if (steep) {
      y += sy;
      if (step) x += 1;
    } else {
      x += 1;
      if (step) y += sy;
    }
  }
}

/** cv::fillPoly(img, [pts], 1, LINE_8, shift = 4) for points in 1/16 px (integers). */
function fillPolyFixed(m, W, H, v) {
  const n = v.length;
  const delta = (1 << CV_SHIFT) >> 1;
  const edges = [];
  const conv = ([x, y]) => [x * 2 ** (XY_SHIFT - CV_SHIFT), shr(y + delta, CV_SHIFT)];
  let [x0, y0] = conv(v[n - 1]);
  for (let i = 0; i < n; i++) {
    const [x1, y1] = conv(v[i]);
    line8(m, W, H, shr(x0 + (XY_ONE >> 1), XY_SHIFT), y0, shr(x1 + (XY_ONE >> 1), XY_SHIFT), y1);
    if (y0 !== y1) {
      const e = y0 < y1 ? { y0, y1, x: x0 } : { y0: y1, y1: y0, x: x1 };
      e.dx = tdiv(x1 - x0, y1 - y0);
      edges.push(e);
    }
    [x0, y0] = [x1, y1];
  }
  if (edges.length < 2) return;
  let yMin = Infinity, yMax = -Infinity, xMin = Infinity, xMax = -Infinity;
  for (const e of edges) {
    const xe = e.x + (e.y1 - e.y0) * e.dx;
    yMin = Math.min(yMin, e.y0);
    yMax = Math.max(yMax, e.y1);
    xMin = Math.min(xMin, e.x, xe);
    xMax = Math.max(xMax, e.x, xe);
  }
  if (yMax < 0 || yMin >= H || xMax < 0 || xMin >= W * XY_ONE) return;
  edges.sort((a, b) => (a.y0 - b.y0) || (a.x - b.x) || (a.dx - b.dx));
  const total = edges.length;
  edges.push({ y0: Infinity });
  const head = { next: null }; // the active edge list, kept sorted by x
  let i = 0;
  let e = edges[0];
  yMax = Math.min(yMax, H);
  for (let y = e.y0; y < yMax; y++) {
    let prelast = head, last = head.next, draw = false, keep;
    while (last || e.y0 === y) {
      if (last && last.y1 === y) { // the edge ends here
        prelast.next = last.next;
        last = last.next;
        continue;
      }
      keep = prelast;
      if (last && (e.y0 > y || last.x < e.x)) {
        prelast = last;
        last = last.next;
      } else if (i < total) { // the edge starts here
        prelast.next = e;
        e.next = last;
        prelast = e;
        e = edges[++i];
      } else {
        break;
      }
      if (draw) {
        if (y >= 0) {
          let xa, xb;
          if (keep.x > prelast.x) {
            xa = shr(prelast.x + XY_ONE - 1, XY_SHIFT);
            xb = shr(keep.x, XY_SHIFT);
          } else {
            xa = shr(keep.x + XY_ONE - 1, XY_SHIFT);
            xb = shr(prelast.x, XY_SHIFT);
          }
          if (xa < W && xb >= 0) {
            for (let x = Math.max(xa, 0); x <= Math.min(xb, W - 1); x++) m[y * W + x] = 1;
          }
        }
        keep.x += keep.dx;
        prelast.x += prelast.dx;
      }
      draw = !draw;
    }
    // bubble sort of the active list by x
    let sorted = false, stop = null;
    do {
      sorted = false;
      prelast = head;
      last = head.next;
      while (last !== stop && last.next) {
        const te = last.next;
        if (last.x > te.x) {
          prelast.next = te;
          last.next = te.next;
          te.next = last;
          prelast = te;
          sorted = true;
        } else {
          prelast = last;
          last = te;
        }
      }
      stop = prelast;
    } while (sorted && stop !== head.next && stop !== head);
  }
}

// ----------------------------------------------------- OpenCV's circles and thick lines
//
// Brush strokes: the core draws cv2.circle(..., -1, LINE_8, shift=4) at every point and
// cv2.line(..., thickness, LINE_8, shift=4) between them. Ported from drawing.cpp: EllipseEx
// (ellipse2Poly with OpenCV's sine table), FillConvexPoly with Line2 outlines, ThickLine with
// integer Circle caps.

const SIN_TABLE = Float32Array.from({ length: 451 }, (_, k) => Number(Math.sin((k * Math.PI) / 180).toFixed(7)));
const hline = (m, W, y, xa, xb) => {
  for (let x = xa; x <= xb; x++) m[y * W + x] = 1;
};

/** cv::Line2: a line between points in 16.16 fixed point. */
function line2(m, W, H, x1, y1, x2, y2) {
  const c = clipLine(W * XY_ONE, H * XY_ONE, x1, y1, x2, y2);
  if (!c) return;
  [x1, y1, x2, y2] = c;
  let dx = x2 - x1, dy = y2 - y1;
  const ax = Math.abs(dx), ay = Math.abs(dy);
  let xStep, yStep, ecount;
  if (ax > ay) {
    if (dx < 0) [x1, y1, x2, y2, dy] = [x2, y2, x1, y1, -dy];
    xStep = XY_ONE;
    yStep = tdiv(dy * XY_ONE, ax % 2 ? ax : ax + 1); // C: ax | 1
    ecount = shr(x2 - x1, XY_SHIFT);
  } else {
    if (dy < 0) [x1, y1, x2, y2, dx] = [x2, y2, x1, y1, -dx];
    xStep = tdiv(dx * XY_ONE, ay % 2 ? ay : ay + 1);
    yStep = XY_ONE;
    ecount = shr(y2 - y1, XY_SHIFT);
  }
  x1 += XY_ONE >> 1;
  y1 += XY_ONE >> 1;
  const put = (x, y) => {
    if (x >= 0 && x < W && y >= 0 && y < H) m[y * W + x] = 1;
  };
  put(shr(x2 + (XY_ONE >> 1), XY_SHIFT), shr(y2 + (XY_ONE >> 1), XY_SHIFT));
  if (ax > ay) {
    let x = shr(x1, XY_SHIFT), y = y1;
    for (; ecount >= 0; ecount--, x++, y += yStep) put(x, shr(y, XY_SHIFT));
  } else {
    let x = x1, y = shr(y1, XY_SHIFT);
    for (; ecount >= 0; ecount--, y++, x += xStep) put(shr(x, XY_SHIFT), y);
  }
}

/** cv::FillConvexPoly(v, LINE_8, shift = XY_SHIFT). */
function fillConvexPoly(m, W, H, v) {
  const n = v.length;
  const delta = XY_ONE >> 1, delta1 = XY_ONE >> 1, delta2 = XY_ONE >> 1;
  let imin = 0, xmin = v[0][0], xmax = v[0][0], ymin = v[0][1], ymax = v[0][1];
  let p0 = v[n - 1];
  for (let i = 0; i < n; i++) {
    const p = v[i];
    if (p[1] < ymin) {
      ymin = p[1];
      imin = i;
    }
    ymax = Math.max(ymax, p[1]);
    xmax = Math.max(xmax, p[0]);
    xmin = Math.min(xmin, p[0]);
    line2(m, W, H, p0[0], p0[1], p[0], p[1]);
    p0 = p;
  }
  xmin = shr(xmin + delta, XY_SHIFT);
  xmax = shr(xmax + delta, XY_SHIFT);
  ymin = shr(ymin + delta, XY_SHIFT);
  ymax = shr(ymax + delta, XY_SHIFT);
  if (n < 3 || xmax < 0 || ymax < 0 || xmin >= W || ymin >= H) return;
  ymax = Math.min(ymax, H - 1);
  const edge = [{ idx: imin, di: 1, x: -XY_ONE, dx: 0, ye: ymin }, { idx: imin, di: n - 1, x: -XY_ONE, dx: 0, ye: ymin }];
  let edges = n;
  let y = ymin;
  do {
    for (const e of edge) {
      if (y < e.ye) continue;
      let idx0 = e.idx, idx = idx0 + e.di;
      if (idx >= n) idx -= n;
      for (; edges-- > 0;) {
        const ty = shr(v[idx][1] + delta, XY_SHIFT);
        if (ty > y) {
          const xs = v[idx0][0], xe = v[idx][0];
          e.ye = ty;
          e.dx = tdiv((xe - xs) * 2 + (ty - y), 2 * (ty - y));
          e.x = xs;
          e.idx = idx;
          break;
        }
        idx0 = idx;
        idx += e.di;
        if (idx >= n) idx -= n;
      }
    }
    if (edges < 0) break;
    if (y >= 0) {
      const [l, r] = edge[0].x > edge[1].x ? [edge[1], edge[0]] : [edge[0], edge[1]];
      let xa = shr(l.x + delta1, XY_SHIFT), xb = shr(r.x + delta2, XY_SHIFT);
      if (xb >= 0 && xa < W) hline(m, W, y, Math.max(xa, 0), Math.min(xb, W - 1));
    }
    edge[0].x += edge[0].dx;
    edge[1].x += edge[1].dx;
  } while (++y <= ymax);
}

/** cv::circle(img, c, r, 1, FILLED, LINE_8, shift = 4) with c, r in 1/16 px: EllipseEx. */
function fillCircleFixed(m, W, H, cx, cy, r) {
  cx *= 2 ** (XY_SHIFT - CV_SHIFT);
  cy *= 2 ** (XY_SHIFT - CV_SHIFT);
  r *= 2 ** (XY_SHIFT - CV_SHIFT);
  let delta = shr(r + (XY_ONE >> 1), XY_SHIFT);
  delta = delta < 3 ? 90 : delta < 10 ? 30 : delta < 15 ? 18 : 5;
  const v = [];
  for (let i = 0; i < 360 + delta; i += delta) {
    const a = Math.min(i, 360);
    const px = cx + r * SIN_TABLE[450 - a], py = cy + r * SIN_TABLE[a];
    let x = rint(px / XY_ONE) * XY_ONE, y = rint(py / XY_ONE) * XY_ONE;
    x += rint(px - x);
    y += rint(py - y);
    const last = v[v.length - 1];
    if (!last || last[0] !== x || last[1] !== y) v.push([x, y]);
  }
  fillConvexPoly(m, W, H, v.length === 1 ? [[cx, cy], [cx, cy]] : v);
}

/** cv::Circle (integer centre and radius, filled), ThickLine's round caps. */
function circleInt(m, W, H, cx, cy, radius) {
  let err = 0, dx = radius, dy = 0, plus = 1, minus = (radius << 1) - 1;
  const row = (y, xa, xb) => {
    if (y >= 0 && y < H && xa < W && xb >= 0) hline(m, W, y, Math.max(xa, 0), Math.min(xb, W - 1));
  };
  while (dx >= dy) {
    row(cy - dy, cx - dx, cx + dx);
    row(cy + dy, cx - dx, cx + dx);
    row(cy - dx, cx - dy, cx + dy);
    row(cy + dx, cx - dy, cx + dy);
    dy++;
    err += plus;
    plus += 2;
    const mask = (err <= 0) ? 0 : -1;
    err -= minus & mask;
    dx += mask;
    minus -= mask & 2;
  }
}

/** cv::line(img, p0, p1, 1, thickness, LINE_8, shift = 4) with points in 1/16 px: ThickLine. */
function thickLineFixed(m, W, H, p0, p1, thickness) {
  const k = 2 ** (XY_SHIFT - CV_SHIFT);
  let [x0, y0] = [p0[0] * k, p0[1] * k];
  const [x1, y1] = [p1[0] * k, p1[1] * k];
  if (thickness <= 1) {
    line2(m, W, H, x0, y0, x1, y1);
    return;
  }
  const dx = (x0 - x1) / XY_ONE, dy = (y1 - y0) / XY_ONE;
  let r = dx * dx + dy * dy;
  const odd = thickness & 1;
  const t = thickness * 2 ** (XY_SHIFT - 1);
  if (Math.abs(r) > Number.EPSILON) {
    r = (t + odd * XY_ONE * 0.5) / Math.sqrt(r);
    const ddx = rint(dy * r), ddy = rint(dx * r);
    fillConvexPoly(m, W, H, [[x0 + ddx, y0 + ddy], [x0 - ddx, y0 - ddy], [x1 - ddx, y1 - ddy], [x1 + ddx, y1 + ddy]]);
  }
  const rad = shr(t + (XY_ONE >> 1), XY_SHIFT);
  for (const [x, y] of [[x0, y0], [x1, y1]]) {
    circleInt(m, W, H, shr(x + (XY_ONE >> 1), XY_SHIFT), shr(y + (XY_ONE >> 1), XY_SHIFT), rad);
  }
}

/** Pixel coordinates to the core's fixed point (regions._fixed: round half to even, 1/16 px). */
function toFixed(p) {
  const lim = (2 ** 31 - 1) / (1 << CV_SHIFT) - 1;
  return p.map((c) => rint(Math.min(lim, Math.max(-lim, c)) * (1 << CV_SHIFT)));
}

/** The core's _dedupe_closed: no repeated consecutive vertices, no closing copy of the first. */
function dedupeClosed(pts) {
  const out = pts.filter((p, k) => k === 0 || Math.abs(p[0] - pts[k - 1][0]) > 1e-9 || Math.abs(p[1] - pts[k - 1][1]) > 1e-9);
  while (out.length > 1 && Math.abs(out[out.length - 1][0] - out[0][0]) <= 1e-9 && Math.abs(out[out.length - 1][1] - out[0][1]) <= 1e-9) out.pop();
  return out;
}

/**
 * Bool mask (Uint8Array W*H) of a shape at the image size, as regiondrag_core.regions.rasterize_shape
 * draws it with OpenCV: polygons as cv2.fillPoly, brush strokes as cv2.circle and thick cv2.line.
 */
export function rasterizeShape(s, W, H) {
  const m = new Uint8Array(W * H);
  if (s.type === "polygon") {
    const p = dedupeClosed(s.points);
    if (p.length >= 3) fillPolyFixed(m, W, H, p.map(toFixed));
    return m;
  }
  for (const st of s.strokes) {
    // as regions.rasterize_shape: dots of radius R = floor(d / 2), lines 2R (at least 1) thick
    const R = Math.floor(st.size / 2 + 1e-9);
    const pts = st.points.map(toFixed);
    for (const [x, y] of pts) fillCircleFixed(m, W, H, x, y, R << CV_SHIFT);
    for (let k = 0; k + 1 < pts.length; k++) thickLineFixed(m, W, H, pts[k], pts[k + 1], Math.max(1, 2 * R));
  }
  return m;
}

function solve(A, b) {
  // Gaussian elimination with partial pivoting; returns null when singular.
  const n = b.length;
  const M = A.map((row, i) => [...row, b[i]]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r;
    if (Math.abs(M[p][c]) < 1e-12) return null;
    [M[c], M[p]] = [M[p], M[c]];
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = M[r][c] / M[c][c];
      for (let k = c; k <= n; k++) M[r][k] -= f * M[c][k];
    }
  }
  return M.map((row, i) => row[n] / row[i]);
}

/**
 * Target -> handle point map for triangles (affine) and quadrilaterals (perspective), or null.
 * As cv2.getAffineTransform / getPerspectiveTransform, which the core uses: vertices as float32,
 * the same equations in the same order (perspective products in float32), solved in float64.
 */
function polygonTransform(hp, tp) {
  const f = Math.fround;
  const src = tp.map(([x, y]) => [f(x), f(y)]), dst = hp.map(([x, y]) => [f(x), f(y)]);
  if (tp.length === 3) {
    const A = [], b = [];
    for (let i = 0; i < 3; i++) {
      const [x, y] = src[i];
      A.push([x, y, 1, 0, 0, 0]); b.push(dst[i][0]);
      A.push([0, 0, 0, x, y, 1]); b.push(dst[i][1]);
    }
    const m = solve(A, b);
    return m && ((x, y) => [m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]]);
  }
  const A = new Array(8), b = new Array(8);
  for (let i = 0; i < 4; i++) {
    const [x, y] = src[i];
    const [u, v] = dst[i];
    A[i] = [x, y, 1, 0, 0, 0, f(-x * u), f(-y * u)]; b[i] = u;
    A[i + 4] = [0, 0, 0, x, y, 1, f(-x * v), f(-y * v)]; b[i + 4] = v;
  }
  const m = solve(A, b);
  return m && ((x, y) => {
    const w = m[6] * x + m[7] * y + 1;
    return [(m[0] * x + m[1] * y + m[2]) / w, (m[3] * x + m[4] * y + m[5]) / w];
  });
}

/** numpy.rint: round half to even. */
function rint(v) {
  const fl = Math.floor(v), d = v - fl;
  if (d < 0.5) return fl;
  if (d > 0.5) return fl + 1;
  return fl % 2 === 0 ? fl : fl + 1;
}

/**
 * For every pixel, the flat index of the nearest pixel of `mask` (Uint8Array W*H), as the core's
 * _snap_to_mask finds it: cv2.distanceTransformWithLabels(~mask, DIST_L2, 5, DIST_LABEL_PIXEL),
 * i.e. OpenCV's two-pass 5x5 chamfer (weights 1, 1.4, 2.1969 in 16.16 fixed point) carrying the
 * label of the mask pixel each distance came from, with OpenCV's scan and tie order.
 */
export function nearestMaskPixel(mask, W, H) {
  const B = 2, step = W + 2 * B;
  const fix = (x) => Math.round(Math.fround(x) * 65536);
  const HV = fix(1.0), DIAG = fix(1.4), LONG = fix(2.1969);
  const INIT = 0x7fffffff >> 2;
  const tmp = new Int32Array((H + 2 * B) * step).fill(INIT);
  const lab = new Int32Array((H + 2 * B) * step); // labels: flat mask index + 1, 0 = none
  for (let i = 0; i < H * W; i++) if (mask[i]) lab[(Math.floor(i / W) + B) * step + (i % W) + B] = i + 1;
  const fwd = [[-2 * step - 1, LONG], [-2 * step + 1, LONG], [-step - 2, LONG], [-step - 1, DIAG], [-step, HV],
    [-step + 1, DIAG], [-step + 2, LONG], [-1, HV]];
  const bwd = [[2 * step + 1, LONG], [2 * step - 1, LONG], [step + 2, LONG], [step + 1, DIAG], [step, HV],
    [step - 1, DIAG], [step - 2, LONG], [1, HV]];
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const k = (y + B) * step + x + B;
      if (mask[y * W + x]) {
        tmp[k] = 0;
        continue;
      }
      let t0 = INIT, l0 = 0;
      for (const [o, d] of fwd) {
        const t = tmp[k + o] + d;
        if (t0 > t) {
          t0 = t;
          l0 = lab[k + o];
        }
      }
      tmp[k] = t0;
      lab[k] = l0;
    }
  }
  const out = new Int32Array(W * H);
  for (let y = H - 1; y >= 0; y--) {
    for (let x = W - 1; x >= 0; x--) {
      const k = (y + B) * step + x + B;
      let t0 = tmp[k], l0 = lab[k];
      if (t0 > HV) {
        for (const [o, d] of bwd) {
          const t = tmp[k + o] + d;
          if (t0 > t) {
            t0 = t;
            l0 = lab[k + o];
          }
        }
        tmp[k] = t0;
        lab[k] = l0;
      }
      out[y * W + x] = l0 - 1;
    }
  }
  return out;
}

function strictlyConvex(p) {
  let sign = 0;
  for (let i = 0; i < p.length; i++) {
    const a = p[i], b = p[(i + 1) % p.length], c = p[(i + 2) % p.length];
    const cr = (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]);
    if (Math.abs(cr) < 1e-9) return false;
    if (sign === 0) sign = Math.sign(cr);
    else if (Math.sign(cr) !== sign) return false;
  }
  return true;
}

/**
 * Target pixel -> handle pixel for one pair on its masks `hm`, `tm` (Uint8Array W*H), as
 * regiondrag_core.mapping.map_pair at factor 1: {target, handle} Int32Arrays of flat indices,
 * one entry per target pixel in raster order. `pair` gives the polygons (or null sides).
 */
export function mapPairMasks(pair, hm, tm, W, H) {
  const t = [], h = [];
  mapPair(pair, hm, tm, W, H, (ti, hi) => {
    t.push(ti);
    h.push(hi);
  });
  return { target: Int32Array.from(t), handle: Int32Array.from(h) };
}

/**
 * Target pixel -> handle pixel for one pair, as the backend's mapping does it: the affine or
 * perspective map for two triangles / two convex quadrilaterals, else Algorithm 1 (columns scaled
 * across, then each column scaled vertically). Calls emit(targetIndex, handleIndex).
 */
function mapPair(pair, hm, tm, W, H, emit) {
  const hp = pair.handle?.type === "polygon" ? pair.handle.points : null;
  const tp = pair.target?.type === "polygon" ? pair.target.points : null;
  if (hp && tp && hp.length === tp.length &&
      (tp.length === 3 || (tp.length === 4 && strictlyConvex(hp) && strictlyConvex(tp)))) {
    const f = polygonTransform(hp, tp);
    if (f && hm.some((v) => v) && tm.some((v) => v)) {
      // as the core's _polygon_map: round (half to even), clip into the image, and move a
      // point that falls off the handle region to the nearest handle pixel
      let nearest = null;
      for (let i = 0; i < tm.length; i++) {
        if (!tm[i]) continue;
        let [u, v] = f(i % W, Math.floor(i / W));
        if (!Number.isFinite(u) || !Number.isFinite(v)) u = v = -1;
        const hx = Math.min(W - 1, Math.max(0, rint(u)));
        const hy = Math.min(H - 1, Math.max(0, rint(v)));
        let h = hy * W + hx;
        if (!hm[h]) {
          nearest = nearest || nearestMaskPixel(hm, W, H);
          h = nearest[h];
        }
        emit(i, h);
      }
      return;
    }
  }
  // Algorithm 1 on the rasterised masks.
  const htop = new Int32Array(W).fill(-1), hbot = new Int32Array(W).fill(-1);
  const ttop = new Int32Array(W).fill(-1), tbot = new Int32Array(W).fill(-1);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = y * W + x;
      if (hm[i]) { if (htop[x] < 0) htop[x] = y; hbot[x] = y; }
      if (tm[i]) { if (ttop[x] < 0) ttop[x] = y; tbot[x] = y; }
    }
  }
  let hx0 = -1, hx1 = -1, tx0 = -1, tx1 = -1;
  for (let x = 0; x < W; x++) {
    if (htop[x] >= 0) { if (hx0 < 0) hx0 = x; hx1 = x; }
    if (ttop[x] >= 0) { if (tx0 < 0) tx0 = x; tx1 = x; }
  }
  if (hx0 < 0 || tx0 < 0) return;
  const nearest = new Int32Array(W); // nearest non-empty handle column
  let last = -1;
  for (let x = hx0; x <= hx1; x++) { if (htop[x] >= 0) last = x; nearest[x] = last; }
  last = -1;
  for (let x = hx1; x >= hx0; x--) {
    if (htop[x] >= 0) last = x;
    if (htop[x] < 0 && (nearest[x] < 0 || (last >= 0 && last - x < x - nearest[x]))) nearest[x] = last;
  }
  const tw = tx1 - tx0, hw = hx1 - hx0;
  for (let i = 0; i < tm.length; i++) {
    if (!tm[i]) continue;
    const x = i % W, y = Math.floor(i / W);
    const hx = nearest[hx0 + (tw > 0 ? Math.floor(((x - tx0) * hw) / tw) : 0)];
    const trng = Math.max(tbot[x] - ttop[x], 1);
    let hy = htop[hx] + Math.floor(((y - ttop[x]) * (hbot[hx] - htop[hx])) / trng);
    // a hole in the handle column: the nearest handle pixel of that column (ties: the upper one)
    for (let k = 1; !hm[hy * W + hx] && k <= hbot[hx] - htop[hx]; k++) {
      if (hy - k >= htop[hx] && hm[(hy - k) * W + hx]) hy -= k;
      else if (hy + k <= hbot[hx] && hm[(hy + k) * W + hx]) hy += k;
    }
    emit(i, hy * W + hx);
  }
}

/**
 * Target -> handle pixel map of one complete pair at W x H, as regiondrag_core.mapping.map_pair
 * at factor 1: {target, handle} Int32Arrays of flat indices y * W + x, one entry per target pixel.
 */
export function mapPairPoints(pair, W, H) {
  return mapPairMasks(pair, rasterizeShape(pair.handle, W, H), rasterizeShape(pair.target, W, H), W, H);
}

/**
 * The pixel copy-paste preview (as Region-to-Point Mapping's preview output) on RGBA pixels
 * `src` (W x H): for each complete pair in order, the target pixels take the handle pixels of the
 * original image. Returns new pixels.
 */
export function previewPixels(src, W, H, pairs) {
  const out = new Uint8ClampedArray(src);
  for (const pair of pairs) {
    if (!pair.handle || !pair.target) continue;
    const hm = rasterizeShape(pair.handle, W, H);
    const tm = rasterizeShape(pair.target, W, H);
    mapPair(pair, hm, tm, W, H, (t, h) => {
      for (let k = 0; k < 4; k++) out[4 * t + k] = src[4 * h + k];
    });
  }
  return out;
}
