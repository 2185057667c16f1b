"""Region + points: handle->target point pairs inside a handle region move the whole region (the
released RegionDrag tool's third mode, ``region_utils/ui_utils.py: region_to_points``).

Every outer contour of the handle region is one part (``cv2.findContours``, external contours,
corner points only, as the released code). A part moves when at least one handle point lies
inside it (its contour filled, holes included); the point pairs inside it are its control points,
each with the vector handle -> target:

1. The contour's corner points and every pixel of the filled part move by the inverse-distance-
   weighted mean of the vectors of their ``IDW_NEIGHBOURS`` (4) nearest control points, weights
   ``1 / (distance + 1e-4)``, rounded to the nearest pixel (half to even). One control point:
   a plain translation.
2. The moved contour, filled, is the part's target region.
3. Every target pixel takes its source by the same weighting backwards: the control points are now
   the moved part's pixels (at most ``MAX_FILL_REFERENCES`` (100), evenly spaced in raster order),
   each with the vector moved pixel -> original pixel.
4. Rows whose source or target pixel lies outside the image are dropped.

The result is ``(handle_xy, target_xy)`` like :func:`.mapping.map_region_pair`'s, one row per
target pixel of each part; :func:`.mapping.map_pair` calls :func:`map_region_points` at latent
resolution for a pair with points, so the drag map and the preview need nothing else.

Differences from the released code (measured in tests/test_points.py against its outputs):

* The distances and weights are float64 here; the released code computes them in float16 (on
  the GPU when there is one), so a few coordinates round the other way, and where the 4th and 5th
  nearest control points are at (float16-)equal distance either may be taken (its unstable sort).
  Here the lower-indexed control point is taken, and the sums run in control-point order, so the
  result is the same on every machine and the editor's preview (web/js/regiondrag_points.js)
  repeats it bit for bit (tests/js/golden.test.mjs).
* The 100 backward references are rows ``floor(i * (n - 1) / 99)``; the released code truncates a
  float32 ``torch.linspace``, which can land one row lower.
* The source pixel is not forced into the handle region (as released): near the moved contour the
  backward weighting can point just outside it.

:func:`border_points` is the released ``drag.get_border_points`` (for the "CP then Encode" method).
Points are ``(x, y)`` int64 rows; sizes ``(H, W)``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "map_region_points",
    "moved_region",
    "idle_parts",
    "idw_displace",
    "border_points",
    "point_pixels",
    "IDW_NEIGHBOURS",
    "IDW_EPS",
    "MAX_FILL_REFERENCES",
]

IDW_NEIGHBOURS = 4          # control points each pixel follows (released: 4)
IDW_EPS = 1e-4              # weight 1 / (distance + IDW_EPS) (released: 1e-4)
MAX_FILL_REFERENCES = 100   # at most this many control points, evenly spaced (released: max_num=100)
_BLOCK = 1 << 20            # distance-matrix entries per block (8 MB of float64)
_LIMIT = float(1 << 20)     # moved contour points are clipped to this before OpenCV draws them


def point_pixels(xy) -> np.ndarray:
    """The pixel each ``(x, y)`` point lies on (pixel ``i`` covers ``[i - .5, i + .5)``): int64."""
    return np.floor(np.asarray(xy, np.float64).reshape(-1, 2) + 0.5).astype(np.int64)


def _spaced(n: int, m: int) -> np.ndarray:
    """``m`` indices from ``0`` to ``n - 1``, evenly spaced (``floor(i * (n - 1) / (m - 1))``)."""
    return (np.arange(m, dtype=np.int64) * (n - 1)) // (m - 1)


def _nearest(d2: np.ndarray, k: int) -> np.ndarray:
    """Per row of ``d2``, the indices of the ``k`` smallest values in increasing index order; among
    equal values at the ``k``-th place the lower indices. (``argpartition`` alone leaves that tie to
    its selection algorithm, which numpy picks by CPU; the order fixes the float sums.)"""
    near = np.argpartition(d2, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(d2, near, axis=1).max(axis=1, keepdims=True)
    tied = (d2 <= kth).sum(axis=1) > k
    if tied.any():
        dt, kt = d2[tied], kth[tied]
        less, eq = dt < kt, dt == kt
        need = k - less.sum(axis=1, keepdims=True)
        near[tied] = np.nonzero(less | (eq & (np.cumsum(eq, axis=1) <= need)))[1].reshape(-1, k)
    near.sort(axis=1)
    return near


def idw_displace(points, refs, vectors, max_refs: int = MAX_FILL_REFERENCES) -> np.ndarray:
    """``points`` moved by the inverse-distance-weighted mean of the ``vectors`` of their
    ``IDW_NEIGHBOURS`` nearest ``refs``, rounded (half to even) to int64 pixels.

    With one reference every point moves by its vector; with more than ``max_refs`` only
    ``max_refs`` evenly spaced ones are used. ``refs`` must not be empty. Deterministic to the bit
    (the editor's preview, web/js/regiondrag_points.js, repeats it): among references at the same
    distance as the 4th nearest the lower indices are taken, and the weights and weighted vectors
    are summed in reference order."""
    pts = np.asarray(points, np.int64).reshape(-1, 2)
    ref = np.asarray(refs, np.float64).reshape(-1, 2)
    vec = np.asarray(vectors, np.float64).reshape(-1, 2)
    if len(ref) < 2:
        return pts + np.trunc(vec).astype(np.int64)
    if len(ref) > max_refs:
        keep = _spaced(len(ref), max_refs)
        ref, vec = ref[keep], vec[keep]
    k = min(IDW_NEIGHBOURS, len(ref))
    rx, ry, vx, vy = ref[:, 0], ref[:, 1], vec[:, 0], vec[:, 1]
    out = np.empty_like(pts)
    step = max(1, _BLOCK // len(ref))
    for s in range(0, len(pts), step):
        p = pts[s:s + step].astype(np.float64)
        d2 = (p[:, :1] - rx) ** 2
        d2 += (p[:, 1:] - ry) ** 2
        if k < len(ref):
            near = _nearest(d2, k)
            d2 = np.take_along_axis(d2, near, axis=1)
        else:
            near = np.arange(k)
        w = 1.0 / (np.sqrt(d2) + IDW_EPS)
        w /= w.sum(axis=1, keepdims=True)
        out[s:s + step, 0] = np.rint(p[:, 0] + (w * vx[near]).sum(axis=1))
        out[s:s + step, 1] = np.rint(p[:, 1] + (w * vy[near]).sum(axis=1))
    return out


def _fill(outline: np.ndarray, size) -> np.ndarray:
    """Bool mask of a closed contour (int (K, 2) points) filled, its border included, as
    ``cv2.drawContours(..., thickness=FILLED)`` draws it."""
    img = np.zeros(size, np.uint8)
    pts = np.clip(outline, -_LIMIT, _LIMIT).astype(np.int32).reshape(-1, 1, 2)
    cv2.drawContours(img, [pts], -1, 1, thickness=cv2.FILLED)
    return img.astype(bool)


def _pixels(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.stack([xs, ys], axis=1).astype(np.int64)


def _parts(mask: np.ndarray):
    """The outer contours of ``mask``: int64 (K, 2) corner points each, OpenCV's order."""
    contours = cv2.findContours(np.asarray(mask).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
    return [c[:, 0, :].astype(np.int64) for c in contours]


def _controls(fill: np.ndarray, handle_xy: np.ndarray, target_xy: np.ndarray):
    """The point pairs whose handle point lies on ``fill``: (handle (P, 2), vector (P, 2))."""
    H, W = fill.shape
    x, y = handle_xy[:, 0], handle_xy[:, 1]
    on = (x >= 0) & (x < W) & (y >= 0) & (y < H)
    on[on] = fill[y[on], x[on]]
    return handle_xy[on], target_xy[on] - handle_xy[on]


def _check_points(handle_xy, target_xy):
    hp = np.asarray(handle_xy, np.int64).reshape(-1, 2)
    tp = np.asarray(target_xy, np.int64).reshape(-1, 2)
    if len(hp) != len(tp):
        raise ValueError(f"{len(hp)} handle points but {len(tp)} target points")
    return hp, tp


def moved_region(handle, handle_xy, target_xy) -> np.ndarray:
    """Bool ``[H, W]``: where the point pairs move the handle region (steps 1-2 of the module
    docstring, the contours only): the target region, before the out-of-image rows are dropped."""
    mask = np.asarray(handle).astype(bool)
    hp, tp = _check_points(handle_xy, target_xy)
    out = np.zeros(mask.shape, bool)
    for outline in _parts(mask):
        src, vec = _controls(_fill(outline, mask.shape), hp, tp)
        if len(src):
            out |= _fill(idw_displace(outline, src, vec), mask.shape)
    return out


def idle_parts(handle, handle_xy) -> int:
    """How many parts (outer contours) of the handle region hold no handle point: they stay put."""
    mask = np.asarray(handle).astype(bool)
    hp = np.asarray(handle_xy, np.int64).reshape(-1, 2)
    return sum(not len(_controls(_fill(o, mask.shape), hp, hp)[0]) for o in _parts(mask))


def map_region_points(handle, handle_xy, target_xy):
    """Dense map of a handle region moved by point pairs (the module docstring's steps 1-4).

    ``handle``: bool mask ``[H, W]``; ``handle_xy``, ``target_xy``: int ``(P, 2)`` pixel
    ``(x, y)`` of each handle point and its target, at the mask's resolution. Returns
    ``(handle_xy, target_xy, handle_part, target_region)``: int64 ``(N, 2)`` rows, one per target
    pixel of each moved part (parts in OpenCV's contour order, pixels in raster order; parts that
    land on each other give a pixel twice, the later part last), the bool mask of the parts that
    hold a handle point (filled, holes included), and the bool mask of the target pixels.
    """
    mask = np.asarray(handle).astype(bool)
    size = mask.shape
    H, W = size
    hp, tp = _check_points(handle_xy, target_xy)
    hrows, trows = [np.zeros((0, 2), np.int64)], [np.zeros((0, 2), np.int64)]
    part = np.zeros(size, bool)
    region = np.zeros(size, bool)
    for outline in _parts(mask):
        fill = _fill(outline, size)
        src, vec = _controls(fill, hp, tp)
        if not len(src):
            continue
        part |= fill
        pixels = _pixels(fill)
        moved = idw_displace(pixels, src, vec)
        targets = _pixels(_fill(idw_displace(outline, src, vec), size))
        if not len(targets):
            continue
        sources = idw_displace(targets, moved, pixels - moved)
        ok = (sources[:, 0] >= 0) & (sources[:, 0] < W) & (sources[:, 1] >= 0) & (sources[:, 1] < H)
        hrows.append(sources[ok])
        trows.append(targets[ok])
        region[targets[ok, 1], targets[ok, 0]] = True
    return np.concatenate(hrows), np.concatenate(trows), part, region


def border_points(points_xy) -> np.ndarray:
    """The border of a point set, as the released ``drag.get_border_points``: the points drawn on a
    mask, its outer contours (``cv2.RETR_EXTERNAL``, ``cv2.CHAIN_APPROX_SIMPLE``), their points
    concatenated. So a straight run of border keeps only its two ends: a filled rectangle gives its
    4 corners. ``points_xy``: non-negative int ``(N, 2)``; returns int64 ``(M, 2)`` (``(0, 2)`` for
    no points)."""
    pts = np.asarray(points_xy, np.int64).reshape(-1, 2)
    if not len(pts):
        return np.zeros((0, 2), np.int64)
    if pts.min() < 0:
        raise ValueError("border_points takes non-negative pixel coordinates")
    x1, y1 = pts.max(axis=0)
    mask = np.zeros((int(y1) + 1, int(x1) + 1), np.uint8)
    mask[pts[:, 1], pts[:, 0]] = 1
    parts = _parts(mask)
    return np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
