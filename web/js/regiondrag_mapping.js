// RegionDrag region editor: region-to-point mapping for the in-canvas preview, as
// regiondrag_core.mapping.map_pair does it at image resolution: the affine / perspective map for two
// triangles / two convex quadrilaterals (with OpenCV's nearest-pixel snap), else Algorithm 1; a
// region + points pair is moved by its point pairs (regiondrag_points.js).
// Pinned to the core point for point by tests/js/golden.test.mjs. No DOM: node --test imports it.
import { mapRegionPoints } from "./regiondrag_points.js";
import { rasterizeShape, rint } from "./regiondrag_raster.js";

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
 * A region + points pair ({handle, points: [{handle: [x, y], target: [x, y]}]}) at W x H, as
 * regiondrag_core.mapping.map_pair at factor 1: the handle region rasterised, each point on the
 * pixel it falls on (pixel centre aligned as the core scales it, factor 1), a handle point off the
 * region moved to the nearest region pixel, then regiondrag_points.mapRegionPoints. Returns its
 * {handle, target, part, region} (flat indices y * W + x, masks W*H).
 */
export function mapPointsPair(pair, W, H) {
  const hm = rasterizeShape(pair.handle, W, H);
  const px = (v) => Math.floor((v + 0.5) / 1 - 0.5 + 0.5); // point_pixels(_scale_to_latent(v, 1))
  let nearest = null;
  const hp = pair.points.map(({ handle: [x, y] }) => {
    const hx = Math.min(W - 1, Math.max(0, px(x))), hy = Math.min(H - 1, Math.max(0, px(y)));
    if (hm[hy * W + hx] || !hm.some((v) => v)) return [hx, hy];
    nearest = nearest || nearestMaskPixel(hm, W, H);
    const i = nearest[hy * W + hx];
    return [i % W, Math.floor(i / W)];
  });
  const tp = pair.points.map(({ target: [x, y] }) => [px(x), px(y)]);
  return mapRegionPoints(hm, W, H, hp, tp);
}

/**
 * The pixel copy-paste preview (as Region-to-Point Mapping's preview output) on RGBA pixels
 * `src` (W x H): for each complete pair in order (a target shape or point pairs), the target
 * pixels take the handle pixels of the original image. Returns new pixels.
 */
export function previewPixels(src, W, H, pairs) {
  const out = new Uint8ClampedArray(src);
  const copy = (t, h) => {
    for (let k = 0; k < 4; k++) out[4 * t + k] = src[4 * h + k];
  };
  for (const pair of pairs) {
    if (!pair.handle) continue;
    if (pair.points?.length) {
      const m = mapPointsPair(pair, W, H);
      for (let i = 0; i < m.target.length; i++) copy(m.target[i], m.handle[i]);
      continue;
    }
    if (!pair.target) continue;
    const hm = rasterizeShape(pair.handle, W, H);
    const tm = rasterizeShape(pair.target, W, H);
    mapPair(pair, hm, tm, W, H, copy);
  }
  return out;
}
