// RegionDrag region editor: rasterisation, as the backend does it. The core
// (regiondrag_core.raster.rasterize_shape) draws polygons with cv2.fillPoly and brush strokes with
// cv2.circle and thick cv2.line, in 1/16-px fixed point; the functions here follow OpenCV's
// drawing.cpp step for step in the same integers, so a shape covers exactly the same pixels here
// and in the backend (tests/js/golden.test.mjs checks it against golden vectors from the core).
// Followed as current OpenCV (5.1) draws: polygon edges from their outline's pixel end points
// (clipped to the image), one-pixel lines between rounded end points; older OpenCV releases differ
// there by a pixel for edges that leave the image and for brush strokes under 2 px.
// No DOM: node --test imports it.

/** numpy.rint: round half to even. */
export function rint(v) {
  const fl = Math.floor(v), d = v - fl;
  if (d < 0.5) return fl;
  if (d > 0.5) return fl + 1;
  return fl % 2 === 0 ? fl : fl + 1;
}


// ---------------------------------------------------------------- OpenCV's polygon fill
//
// cv2.fillPoly(..., LINE_8, shift=4): CollectPolyEdges, FillEdgeCollection, Line with an
// 8-connected LineIterator and clipLine.

const XY_SHIFT = 16, XY_ONE = 1 << XY_SHIFT, CV_SHIFT = 4;
const shr = (v, k) => Math.floor(v / 2 ** k); // int64 >> k (arithmetic)
const tdiv = (a, b) => Math.trunc(a / b); // C integer division (exact for |a| < 2^53)

/**
 * cv::clipLine on an image of W x H: [x1, y1, x2, y2, inside], the points moved as OpenCV moves
 * them (also partly, for a line outside the image).
 */
function clipLinePoints(W, H, x1, y1, x2, y2) {
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
  return [x1, y1, x2, y2, (c1 | c2) === 0];
}

/** cv::clipLine on an image of W x H; returns [x1, y1, x2, y2] or null when outside. */
function clipLine(W, H, x1, y1, x2, y2) {
  const c = clipLinePoints(W, H, x1, y1, x2, y2);
  return c[4] ? c.slice(0, 4) : null;
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

/**
 * cv::fillPoly(img, [pts], 1, LINE_8, shift = 4) for points in 1/16 px (integers), as current
 * OpenCV collects the edges: each edge's slope and start from its outline's pixel end points
 * (clipped to the image where they leave it), extrapolated back to the edge's first row.
 */
function fillPolyFixed(m, W, H, v) {
  const n = v.length;
  const delta = (1 << CV_SHIFT) >> 1;
  const edges = [];
  const conv = ([x, y]) => [x * 2 ** (XY_SHIFT - CV_SHIFT), shr(y + delta, CV_SHIFT)];
  let [x0, y0] = conv(v[n - 1]);
  for (let i = 0; i < n; i++) {
    const [x1, y1] = conv(v[i]);
    let t0x = shr(x0 + (XY_ONE >> 1), XY_SHIFT), t0y = y0, t1x = shr(x1 + (XY_ONE >> 1), XY_SHIFT), t1y = y1;
    line8(m, W, H, t0x, t0y, t1x, t1y);
    let c0y = y0, c1y = y1; // CollectPolyEdges' pt0c, pt1c
    if (t0x < 0 || t0x >= W || t1x < 0 || t1x >= W || t0y < 0 || t0y >= H || t1y < 0 || t1y >= H) {
      [t0x, t0y, t1x, t1y] = clipLinePoints(W, H, t0x, t0y, t1x, t1y);
      if (t0y !== t1y) [c0y, c1y] = [t0y, t1y];
    }
    const c0x = t0x * XY_ONE, c1x = t1x * XY_ONE;
    if (y0 !== y1) {
      const dx = tdiv(c1x - c0x, c1y - c0y);
      const e = y0 < y1 ? { y0, y1, x: c0x + (y0 - c0y) * dx } : { y0: y1, y1: y0, x: c1x + (y1 - c1y) * dx };
      e.dx = dx;
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

const CONTOUR_LIMIT = 2 ** 20; // as points._LIMIT: contour points are clipped to this first

/**
 * cv::drawContours(img, [pts], -1, 1, FILLED) for one contour of integer pixel points, as
 * regiondrag_core.points._fill draws it (coordinates clipped to +-2^20): OpenCV fills a contour as
 * cv::fillPoly(LINE_8) at shift 0, which is the 1/16-px fill above with the points times 16.
 */
export function fillContour(m, W, H, pts) {
  const c = (v) => Math.min(CONTOUR_LIMIT, Math.max(-CONTOUR_LIMIT, v)) * (1 << CV_SHIFT);
  fillPolyFixed(m, W, H, pts.map(([x, y]) => [c(x), c(y)]));
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
    // current OpenCV draws a one-pixel LINE_8 line with sub-pixel end points as cv::Line between
    // the end points rounded to pixels (checked against cv2.line(..., 1, LINE_8, shift=4))
    const r = (v) => shr(v + (XY_ONE >> 1), XY_SHIFT);
    line8(m, W, H, r(x0), r(y0), r(x1), r(y1));
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

/** Pixel coordinates to the core's fixed point (raster._fixed: round half to even, 1/16 px). */
function toFixed(p) {
  const lim = (2 ** 31 - 1) / (1 << CV_SHIFT) - 1;
  return p.map((c) => rint(Math.min(lim, Math.max(-lim, c)) * (1 << CV_SHIFT)));
}

/** The core's geometry.dedupe_closed: no repeated consecutive vertices, no closing copy of the first. */
function dedupeClosed(pts) {
  const out = pts.filter((p, k) => k === 0 || Math.abs(p[0] - pts[k - 1][0]) > 1e-9 || Math.abs(p[1] - pts[k - 1][1]) > 1e-9);
  while (out.length > 1 && Math.abs(out[out.length - 1][0] - out[0][0]) <= 1e-9 && Math.abs(out[out.length - 1][1] - out[0][1]) <= 1e-9) out.pop();
  return out;
}

/**
 * Bool mask (Uint8Array W*H) of a shape at the image size, as regiondrag_core.raster.rasterize_shape
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
    // as raster.rasterize_shape: dots of radius R = floor(d / 2), lines 2R (at least 1) thick
    const R = Math.floor(st.size / 2 + 1e-9);
    const pts = st.points.map(toFixed);
    for (const [x, y] of pts) fillCircleFixed(m, W, H, x, y, R << CV_SHIFT);
    for (let k = 0; k + 1 < pts.length; k++) thickLineFixed(m, W, H, pts[k], pts[k + 1], Math.max(1, 2 * R));
  }
  return m;
}
