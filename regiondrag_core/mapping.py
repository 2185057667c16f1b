"""Region-to-point mapping (RegionDrag, Sec. 3.3, Algorithm 1) and the latent drag map.

A handle region and a target region become dense point pairs: one pair per target pixel, each
pointing at the handle pixel whose latent is copied there. Points are ``(x, y)`` int64 rows.

* :func:`map_region_pair` — Algorithm 1 for arbitrary (brushed) regions.
* :func:`map_polygon_pair` — affine (triangles) or perspective (quadrilaterals) maps.
* A region + points pair (handle -> target point pairs instead of a target region):
  :func:`.points.map_region_points`, called by :func:`map_pair`.
* :func:`build_drag_map` — all pairs of a graph at latent resolution, as a :class:`DragMap`.
* :func:`preview_image` — the pixel copy-paste preview the authors' UI shows.
* :func:`point_pairs`, :func:`drag_map_from_pairs` — explicit dense pixel pairs (DragBench's
  ``meta_data_region.pkl``) as a :class:`DragMap`, the way the released ``drag`` uses them.

Sizes are ``(H, W)``; coordinates use pixel centres at integers (OpenCV's convention), and
rescaling between resolutions is pixel-centre aligned: ``x_lat = (x_img + 0.5) / 8 - 0.5``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .errors import RegionDragInputError
from .geometry import dedupe_closed, polygon_problem
from .masks import RegionPair
from .points import border_points, map_region_points, point_pixels
from .raster import rasterize_polygon
from .shapes import MAX_POLYGON_VERTICES, MAX_SIDE

log = logging.getLogger(__name__)

__all__ = [
    "map_region_pair",
    "map_polygon_pair",
    "downsample_region",
    "DragMap",
    "build_drag_map",
    "map_pair",
    "preview_image",
    "LATENT_FACTOR",
    "PointPairs",
    "point_pairs",
    "drag_map_from_pairs",
    "MAX_POINT_PAIRS",
]

LATENT_FACTOR = 8
_INPUT = "region_pairs"


# ----------------------------------------------------------------------------- helpers


def _as_mask(m, input_name: str, what: str) -> np.ndarray:
    if hasattr(m, "detach"):
        m = m.detach().cpu().numpy()
    m = np.asarray(m)
    if m.ndim != 2:
        raise RegionDragInputError(input_name, f"the {what} region must be a 2-D mask, got shape {list(m.shape)}.",
                                   "Pass one [H, W] mask per region.")
    return m if m.dtype == np.bool_ else m > 0.5 if m.dtype.kind == "f" else m != 0


def _nearest_true_1d(flags: np.ndarray) -> np.ndarray:
    """For every index, the index of the nearest True entry (ties go to the lower index)."""
    n = len(flags)
    idx = np.arange(n)
    before = np.where(flags, idx, -1)
    np.maximum.accumulate(before, out=before)
    after = np.where(flags, idx, n)
    after = np.minimum.accumulate(after[::-1])[::-1]
    use_after = (before < 0) | ((after < n) & (after - idx < idx - before))
    return np.where(use_after, after, before)


def _column_extent(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: first and last True row (garbage for empty columns)."""
    H = mask.shape[0]
    top = mask.argmax(axis=0)
    bot = H - 1 - mask[::-1].argmax(axis=0)
    return top, bot


def _snap_in_columns(mask: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Move each ``(xs, ys)`` to the nearest True row of ``mask`` in the same column.

    Columns must be non-empty. Only the points that are off the mask are touched.
    """
    off = ~mask[ys, xs]
    if not off.any():
        return ys
    cols = np.unique(xs[off])
    sub = mask[:, cols]
    H = mask.shape[0]
    rows = np.arange(H)[:, None]
    before = np.where(sub, rows, -1)
    np.maximum.accumulate(before, axis=0, out=before)
    after = np.where(sub, rows, H)
    after = np.minimum.accumulate(after[::-1], axis=0)[::-1]
    ci = np.searchsorted(cols, xs[off])
    y = ys[off]
    b, a = before[y, ci], after[y, ci]
    use_after = (b < 0) | ((a < H) & (a - y < y - b))
    ys = ys.copy()
    ys[off] = np.where(use_after, a, b)
    return ys


def _snap_to_mask(mask: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move every point that is not on ``mask`` to (approximately) the nearest mask pixel."""
    off = ~mask[ys, xs]
    if not off.any():
        return xs, ys
    # Zero pixels of the distance-transform input are the mask pixels; with DIST_LABEL_PIXEL
    # each gets its own label, numbered 1.. in raster order, and every other pixel the label of
    # its nearest one.
    _, labels = cv2.distanceTransformWithLabels((~mask).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    flat = np.flatnonzero(mask)
    nearest = flat[labels[ys[off], xs[off]] - 1]
    xs, ys = xs.copy(), ys.copy()
    W = mask.shape[1]
    ys[off], xs[off] = np.divmod(nearest, W)
    return xs, ys


# ------------------------------------------------------------------------ Algorithm 1


def map_region_pair(handle, target) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 1: dense map from every target pixel to a handle pixel.

    ``handle``, ``target``: bool masks ``[H, W]`` of the same size (float masks are thresholded
    at 0.5). Returns ``(handle_xy, target_xy)``, int64 ``(N, 2)`` in ``(x, y)`` order, one row per
    target pixel (raster order), every handle point inside the handle region.

    1. Horizontal scaling: target column ``x`` goes to handle column
       ``x' = hx_min + floor((x - tx_min) * (hx_max - hx_min) / (tx_max - tx_min))``, in exact
       integer arithmetic (the paper's floor; the authors' code truncates the same float).
    2. Column-by-column vertical scaling: ``y' = hy_min(x') + floor((y - ty_min(x)) *
       (hy_max(x') - hy_min(x')) / (ty_max(x) - ty_min(x)))``.

    Choices where the paper is silent (the authors' code leaves them undefined, producing NaN or
    out-of-region indices):

    * A range of 0 (target one pixel wide, or a target column one pixel tall) maps to the
      handle's minimum, as the authors' code does through its clamped denominator.
    * A handle column with no pixels inside ``[hx_min, hx_max]`` (the handle has several blobs or
      a vertical gap) is replaced by the nearest non-empty handle column (ties: the left one).
    * A handle column with holes: a ``y'`` that lands in a hole moves to the nearest handle pixel
      of that column (ties: the upper one). So every handle point is a handle pixel.
    """
    handle = _as_mask(handle, _INPUT, "handle")
    target = _as_mask(target, _INPUT, "target")
    if handle.shape != target.shape:
        raise RegionDragInputError(
            _INPUT, f"handle region is {handle.shape[1]}x{handle.shape[0]} but target region is "
            f"{target.shape[1]}x{target.shape[0]}.", "Use masks of the same size for both regions.")
    hcol = handle.any(axis=0)
    tcol = target.any(axis=0)
    if not hcol.any() or not tcol.any():
        side = "handle" if not hcol.any() else "target"
        raise RegionDragInputError(_INPUT, f"the {side} region is empty.", f"Paint or draw a {side} region.")
    hxs = np.flatnonzero(hcol)
    txs = np.flatnonzero(tcol)
    hx0, hx1 = int(hxs[0]), int(hxs[-1])
    tx0, tx1 = int(txs[0]), int(txs[-1])

    # Work on the bounding boxes only: rows ty0..ty1 / hy0..hy1, columns tx0..tx1 / hx0..hx1.
    hrows = np.flatnonzero(handle[:, hx0:hx1 + 1].any(axis=1))
    trows = np.flatnonzero(target[:, tx0:tx1 + 1].any(axis=1))
    hy0, hy1 = int(hrows[0]), int(hrows[-1])
    ty0, ty1 = int(trows[0]), int(trows[-1])
    hbox = handle[hy0:hy1 + 1, hx0:hx1 + 1]
    tbox = target[ty0:ty1 + 1, tx0:tx1 + 1]

    # 1. Horizontal scaling, per target column (relative to the boxes).
    tw, hw = tx1 - tx0, hx1 - hx0
    cols = np.arange(tw + 1, dtype=np.int64)
    xcol = (cols * hw) // tw if tw > 0 else np.zeros_like(cols)
    xcol = _nearest_true_1d(hcol[hx0:hx1 + 1])[xcol]  # empty handle columns -> nearest full one

    # 2. Vertical scaling, per target pixel.
    ttop, tbot = _column_extent(tbox)
    htop, hbot = _column_extent(hbox)
    ty, tx = np.nonzero(tbox)
    ty = ty.astype(np.int64)
    tx = tx.astype(np.int64)
    hx = xcol[tx]
    t_lo = ttop[tx]
    t_rng = (tbot - ttop)[tx]
    h_lo = htop[hx]
    h_rng = (hbot - htop)[hx]
    hy = h_lo + ((ty - t_lo) * h_rng) // np.maximum(t_rng, 1)
    hy = _snap_in_columns(hbox, hy, hx)

    handle_xy = np.stack([hx + hx0, hy + hy0], axis=1)
    target_xy = np.stack([tx + tx0, ty + ty0], axis=1)
    return handle_xy, target_xy


# ------------------------------------------------------------------------ polygon maps


def _strictly_convex(pts: np.ndarray) -> bool:
    d = np.roll(pts, -1, axis=0) - pts
    dn = np.roll(d, -1, axis=0)
    cross = d[:, 0] * dn[:, 1] - d[:, 1] * dn[:, 0]
    eps = 1e-9 * max(float(np.ptp(pts, axis=0).max()), 1.0) ** 2
    return bool(np.all(cross > eps) or np.all(cross < -eps))


def _uses_transform(hp: np.ndarray | None, tp: np.ndarray | None) -> bool:
    """Whether the paper's affine/perspective map applies: 3 or 4 vertices on both sides (4 only
    when both quadrilaterals are strictly convex, where the perspective map keeps the interior)."""
    if hp is None or tp is None or len(hp) != len(tp) or len(tp) not in (3, 4):
        return False
    return len(tp) == 3 or (_strictly_convex(hp) and _strictly_convex(tp))


def _transform_points(hp: np.ndarray, tp: np.ndarray, xs: np.ndarray, ys: np.ndarray):
    """Apply the target->handle affine/perspective map to pixel coordinates (float64)."""
    src, dst = tp.astype(np.float32), hp.astype(np.float32)
    x = xs.astype(np.float64)
    y = ys.astype(np.float64)
    if len(tp) == 3:
        M = cv2.getAffineTransform(src, dst)
        return M[0, 0] * x + M[0, 1] * y + M[0, 2], M[1, 0] * x + M[1, 1] * y + M[1, 2]
    M = cv2.getPerspectiveTransform(src, dst)
    w = M[2, 0] * x + M[2, 1] * y + M[2, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (M[0, 0] * x + M[0, 1] * y + M[0, 2]) / w
        v = (M[1, 0] * x + M[1, 1] * y + M[1, 2]) / w
    return u, v


def _polygon_map(hp: np.ndarray, tp: np.ndarray, size: tuple[int, int]):
    """Map two polygons at ``size``. Returns ``(handle_xy, target_xy, handle_mask, target_mask)``
    or ``None`` when either polygon covers no pixel."""
    H, W = size
    tmask = rasterize_polygon(tp, size)
    hmask = rasterize_polygon(hp, size)
    if not tmask.any() or not hmask.any():
        return None
    if not _uses_transform(hp, tp):
        hxy, txy = map_region_pair(hmask, tmask)
        return hxy, txy, hmask, tmask
    ty, tx = np.nonzero(tmask)
    u, v = _transform_points(hp, tp, tx, ty)
    bad = ~(np.isfinite(u) & np.isfinite(v))
    u = np.where(bad, -1.0, u)
    v = np.where(bad, -1.0, v)
    hx = np.clip(np.rint(u), 0, W - 1).astype(np.int64)
    hy = np.clip(np.rint(v), 0, H - 1).astype(np.int64)
    hx, hy = _snap_to_mask(hmask, hx, hy)
    return (np.stack([hx, hy], axis=1),
            np.stack([tx.astype(np.int64), ty.astype(np.int64)], axis=1), hmask, tmask)


def _check_polygon(pts, input_name: str, side: str) -> np.ndarray:
    try:
        arr = np.asarray(pts, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 2 or arr.shape[1] != 2:
        raise RegionDragInputError(input_name, f"the {side} polygon must be a (K, 2) array of [x, y] vertices.",
                                   "Give at least 3 vertices.")
    if len(arr) > MAX_POLYGON_VERTICES:
        raise RegionDragInputError(input_name, f"the {side} polygon has {len(arr)} vertices; the limit is "
                                   f"{MAX_POLYGON_VERTICES}.", "Simplify the polygon.")
    if not np.isfinite(arr).all():
        raise RegionDragInputError(input_name, f"the {side} polygon has a non-finite vertex.",
                                   "Use finite pixel coordinates.")
    arr = dedupe_closed(arr)
    problem = polygon_problem(arr)
    if problem is not None:
        raise RegionDragInputError(input_name, f"the {side} polygon is unusable: {problem}.",
                                   "Redraw it as a simple polygon with at least 3 vertices whose edges do not cross.")
    return arr


def map_polygon_pair(handle_pts, target_pts, size=None, *, input_name: str = _INPUT) -> tuple[np.ndarray, np.ndarray]:
    """Dense map between a handle and a target polygon, vertex *i* onto vertex *i*.

    ``handle_pts``, ``target_pts``: ``(K, 2)`` pixel ``(x, y)`` vertices. ``size = (H, W)`` of the
    image (default: just large enough for all vertices). Every pixel of the rasterised target
    polygon gets one row; the handle point is the target pixel sent through the target->handle
    map, rounded to the nearest pixel, clipped into the image, and, when it falls just outside
    the rasterised handle polygon, moved to the nearest handle pixel.

    * 3 vertices: affine map (``cv2.getAffineTransform``).
    * 4 vertices, both quadrilaterals strictly convex: perspective map
      (``cv2.getPerspectiveTransform``).
    * Anything else (other vertex counts, different counts, a concave quadrilateral or one with
      three vertices on a line, where the perspective map would fold or blow up): Algorithm 1
      (:func:`map_region_pair`) on the rasterised polygons.

    At most ``MAX_POLYGON_VERTICES`` vertices per polygon; ``size`` at most ``MAX_SIDE`` a side
    (without ``size``, vertices beyond that are clipped by the image).

    Degenerate polygons (non-finite, < 3 vertices, zero area, self-intersecting) or a polygon
    covering no pixel raise :class:`RegionDragInputError`.
    """
    hp = _check_polygon(handle_pts, input_name, "handle")
    tp = _check_polygon(target_pts, input_name, "target")
    if size is None:
        both = np.concatenate([hp, tp])
        size = (max(int(np.ceil(min(both[:, 1].max(), MAX_SIDE))) + 1, 1),
                max(int(np.ceil(min(both[:, 0].max(), MAX_SIDE))) + 1, 1))
    try:
        size = (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError, OverflowError):
        size = None
    if size is None or not (0 < size[0] <= MAX_SIDE and 0 < size[1] <= MAX_SIDE):
        raise RegionDragInputError(input_name, f"the image size must be (H, W) with 1..{MAX_SIDE} px "
                                   "on each side.", "Pass the size of the image the polygons were drawn on.")
    res = _polygon_map(hp, tp, size)
    if res is None:
        raise RegionDragInputError(input_name,
                                   f"a polygon covers no pixel of the {size[1]}x{size[0]} image.",
                                   "Draw the handle and target polygons on the image.")
    return res[0], res[1]


# ---------------------------------------------------------------------- latent resolution


def downsample_region(mask, factor: int = LATENT_FACTOR) -> np.ndarray:
    """Bool ``[ceil(H/f), ceil(W/f)]``: a cell is in the region if at least half of its pixels
    (of those inside the image, for edge cells) are. A non-empty region never vanishes: if no
    cell reaches half, the cell(s) with the highest coverage are kept."""
    m = np.asarray(mask).astype(bool, copy=False)
    H, W = m.shape
    f = int(factor)
    h, w = -(-H // f), -(-W // f)
    if h * f != H or w * f != W:
        pad = np.zeros((h * f, w * f), bool)
        pad[:H, :W] = m
    else:
        pad = m
    cnt = pad.reshape(h, f, w, f).sum(axis=(1, 3), dtype=np.int32)
    rows = np.minimum(f, H - np.arange(h) * f)
    cols = np.minimum(f, W - np.arange(w) * f)
    valid = rows[:, None] * cols[None, :]
    out = 2 * cnt >= valid
    if not out.any() and cnt.any():
        frac = cnt / valid
        out = frac >= frac.max()
    return out


@dataclass
class DragMap:
    """Dense handle -> target points at latent resolution, all pairs combined.

    ``handle_xy``/``target_xy``: int64 ``(N, 2)`` ``(x, y)``, one row per target latent pixel
    (raster order of the target), later pairs winning where targets overlap.
    ``handle_union``/``target_union``: bool ``[h, w]``, union of the handle/target regions.
    """

    handle_xy: np.ndarray
    target_xy: np.ndarray
    handle_union: np.ndarray
    target_union: np.ndarray
    latent_size: tuple[int, int]
    image_size: tuple[int, int]
    num_pairs: int

    @property
    def num_points(self) -> int:
        return int(len(self.target_xy))

    def handle_index(self) -> torch.Tensor:
        """Flat indices ``y * w + x`` of the handle points (int64), for a ``[..., h*w]`` latent."""
        w = self.latent_size[1]
        return torch.from_numpy(self.handle_xy[:, 1] * w + self.handle_xy[:, 0])

    def target_index(self) -> torch.Tensor:
        """Flat indices ``y * w + x`` of the target points (int64)."""
        w = self.latent_size[1]
        return torch.from_numpy(self.target_xy[:, 1] * w + self.target_xy[:, 0])

    def cp_blend_mask(self) -> np.ndarray:
        """Where "CP then Encode" blends the start latent with noise: the handle points and the target's
        border points (:func:`.points.border_points`, the released ``get_border_points``), bool ``[h, w]``."""
        m = np.zeros(self.latent_size, bool)
        if self.num_points:
            m[self.handle_xy[:, 1], self.handle_xy[:, 0]] = True
            b = border_points(self.target_xy)
            m[b[:, 1], b[:, 0]] = True
        return m


def _scale_to_latent(pts: np.ndarray, f: int) -> np.ndarray:
    return (np.asarray(pts, np.float64) + 0.5) / f - 0.5


def map_pair(pair: RegionPair, factor: int = 1):
    """Map one pair at ``1/factor`` of its mask resolution.

    Returns ``(handle_xy, target_xy, handle_mask, target_mask)`` at that resolution. Triangles and
    convex quadrilaterals on both sides use :func:`map_polygon_pair`'s transform (vertices scaled
    pixel-centre aligned; if a polygon then covers no pixel, the downsampled masks are used);
    everything else uses Algorithm 1 on the (downsampled) masks.

    A region + points pair uses :func:`.points.map_region_points` on the (downsampled) handle mask,
    its points scaled pixel-centre aligned onto the pixel they fall on (at 1/8 that is the released
    code's ``x // 8``); a handle point whose pixel is not in the downsampled region moves to the
    nearest region pixel. Its ``handle_mask`` is the moved parts of the region (holes filled, as
    the released code moves them), ``target_mask`` the pixels they land on.
    """
    H, W = pair.handle.shape
    size = (-(-H // factor), -(-W // factor))
    if pair.has_points:
        return _map_points_pair(pair, factor, size)
    hp, tp = pair.handle_polygon, pair.target_polygon
    if _uses_transform(hp, tp):
        if factor != 1:
            hp, tp = _scale_to_latent(hp, factor), _scale_to_latent(tp, factor)
        res = _polygon_map(hp, tp, size)
        if res is not None:
            return res
        log.debug("polygon pair covers no pixel at %sx%s; using the downsampled masks", size[1], size[0])
    if factor == 1:
        hm, tm = pair.handle, pair.target
    else:
        hm, tm = downsample_region(pair.handle, factor), downsample_region(pair.target, factor)
    hxy, txy = map_region_pair(hm, tm)
    return hxy, txy, hm, tm


def _map_points_pair(pair: RegionPair, factor: int, size):
    hm = pair.handle if factor == 1 else downsample_region(pair.handle, factor)
    hp = point_pixels(_scale_to_latent(pair.handle_points, factor))
    tp = point_pixels(_scale_to_latent(pair.target_points, factor))
    hx = np.clip(hp[:, 0], 0, size[1] - 1)
    hy = np.clip(hp[:, 1], 0, size[0] - 1)
    hx, hy = _snap_to_mask(hm, hx, hy)
    hxy, txy, part, region = map_region_points(hm, np.stack([hx, hy], axis=1), tp)
    if not len(txy):
        log.debug("point pairs move the region off the %sx%s grid; the pair maps no point", size[1], size[0])
    return hxy, txy, part, region


def _vae_crop(image_size, latent_size, what: str) -> tuple[int, int, int, int, int, int]:
    """(H, W, h, w, top, left): the image must be 8x the latent within < 8 px; VAE Encode drops the
    ``H % 8`` (``W % 8``) extra rows (columns), centred, so ``top``/``left`` is where the latent starts."""
    H, W = int(image_size[0]), int(image_size[1])
    h, w = int(latent_size[0]), int(latent_size[1])
    f = LATENT_FACTOR
    if not (0 <= H - h * f < f and 0 <= W - w * f < f):
        raise RegionDragInputError(
            "latent", f"{what} {W}x{H} px but the latent is {w}x{h} (= {w * f}x{h * f} px).",
            "The image must be 8× the latent size; use the same image for VAE Encode (or resize the masks).")
    return H, W, h, w, (H % f) // 2, (W % f) // 2


def _from_flat(hflat, tflat, hun, tun, latent_size, image_size, num_pairs: int) -> DragMap:
    """A :class:`DragMap` from flat ``y * w + x`` handle/target indices (one row per target pixel)."""
    w = latent_size[1]
    hy, hx = np.divmod(hflat, w)
    ty, tx = np.divmod(tflat, w)
    return DragMap(handle_xy=np.stack([hx, hy], axis=1).astype(np.int64),
                   target_xy=np.stack([tx, ty], axis=1).astype(np.int64),
                   handle_union=hun, target_union=tun, latent_size=tuple(latent_size),
                   image_size=tuple(image_size), num_pairs=num_pairs)


def build_drag_map(pairs: list[RegionPair], image_size, latent_size) -> DragMap:
    """Combine all pairs into one :class:`DragMap` at ``latent_size = (h, w)``.

    ``image_size = (H, W)`` is the size of the region masks and must be exactly 8x the latent
    size. Later pairs overwrite earlier pairs' target pixels. No pairs gives an empty map.
    """
    H, W, h, w, top, left = _vae_crop(image_size, latent_size, "the regions are")
    f = LATENT_FACTOR
    src = np.full(h * w, -1, dtype=np.int64)
    hun = np.zeros((h, w), bool)
    tun = np.zeros((h, w), bool)
    for i, pair in enumerate(pairs):
        if pair.handle.shape != (H, W) or pair.target.shape != (H, W):
            raise RegionDragInputError(
                _INPUT,
                f"pair {i + 1} has {pair.handle.shape[1]}x{pair.handle.shape[0]} px regions, but the other "
                f"inputs are {W}x{H} px.",
                "Draw every pair on the same image that is VAE-encoded.")
        pair.validate(_INPUT, i)
        if (H, W) != (h * f, w * f):
            pair = crop_pair(pair, top, left, (h * f, w * f)).validate(_INPUT, i)
        hxy, txy, hm, tm = map_pair(pair, f)
        src[txy[:, 1] * w + txy[:, 0]] = hxy[:, 1] * w + hxy[:, 0]
        hun |= hm
        tun |= tm
    tflat = np.flatnonzero(src >= 0)
    return _from_flat(src[tflat], tflat, hun, tun, (h, w), (H, W), len(pairs))


def crop_pair(pair: RegionPair, top: int, left: int, size) -> RegionPair:
    """The pair inside the ``size = (H, W)`` window at (top, left): masks cut, polygons and points shifted."""
    H, W = size

    def shift(poly):
        return None if poly is None else np.asarray(poly, np.float64) - np.array([left, top], np.float64)

    return RegionPair(handle=pair.handle[top:top + H, left:left + W], target=pair.target[top:top + H, left:left + W],
                      handle_polygon=shift(pair.handle_polygon), target_polygon=shift(pair.target_polygon),
                      handle_points=shift(pair.handle_points), target_points=shift(pair.target_points))


def preview_image(image, pairs: list[RegionPair], input_name: str = "image") -> np.ndarray:
    """Pixel copy-paste preview: for each pair in order, ``out[target] = image[handle]`` taken
    from the original image (mapped at pixel resolution). ``image``: float ``[H, W, C]``."""
    img = np.asarray(image)
    if img.ndim != 3:
        raise RegionDragInputError(input_name, f"expected one image [H, W, C], got shape {list(img.shape)}.",
                                   "Connect a single IMAGE.")
    out = img.copy()
    for i, pair in enumerate(pairs):
        if pair.handle.shape != img.shape[:2]:
            raise RegionDragInputError(
                input_name,
                f"the image is {img.shape[1]}x{img.shape[0]} px but pair {i + 1}'s regions are "
                f"{pair.handle.shape[1]}x{pair.handle.shape[0]} px.",
                "Use the image the regions were drawn on.")
        hxy, txy, _, _ = map_pair(pair, 1)
        out[txy[:, 1], txy[:, 0]] = img[hxy[:, 1], hxy[:, 0]]
    return out


# ------------------------------------------------------------------ explicit point pairs

MAX_POINT_PAIRS = 1_000_000   # a DragBench-DR sample holds ~10^4..10^5 dense pairs


@dataclass(frozen=True, eq=False)
class PointPairs:
    """Explicit handle->target pixel point pairs ``(x, y)``, int64 ``(N, 2)`` each, on an image of
    ``image_size = (H, W)``; row ``i`` of ``handle`` moves to row ``i`` of ``target``. Build it with
    :func:`point_pairs`, which validates. (``eq=False``: compared and hashed by identity, since numpy
    arrays have no single truth value.)"""

    handle: np.ndarray
    target: np.ndarray
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(len(self.handle))


def _image_size(image_size, input_name: str) -> tuple[int, int]:
    try:
        H, W = (int(v) for v in image_size)
    except (TypeError, ValueError, OverflowError):
        H = W = 0
    if not (0 < H <= MAX_SIDE and 0 < W <= MAX_SIDE):
        raise RegionDragInputError(input_name, f"the image size must be (H, W) with 1..{MAX_SIDE} px on each side, "
                                   f"got {image_size!r}.", "Pass the size of the image the points were placed on.")
    return H, W


def _pixel_points(pts, size, input_name: str, side: str) -> np.ndarray:
    """``pts`` as int64 ``(N, 2)`` pixel indices inside ``size``; non-integer coordinates are floored."""
    if hasattr(pts, "detach"):
        pts = pts.detach().cpu().numpy()
    try:
        arr = np.asarray(pts)
    except (TypeError, ValueError):   # ragged lists
        arr = np.zeros((0, 0), object)
    if arr.size == 0 and arr.ndim == 1:
        arr = arr.reshape(0, 2)
    if arr.dtype.kind not in "iuf" or arr.ndim != 2 or arr.shape[1] != 2:
        raise RegionDragInputError(input_name, f"the {side} points must be an (N, 2) array of numbers [x, y], got "
                                   f"{arr.dtype} with shape {list(arr.shape)}.", "Give one [x, y] pixel per point.")
    if len(arr) > MAX_POINT_PAIRS:
        raise RegionDragInputError(input_name, f"{len(arr):,} {side} points; the limit is {MAX_POINT_PAIRS:,}.",
                                   "Use fewer point pairs (a region pair maps them at latent resolution).")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise RegionDragInputError(input_name, f"a {side} point has a non-finite coordinate.",
                                       "Use finite pixel coordinates.")
        if (arr != np.floor(arr)).any():
            log.debug("%s: non-integer %s coordinates floored to pixel indices", input_name, side)
    H, W = size
    out = (arr[:, 0] < 0) | (arr[:, 0] >= W) | (arr[:, 1] < 0) | (arr[:, 1] >= H)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise RegionDragInputError(
            input_name, f"{int(out.sum())} {side} point(s) lie outside the {W}x{H} image, the first is point {i + 1} "
            f"at ({arr[i, 0]}, {arr[i, 1]}).", f"Keep every point inside 0 <= x < {W}, 0 <= y < {H}.")
    return np.floor(arr).astype(np.int64) if arr.dtype.kind == "f" else arr.astype(np.int64)


def point_pairs(handle, target, image_size, input_name: str = "drag_points") -> PointPairs:
    """Validate handle->target pixel point pairs into a :class:`PointPairs`.

    ``handle``, ``target``: ``(N, 2)`` ``(x, y)`` pixel coordinates (arrays, tensors or lists), the same
    ``N >= 1`` (at most :data:`MAX_POINT_PAIRS`); ``image_size = (H, W)``. Integer coordinates are pixel
    indices. Non-integer ones are floored to the pixel index they fall in (``[i, i + 1)``): the released
    code's ``.long()`` cast, which truncates, gives the same for every coordinate inside the image, and a
    coordinate must lie in ``0 <= x < W``, ``0 <= y < H`` before flooring. Raises
    :class:`RegionDragInputError` otherwise.
    """
    size = _image_size(image_size, input_name)
    hp = _pixel_points(handle, size, input_name, "handle")
    tp = _pixel_points(target, size, input_name, "target")
    if len(hp) != len(tp):
        raise RegionDragInputError(input_name, f"{len(hp)} handle points but {len(tp)} target points.",
                                   "Give one target point per handle point.")
    if not len(hp):
        raise RegionDragInputError(input_name, "there are no point pairs.", "Give at least one handle->target pair.")
    return PointPairs(handle=hp, target=tp, image_size=size)


def drag_map_from_pairs(pairs: PointPairs, latent_size, input_name: str = "drag_points") -> DragMap:
    """A :class:`DragMap` of explicit dense pixel pairs, as the released ``drag`` uses them.

    The released code scales pixel points with ``source // 8; target // 8`` and pastes
    ``latent[target] = hook[source]``; its blur covers all source points. Here:

    * ``image_size`` must be 8x ``latent_size = (h, w)`` within < 8 px (as :func:`build_drag_map`); when
      it is not a multiple of 8, the points are first shifted by the same centred crop VAE Encode makes.
    * Latent point = pixel ``// 8``. Pairs whose handle or target falls outside the ``w x h`` grid after
      the crop are dropped (the released code would index out of range).
    * Where several pairs land on the same target latent pixel, the **last** pair wins (the released
      indexed assignment leaves this to the device; later pairs win in :func:`build_drag_map` too).
    * ``handle_xy``/``target_xy``: one row per target latent pixel, raster order of the target.
      ``handle_union``: every kept pair's handle latent point, winners or not (the released blur);
      ``target_union``: every kept target latent point. ``num_pairs`` is 1 (one set of pairs).

    No pair left on the grid raises :class:`RegionDragInputError`.
    """
    H, W, h, w, top, left = _vae_crop(pairs.image_size, latent_size, "the points are on an image of")
    f = LATENT_FACTOR
    shift = np.array([left, top], np.int64)   # VAE Encode's centred crop, (x, y)
    hl = (pairs.handle - shift) // f
    tl = (pairs.target - shift) // f
    ok = ((hl >= 0) & (hl < (w, h))).all(axis=1) & ((tl >= 0) & (tl < (w, h))).all(axis=1)
    if not ok.any():
        raise RegionDragInputError(
            input_name, f"none of the {len(ok)} point pairs lies on the {w}x{h} latent grid of the {W}x{H} image "
            "(after VAE Encode's centred crop to a multiple of 8 px).",
            "Place the points inside the image that is VAE-encoded.")
    if not ok.all():
        log.debug("%s: %d of %d point pairs fall outside the %dx%d latent grid; dropped",
                  input_name, int((~ok).sum()), len(ok), w, h)
    hl, tl = hl[ok], tl[ok]
    hflat = hl[:, 1] * w + hl[:, 0]
    tflat = tl[:, 1] * w + tl[:, 0]
    # Last pair wins: the first occurrence in the reversed order; np.unique sorts -> raster order.
    tsel, first_rev = np.unique(tflat[::-1], return_index=True)
    hsel = hflat[::-1][first_rev]
    hun = np.zeros((h, w), bool)
    tun = np.zeros((h, w), bool)
    hun.flat[hflat] = True
    tun.flat[tflat] = True
    return _from_flat(hsel, tsel, hun, tun, (h, w), (H, W), 1)
