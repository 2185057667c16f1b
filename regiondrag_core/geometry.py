"""Plain shape geometry: polygon orientation, area and the simple-polygon check, shape bounds and
scaling, clipping to a box. No JSON, no pixels (web/js/regiondrag_geometry.js is the editor's copy).

Points are float ``(K, 2)`` arrays of pixel ``(x, y)``, pixel ``(i, j)`` centred on the integer point
``(i, j)``; shapes are the normalised dicts of :mod:`.shapes`.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "dedupe_closed",
    "polygon_area",
    "polygon_problem",
    "scale_shape",
    "shape_bbox",
    "clip_polygon",
    "clip_segment",
]


def dedupe_closed(pts: np.ndarray) -> np.ndarray:
    """Drop repeated consecutive vertices, including a last vertex equal to the first."""
    if len(pts) < 2:
        return pts
    keep = np.ones(len(pts), dtype=bool)
    keep[1:] = np.any(np.abs(np.diff(pts, axis=0)) > 1e-9, axis=1)
    pts = pts[keep]
    while len(pts) > 1 and np.all(np.abs(pts[-1] - pts[0]) <= 1e-9):
        pts = pts[:-1]
    return pts


def _orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Cross product (b - a) x (c - a), broadcasting over leading axes."""
    return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])


def polygon_area(pts: np.ndarray) -> float:
    """Signed shoelace area (positive for counter-clockwise in x-right/y-up axes)."""
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def polygon_problem(pts: np.ndarray) -> str | None:
    """Why ``pts`` (already de-duplicated) is not a usable simple polygon, or ``None``.

    Checks: at least 3 vertices, non-zero area, no edge that crosses or touches a non-adjacent
    edge, no adjacent edges that fold back onto each other. Vectorised over edge pairs in chunks.
    """
    n = len(pts)
    if n < 3:
        return f"a polygon needs at least 3 distinct vertices, got {n}"
    extent = float(np.ptp(pts, axis=0).max())
    scale2 = max(extent, 1.0) ** 2
    eps = 1e-12 * scale2
    rel = pts - pts[0]
    ref = rel[np.argmax((rel ** 2).sum(axis=1))]
    if np.all(np.abs(ref[0] * rel[:, 1] - ref[1] * rel[:, 0]) <= 1e-9 * scale2):
        return "the polygon has zero area (its vertices lie on one line)"
    a = pts
    b = np.roll(pts, -1, axis=0)  # edge i: a[i] -> b[i]
    # Adjacent edges i, i+1 folding back on each other (spike): collinear and opposite.
    d0 = b - a
    d1 = np.roll(d0, -1, axis=0)
    cross = d0[:, 0] * d1[:, 1] - d0[:, 1] * d1[:, 0]
    dot = (d0 * d1).sum(axis=1)
    if np.any((np.abs(cross) <= eps) & (dot < 0)):
        return "the polygon folds back onto itself (two consecutive edges overlap)"
    idx = np.arange(n)
    chunk = max(1, 250_000 // n)
    for s in range(0, n, chunk):
        i = idx[s:s + chunk, None]
        j = idx[None, :]
        valid = (j > i + 1) & ~((i == 0) & (j == n - 1))
        if not valid.any():
            continue
        ai, bi = a[i], b[i]
        aj, bj = a[j], b[j]
        o1 = _orient(ai, bi, aj)
        o2 = _orient(ai, bi, bj)
        o3 = _orient(aj, bj, ai)
        o4 = _orient(aj, bj, bi)
        proper = (o1 * o2 < 0) & (o3 * o4 < 0) & (np.abs(o1) > eps) & (np.abs(o2) > eps) \
            & (np.abs(o3) > eps) & (np.abs(o4) > eps)

        def on_seg(p, q, r, o):  # r collinear with p-q and within its box
            return (np.abs(o) <= eps) & (np.minimum(p[..., 0], q[..., 0]) - 1e-9 <= r[..., 0]) \
                & (r[..., 0] <= np.maximum(p[..., 0], q[..., 0]) + 1e-9) \
                & (np.minimum(p[..., 1], q[..., 1]) - 1e-9 <= r[..., 1]) \
                & (r[..., 1] <= np.maximum(p[..., 1], q[..., 1]) + 1e-9)

        touch = on_seg(ai, bi, aj, o1) | on_seg(ai, bi, bj, o2) | on_seg(aj, bj, ai, o3) | on_seg(aj, bj, bi, o4)
        hit = valid & (proper | touch)
        if hit.any():
            ii, jj = np.argwhere(hit)[0]
            ii = int(ii) + s
            return (f"the polygon intersects itself (edge {ii}-{(ii + 1) % n} crosses edge "
                    f"{int(jj)}-{(int(jj) + 1) % n})")
    if abs(polygon_area(pts)) <= 1e-9 * scale2:
        return "the polygon has zero area"
    return None


# ------------------------------------------------------------------------- shape bounds, scaling


def _scale_pts(pts: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Pixel-centre aligned rescale: pixel i of the old grid covers [i-.5, i+.5]."""
    out = np.empty_like(pts, dtype=np.float64)
    out[:, 0] = (pts[:, 0] + 0.5) * sx - 0.5
    out[:, 1] = (pts[:, 1] + 0.5) * sy - 0.5
    return out


def scale_shape(shape: dict, sx: float, sy: float) -> dict:
    """One normalised shape rescaled by ``sx``, ``sy`` (brush sizes by ``sqrt(sx*sy)``; the point
    pairs of a region + points pair like polygon vertices)."""
    if shape["type"] == "points":
        return {"type": "points", "handle": _scale_pts(np.asarray(shape["handle"], np.float64), sx, sy),
                "target": _scale_pts(np.asarray(shape["target"], np.float64), sx, sy)}
    if shape["type"] == "polygon":
        return {"type": "polygon", "points": _scale_pts(np.asarray(shape["points"], np.float64), sx, sy)}
    s = math.sqrt(sx * sy)
    return {"type": "brush", "strokes": [
        {"size": float(st["size"]) * s, "points": _scale_pts(np.asarray(st["points"], np.float64), sx, sy)}
        for st in shape["strokes"]]}


def shape_bbox(shape: dict) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a shape, brush radius included (point pairs: all their points)."""
    if shape["type"] in ("polygon", "points"):
        p = shape["points"] if shape["type"] == "polygon" else np.concatenate([shape["handle"], shape["target"]])
        return p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()
    boxes = []
    for st in shape["strokes"]:
        r = st["size"] / 2
        p = st["points"]
        boxes.append((p[:, 0].min() - r, p[:, 1].min() - r, p[:, 0].max() + r, p[:, 1].max() + r))
    b = np.asarray(boxes)
    return b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()


# ------------------------------------------------------------------------------------ clipping


def clip_polygon(pts: np.ndarray, box) -> np.ndarray:
    """Sutherland-Hodgman: the part of polygon ``pts`` inside ``box = (x0, y0, x1, y1)``."""
    for axis, bound, low in ((0, box[0], True), (0, box[2], False), (1, box[1], True), (1, box[3], False)):
        if len(pts) == 0:
            break
        inside = pts[:, axis] >= bound if low else pts[:, axis] <= bound
        out = []
        for i in range(len(pts)):
            a, b = pts[i - 1], pts[i]
            if inside[i] != inside[i - 1]:
                t = (bound - a[axis]) / (b[axis] - a[axis])
                cut = a + t * (b - a)
                cut[axis] = bound
                out.append(cut)
            if inside[i]:
                out.append(b)
        pts = np.asarray(out, np.float64).reshape(-1, 2)
    return pts


def clip_segment(p: np.ndarray, q: np.ndarray, box):
    """Liang-Barsky: the part of segment p-q inside ``box = (x0, y0, x1, y1)``, or ``None``."""
    d = q - p
    t0, t1 = 0.0, 1.0
    for pk, qk in ((-d[0], p[0] - box[0]), (d[0], box[2] - p[0]), (-d[1], p[1] - box[1]), (d[1], box[3] - p[1])):
        if pk == 0:
            if qk < 0:
                return None
        elif pk < 0:
            t0 = max(t0, qk / pk)
        else:
            t1 = min(t1, qk / pk)
    if t0 > t1:
        return None
    return np.stack([p + t0 * d, p + t1 * d])
