// RegionDrag region editor: region + points (shapes version 2) for the in-canvas preview, as
// regiondrag_core.points.map_region_points moves a handle region by its point pairs: the region's
// outer contours (OpenCV's findContours, RETR_EXTERNAL, CHAIN_APPROX_SIMPLE), each part that holds
// a handle point moved by the inverse-distance-weighted vectors of its 4 nearest point pairs, the
// moved contour filled as the target, and every target pixel's source by the same weighting
// backwards. Same integers and the same float64 operations in the same order as the core, so the
// map is equal point for point (tests/js/golden.test.mjs on tests/js/golden/points.json).
// No DOM: node --test imports it.
import { fillContour, rint } from "./regiondrag_raster.js";

export const IDW_NEIGHBOURS = 4;
export const IDW_EPS = 1e-4;
export const MAX_FILL_REFERENCES = 100;

// ------------------------------------------------------------ OpenCV's findContours

// chain code directions: (1,0), (1,-1), (0,-1), (-1,-1), (-1,0), (-1,1), (0,1), (1,1)
const CHAIN_DX = [1, 1, 0, -1, -1, -1, 0, 1];
const CHAIN_DY = [0, -1, -1, -1, 0, 1, 1, 1];
const NEW = 2; // MASK8_NEW: a border pixel met
const RIGHT = -126; // (schar)(MASK8_NEW | MASK8_RIGHT): a right border pixel

/**
 * The outer contours of `mask` (Uint8Array W*H), as cv2.findContours(mask, RETR_EXTERNAL,
 * CHAIN_APPROX_SIMPLE) returns them in current OpenCV (contours_new.cpp, Suzuki-Abe border following
 * on a copy framed by one zero pixel): arrays of [x, y] corner points, the contour found last first.
 */
export function findExternalContours(mask, W, H) {
  const S = W + 2;
  const img = new Int8Array(S * (H + 2));
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) if (mask[y * W + x]) img[(y + 1) * S + x + 1] = 1;
  const delta = CHAIN_DX.map((dx, s) => dx + CHAIN_DY[s] * S);
  const width = W + 1, height = H + 1;
  const found = [];

  const fetch = (x, y) => {
    const i0 = y * S + x;
    const pts = [];
    let px = x - 1, py = y - 1;
    let s = 4, sEnd = 4, i1;
    do {
      s = (s - 1) & 7;
      i1 = i0 + delta[s];
    } while (img[i1] === 0 && s !== sEnd);
    if (s === sEnd) {
      img[i0] = RIGHT;
      pts.push([px, py]);
      return pts;
    }
    let i3 = i0, i4 = 0, prevS = s ^ 4;
    for (;;) {
      sEnd = s;
      s = Math.min(s, 15);
      while (s < 15) {
        ++s;
        i4 = i3 + delta[s & 7];
        if (img[i4] !== 0) break;
      }
      s &= 7;
      if (((s - 1) >>> 0) < (sEnd >>> 0)) img[i3] = RIGHT;
      else if (img[i3] === 1) img[i3] = NEW;
      if (s !== prevS) pts.push([px, py]);
      prevS = s;
      px += CHAIN_DX[s];
      py += CHAIN_DY[s];
      if (i4 === i0 && i3 === i1) break;
      i3 = i4;
      s = (s + 4) & 7;
    }
    return pts;
  };

  // the raster scan (ContourScanner_::findNext), external contours only
  let x = 1, y = 1, lx = 0, ly = 1; // lx, ly: the last border met (lnbd)
  let prev = img[y * S + x - 1];
  while (y < height) {
    let started = false;
    for (; x < width; x++) {
      let p;
      while (x < width && (p = img[y * S + x]) === prev) x++;
      if (x >= width) break;
      let start = false;
      if (prev === 0 && p === 1) {
        start = img[ly * S + lx] <= 0; // inside another outer contour: skip
      } else if (p === 0 && prev >= 1 && (prev & ~1) !== 0) {
        lx = x - 1; // the right side of a contour met before: a hole, not taken
      }
      if (start) {
        lx = x;
        found.push(fetch(x, y));
        x += 1;
        prev = img[y * S + x - 1];
        started = true;
        break;
      }
      prev = p;
      if ((prev & ~1) !== 0) lx = x;
    }
    if (started) continue; // go on along the same row
    y += 1;
    lx = 0;
    ly = y;
    x = 1;
    prev = 0;
  }
  return found.reverse();
}

// ------------------------------------------------------------------ the weighting

/** floor(i * (n - 1) / (m - 1)) for i < m: m indices from 0 to n - 1, evenly spaced. */
function spaced(n, m) {
  const out = new Int32Array(m);
  for (let i = 0; i < m; i++) out[i] = Math.floor((i * (n - 1)) / (m - 1));
  return out;
}

/**
 * regiondrag_core.points.idw_displace: the points (xs, ys: integer arrays) moved by the
 * inverse-distance-weighted mean of the vectors (vx, vy) of their 4 nearest references (rx, ry),
 * rounded half to even; ties at the 4th distance go to the lower reference index, sums run in
 * reference order. Returns {x, y} Float64Arrays of integers.
 */
export function idwDisplace(xs, ys, rx, ry, vx, vy, maxRefs = MAX_FILL_REFERENCES) {
  const N = xs.length;
  const ox = new Float64Array(N), oy = new Float64Array(N);
  let n = rx.length;
  if (n < 2) {
    for (let i = 0; i < N; i++) {
      ox[i] = xs[i] + Math.trunc(vx[0]);
      oy[i] = ys[i] + Math.trunc(vy[0]);
    }
    return { x: ox, y: oy };
  }
  if (n > maxRefs) {
    const keep = spaced(n, maxRefs);
    const pick = (a) => Float64Array.from(keep, (k) => a[k]);
    [rx, ry, vx, vy] = [pick(rx), pick(ry), pick(vx), pick(vy)];
    n = maxRefs;
  }
  const k = Math.min(IDW_NEIGHBOURS, n);
  const bd = new Float64Array(k), bi = new Int32Array(k); // the k nearest, by distance then index
  const sel = new Int32Array(k), w = new Float64Array(k);
  for (let i = 0; i < N; i++) {
    const px = xs[i], py = ys[i];
    let m = 0;
    for (let j = 0; j < n; j++) {
      const dx = px - rx[j], dy = py - ry[j];
      const d2 = dx * dx + dy * dy;
      if (m === k && !(d2 < bd[k - 1])) continue;
      let at = m < k ? m++ : k - 1;
      while (at > 0 && bd[at - 1] > d2) {
        bd[at] = bd[at - 1];
        bi[at] = bi[at - 1];
        at--;
      }
      bd[at] = d2;
      bi[at] = j;
    }
    for (let a = 0; a < k; a++) sel[a] = bi[a];
    sel.sort();
    let sum = 0;
    for (let a = 0; a < k; a++) {
      const dx = px - rx[sel[a]], dy = py - ry[sel[a]];
      w[a] = 1.0 / (Math.sqrt(dx * dx + dy * dy) + IDW_EPS);
      sum = a === 0 ? w[0] : sum + w[a];
    }
    let sx = 0, sy = 0;
    for (let a = 0; a < k; a++) {
      const wa = w[a] / sum;
      const tx = wa * vx[sel[a]], ty = wa * vy[sel[a]];
      sx = a === 0 ? tx : sx + tx;
      sy = a === 0 ? ty : sy + ty;
    }
    ox[i] = rint(px + sx);
    oy[i] = rint(py + sy);
  }
  return { x: ox, y: oy };
}

// ---------------------------------------------------------------- region + points

function pixelsOf(mask) {
  let n = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i]) n++;
  const idx = new Int32Array(n);
  n = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i]) idx[n++] = i;
  return idx;
}

/**
 * regiondrag_core.points.map_region_points: the handle region `hm` (Uint8Array W*H) moved by the
 * point pairs hp[k] -> tp[k] (integer pixel [x, y]). Returns {handle, target} Int32Arrays of flat
 * indices y * W + x (one row per target pixel of each moved part, parts in OpenCV's contour order,
 * pixels in raster order), `part` (the parts that hold a handle point, filled) and `region` (the
 * target pixels), Uint8Arrays W*H.
 */
export function mapRegionPoints(hm, W, H, hp, tp) {
  const size = W * H;
  const part = new Uint8Array(size), region = new Uint8Array(size);
  const hrows = [], trows = [];
  for (const outline of findExternalContours(hm, W, H)) {
    const fill = new Uint8Array(size);
    fillContour(fill, W, H, outline);
    const rx = [], ry = [], vx = [], vy = [];
    hp.forEach(([x, y], k) => {
      if (x >= 0 && x < W && y >= 0 && y < H && fill[y * W + x]) {
        rx.push(x);
        ry.push(y);
        vx.push(tp[k][0] - x);
        vy.push(tp[k][1] - y);
      }
    });
    if (!rx.length) continue;
    for (let i = 0; i < size; i++) if (fill[i]) part[i] = 1;
    const pix = pixelsOf(fill);
    const px = Float64Array.from(pix, (i) => i % W), py = Float64Array.from(pix, (i) => Math.floor(i / W));
    const moved = idwDisplace(px, py, rx, ry, vx, vy);
    const ol = idwDisplace(outline.map((q) => q[0]), outline.map((q) => q[1]), rx, ry, vx, vy);
    const tfill = new Uint8Array(size);
    fillContour(tfill, W, H, Array.from(ol.x, (x, i) => [x, ol.y[i]]));
    const tgt = pixelsOf(tfill);
    if (!tgt.length) continue;
    const tx = Float64Array.from(tgt, (i) => i % W), ty = Float64Array.from(tgt, (i) => Math.floor(i / W));
    const back = idwDisplace(tx, ty, moved.x, moved.y, px.map((v, i) => v - moved.x[i]), py.map((v, i) => v - moved.y[i]));
    for (let i = 0; i < tgt.length; i++) {
      const sx = back.x[i], sy = back.y[i];
      if (sx >= 0 && sx < W && sy >= 0 && sy < H) {
        hrows.push(sy * W + sx);
        trows.push(tgt[i]);
        region[tgt[i]] = 1;
      }
    }
  }
  return { handle: Int32Array.from(hrows), target: Int32Array.from(trows), part, region };
}
