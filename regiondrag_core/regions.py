"""Handle/target regions: parse the editor's shape JSON, rasterise it, read ComfyUI masks.

Shape JSON
==========
The region editor (and anyone writing it by hand) stores the regions as one JSON object::

    {"version": 1,
     "width": 512, "height": 512,
     "pairs": [
       {"handle": SHAPE, "target": SHAPE},
       ...
     ]}

    SHAPE = {"type": "polygon", "points": [[x, y], ...]}
          | {"type": "brush", "strokes": [{"size": 24, "points": [[x, y], ...]}, ...]}

* ``version``: optional, must be 1 when given.
* ``width``/``height``: optional (give both or neither): the pixel size of the image the
  coordinates refer to. When they differ from the size the regions are rasterised at, the shapes
  are scaled (:func:`scale_shapes`); without them the coordinates are taken as pixels of that size.
* ``pairs``: a list, possibly empty. Pair *i* is one handle region dragged onto one target
  region. Where targets of several pairs overlap, the later pair wins.
* Coordinates are image pixels, floats allowed, x to the right and y down, with pixel ``(i, j)``
  centred on the integer point ``(i, j)`` (OpenCV's convention). Points outside the image are fine;
  rasterisation clips them. ``|x|, |y|`` must not exceed 1e6.
* ``polygon``: at least 3 vertices, any count, not closed explicitly (a last vertex equal to the
  first is dropped, as are repeated consecutive vertices). It must be simple: no zero area, no
  self-intersection (a "bow-tie" quadrilateral is rejected). For triangles and quadrilaterals
  vertex *i* of the handle corresponds to vertex *i* of the target (the paper's affine/perspective
  map).
* ``brush``: one or more strokes; ``size`` is the brush diameter in pixels (> 0); a stroke is a
  polyline painted with a round brush, a one-point stroke is a dot.
* Other keys are ignored (the editor may keep colours or ids there).
* An empty string or whitespace only means "no shapes".

Limits (past them :func:`parse_shapes` raises :class:`RegionDragInputError`, so a graph fails at
ComfyUI's validation, before anything runs): the text at most ``MAX_SHAPES_CHARS`` (4,000,000)
characters and ``MAX_JSON_DEPTH`` (16) levels of nesting; at most ``MAX_PAIRS`` (64) pairs; a
polygon at most ``MAX_POLYGON_VERTICES`` (4096) vertices; a brush shape at most
``MAX_BRUSH_POINTS`` (16384) points over all its strokes; brush sizes at most ``MAX_BRUSH_SIZE``
(16384) px; ``width``/``height`` at most ``MAX_SIDE`` (16384).

Sizes are given as ``(H, W)`` throughout this module.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .errors import RegionDragInputError

log = logging.getLogger(__name__)

__all__ = [
    "ShapeSet",
    "RegionPair",
    "parse_shapes",
    "scale_shapes",
    "rasterize_shape",
    "pairs_from_shapes",
    "pairs_from_masks",
    "polygon_problem",
]

SHAPES_VERSION = 1
MAX_COORD = 1e6
MAX_SHAPES_CHARS = 4_000_000    # the editor writes a few kB; ComfyUI keeps the text in every queued prompt
MAX_JSON_DEPTH = 16             # the format itself nests 6 levels deep
MAX_PAIRS = 64                  # per REGION_PAIRS value; every pair holds two full-size masks
MAX_POLYGON_VERTICES = 4096     # the simplicity check is O(K^2): 4096 vertices take about 0.6 s
MAX_BRUSH_POINTS = 16384        # all strokes of one brush shape together
MAX_BRUSH_SIZE = 16384.0        # px, as written (shapes scaled to a larger image may grow past it)
MAX_SIDE = 16384                # ComfyUI's own MAX_RESOLUTION
_CV_MAX_HALF = 16383            # cv2 draws lines at most 32767 px thick
_SAFE_COORD = float(1 << 20)    # beyond this, shapes are clipped before cv2 sees them
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SHIFT = 4  # sub-pixel bits for cv2 drawing (1/16 px)
_FIX_FORMAT = (
    'Expected {"version": 1, "width": W, "height": H, "pairs": [{"handle": SHAPE, "target": SHAPE}]} '
    'with SHAPE = {"type": "polygon", "points": [[x, y], ...]} or '
    '{"type": "brush", "strokes": [{"size": 24, "points": [[x, y], ...]}]}; '
    "redraw the regions in the editor or clear the shapes text."
)


@dataclass
class ShapeSet:
    """Parsed shape JSON. ``pairs`` holds normalised ``(handle_shape, target_shape)`` dicts.

    Normalised shapes: ``{"type": "polygon", "points": float64 (K, 2)}`` or
    ``{"type": "brush", "strokes": [{"size": float, "points": float64 (K, 2)}, ...]}``.
    """

    width: int | None = None
    height: int | None = None
    pairs: list[tuple[dict, dict]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pairs)


@dataclass
class RegionPair:
    """One handle region and one target region as bool masks ``[H, W]`` of the same size.

    ``handle_polygon``/``target_polygon`` are the vertices (float (K, 2), pixel (x, y)) when that
    side was drawn as a polygon, else ``None``; the mapping uses them for the exact affine or
    perspective map of triangles and quadrilaterals.
    """

    handle: np.ndarray
    target: np.ndarray
    handle_polygon: np.ndarray | None = None
    target_polygon: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.handle.shape[:2])

    def validate(self, node: str, input_name: str, index: int = 0, what: str = "pair") -> "RegionPair":
        """Check both masks: 2-D bool, same size, not empty. Returns ``self``."""
        label = f"{what} {index + 1}"
        for side, m in (("handle", self.handle), ("target", self.target)):
            if not isinstance(m, np.ndarray) or m.ndim != 2 or m.dtype != np.bool_:
                raise RegionDragInputError(
                    node, input_name, f"{label} {side} region is not a 2-D bool mask.",
                    "Pass masks as [H, W] arrays.")
        if self.handle.shape != self.target.shape:
            raise RegionDragInputError(
                node, input_name,
                f"{label}: handle region is {_wxh(self.handle.shape)} but target region is "
                f"{_wxh(self.target.shape)}.",
                "Draw both regions on the same image size.")
        for side, m in (("handle", self.handle), ("target", self.target)):
            if not m.any():
                raise RegionDragInputError(
                    node, input_name, f"{label} {side} region is empty.",
                    f"Paint or draw a {side} region for {label}, or remove the pair.")
        return self


# ----------------------------------------------------------------------------------- parsing


def _wxh(shape) -> str:
    return f"{shape[1]}x{shape[0]}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite_in(v: Any, high: float) -> bool:
    """``v`` is a number with ``0 < v <= high`` (JSON integers of any length included)."""
    if not _is_number(v):
        return False
    if isinstance(v, int):
        return 0 < v <= high
    return math.isfinite(v) and 0 < v <= high


def _json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` outside strings (unterminated strings count as text)."""
    stripped = _JSON_STRING.sub('""', text)
    b = np.frombuffer(stripped.encode("utf-8", "surrogatepass"), np.uint8)
    step = (b == ord("[")).astype(np.int32) + (b == ord("{")) - (b == ord("]")) - (b == ord("}"))
    return int(np.cumsum(step).max(initial=0))



class _Ctx:
    """Carries node/input names and the JSON path for error messages."""

    def __init__(self, node: str, input_name: str):
        self.node = node
        self.input_name = input_name

    def fail(self, where: str, problem: str, fix: str = _FIX_FORMAT) -> RegionDragInputError:
        prefix = f"{where}: " if where else ""
        return RegionDragInputError(self.node, self.input_name, prefix + problem, fix)


def _parse_points(raw: Any, ctx: _Ctx, where: str, limit: int) -> np.ndarray:
    if not isinstance(raw, list):
        raise ctx.fail(where, f'"points" must be a list of [x, y] pairs, got {type(raw).__name__}.')
    if len(raw) > limit:
        raise ctx.fail(where, f"has {len(raw)} points; the limit is {limit}.",
                       "Simplify the shape (fewer vertices or shorter strokes), or split it into several pairs.")
    for k, p in enumerate(raw):
        if not (isinstance(p, (list, tuple)) and len(p) == 2 and all(_is_number(v) for v in p)):
            raise ctx.fail(where, f"point {k} is {json.dumps(p)[:60]}, not a pair of numbers [x, y].")
    try:
        pts = np.asarray(raw, dtype=np.float64).reshape(-1, 2)
    except OverflowError:  # a JSON integer too large for a float
        raise ctx.fail(where, f"a coordinate exceeds {MAX_COORD:.0e} px.",
                       "Use pixel coordinates of the image; redraw the region.") from None
    if not np.isfinite(pts).all():
        raise ctx.fail(where, "a point has a non-finite coordinate (NaN or Infinity).",
                       "Use finite pixel coordinates; redraw the region.")
    if pts.size and np.abs(pts).max() > MAX_COORD:
        raise ctx.fail(where, f"a coordinate exceeds {MAX_COORD:.0e} px.",
                       "Use pixel coordinates of the image; redraw the region.")
    return pts


def _dedupe_closed(pts: np.ndarray) -> np.ndarray:
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


def _parse_shape(raw: Any, ctx: _Ctx, where: str) -> dict:
    if not isinstance(raw, dict):
        raise ctx.fail(where, f"a shape must be an object, got {type(raw).__name__}.")
    kind = raw.get("type")
    if kind == "polygon":
        if "points" not in raw:
            raise ctx.fail(where, 'polygon has no "points".')
        pts = _dedupe_closed(_parse_points(raw["points"], ctx, where, MAX_POLYGON_VERTICES))
        problem = polygon_problem(pts)
        if problem is not None:
            raise ctx.fail(where, problem + ".",
                           "Redraw it as a simple polygon with at least 3 vertices whose edges do not cross.")
        return {"type": "polygon", "points": pts}
    if kind == "brush":
        strokes = raw.get("strokes")
        if not isinstance(strokes, list) or not strokes:
            raise ctx.fail(where, 'brush needs a non-empty "strokes" list.',
                           "Paint at least one stroke, or remove the pair.")
        out = []
        budget = MAX_BRUSH_POINTS
        for k, st in enumerate(strokes):
            w = f"{where} stroke {k}"
            if not isinstance(st, dict):
                raise ctx.fail(w, f"a stroke must be an object, got {type(st).__name__}.")
            if "size" not in st or "points" not in st:
                raise ctx.fail(w, 'a stroke needs "size" and "points".')
            size = st["size"]
            if not _finite_in(size, MAX_BRUSH_SIZE):
                raise ctx.fail(w, f"brush size must be a number in (0, {MAX_BRUSH_SIZE:.0f}], "
                                  f"got {json.dumps(size)[:40]}.",
                               "Use a brush diameter in pixels such as 24.")
            pts = _parse_points(st["points"], ctx, w, budget)
            if len(pts) == 0:
                raise ctx.fail(w, "the stroke has no points.", "Paint the stroke again, or remove it.")
            budget -= len(pts)
            out.append({"size": float(size), "points": pts})
        return {"type": "brush", "strokes": out}
    if "type" not in raw:
        raise ctx.fail(where, 'a shape needs a "type" ("polygon" or "brush").')
    raise ctx.fail(where, f'unknown shape type {json.dumps(kind)[:40]}; expected "polygon" or "brush".')


def parse_shapes(text: str, node: str = "RegionMaskPair", input_name: str = "shapes") -> ShapeSet:
    """Parse the shape JSON (format in the module docstring) into a :class:`ShapeSet`.

    Every problem raises :class:`RegionDragInputError` naming ``node``, ``input_name`` and, for a
    bad shape, the pair (1-based) and side, e.g. ``pair 2 target (pairs[1].target)``.
    """
    ctx = _Ctx(node, input_name)
    if text is None or (isinstance(text, str) and not text.strip()):
        return ShapeSet()
    if not isinstance(text, str):
        raise ctx.fail("", f"expected JSON text, got {type(text).__name__}.")
    if len(text) > MAX_SHAPES_CHARS:
        raise ctx.fail("", f"the shapes text is {len(text):,} characters; the limit is {MAX_SHAPES_CHARS:,}.",
                       "Use fewer or simpler shapes (or masks for large painted regions).")
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ctx.fail("", f"the JSON is nested {depth} levels deep; the limit is {MAX_JSON_DEPTH}.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ctx.fail("", f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}).") from None
    except (ValueError, RecursionError) as e:  # e.g. an integer of more than 4300 digits
        raise ctx.fail("", f"not valid JSON ({str(e)[:80]}).") from None
    if not isinstance(data, dict):
        raise ctx.fail("", f"the top level must be a JSON object, got {type(data).__name__}.")
    version = data.get("version", SHAPES_VERSION)
    if version != SHAPES_VERSION or isinstance(version, bool):
        raise ctx.fail("", f"unsupported shapes version {json.dumps(version)[:40]}; this pack reads version 1.",
                       "Update the node pack, or redraw the regions.")
    width, height = data.get("width"), data.get("height")
    if (width is None) != (height is None):
        raise ctx.fail("", 'give both "width" and "height", or neither.')
    if width is not None:
        for name, v in (("width", width), ("height", height)):
            if not _finite_in(v, MAX_SIDE) or v != int(v):
                raise ctx.fail("", f'"{name}" must be a positive integer up to {MAX_SIDE}, '
                                   f"got {json.dumps(v)[:40]}.")
        width, height = int(width), int(height)
    if "pairs" not in data:
        raise ctx.fail("", 'missing "pairs" list.')
    raw_pairs = data["pairs"]
    if not isinstance(raw_pairs, list):
        raise ctx.fail("", f'"pairs" must be a list, got {type(raw_pairs).__name__}.')
    if len(raw_pairs) > MAX_PAIRS:
        raise ctx.fail("", f"{len(raw_pairs)} pairs; the limit is {MAX_PAIRS} per node chain.",
                       "Merge neighbouring regions into larger ones, or run the edit in several passes.")
    pairs = []
    for i, rp in enumerate(raw_pairs):
        if not isinstance(rp, dict):
            raise ctx.fail(f"pair {i + 1} (pairs[{i}])",
                           f'must be an object with "handle" and "target", got {type(rp).__name__}.')
        sides = []
        for side in ("handle", "target"):
            where = f"pair {i + 1} {side} (pairs[{i}].{side})"
            if side not in rp:
                raise ctx.fail(where, f"missing; each pair needs a {side} shape.",
                               f"Draw the {side} region of pair {i + 1}, or remove the pair.")
            sides.append(_parse_shape(rp[side], ctx, where))
        pairs.append((sides[0], sides[1]))
    return ShapeSet(width=width, height=height, pairs=pairs)


# ------------------------------------------------------------------------------ geometry


def _scale_pts(pts: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Pixel-centre aligned rescale: pixel i of the old grid covers [i-.5, i+.5]."""
    out = np.empty_like(pts, dtype=np.float64)
    out[:, 0] = (pts[:, 0] + 0.5) * sx - 0.5
    out[:, 1] = (pts[:, 1] + 0.5) * sy - 0.5
    return out


def scale_shape(shape: dict, sx: float, sy: float) -> dict:
    """One normalised shape rescaled by ``sx``, ``sy`` (brush sizes by ``sqrt(sx*sy)``)."""
    if shape["type"] == "polygon":
        return {"type": "polygon", "points": _scale_pts(np.asarray(shape["points"], np.float64), sx, sy)}
    s = math.sqrt(sx * sy)
    return {"type": "brush", "strokes": [
        {"size": float(st["size"]) * s, "points": _scale_pts(np.asarray(st["points"], np.float64), sx, sy)}
        for st in shape["strokes"]]}


def scale_shapes(shapeset: ShapeSet, size: tuple[int, int]) -> ShapeSet:
    """Rescale the shapes to an image of ``size = (H, W)``.

    Uses the ShapeSet's own ``width``/``height``; without them the coordinates already refer to
    ``size`` and the shapes are returned unchanged (with ``size`` recorded). Scaling is
    pixel-centre aligned, ``x' = (x + 0.5) * W'/W - 0.5``, so a shape keeps covering the same part
    of the picture.
    """
    H, W = int(size[0]), int(size[1])
    if shapeset.width is None or (shapeset.width == W and shapeset.height == H):
        return ShapeSet(width=W, height=H, pairs=list(shapeset.pairs))
    sx, sy = W / shapeset.width, H / shapeset.height
    pairs = [(scale_shape(h, sx, sy), scale_shape(t, sx, sy)) for h, t in shapeset.pairs]
    return ShapeSet(width=W, height=H, pairs=pairs)


def _fixed(pts: np.ndarray) -> np.ndarray:
    """Pixel coordinates to cv2 fixed point with ``_SHIFT`` fractional bits."""
    lim = (2 ** 31 - 1) / (1 << _SHIFT) - 1
    return np.round(np.clip(pts, -lim, lim) * (1 << _SHIFT)).astype(np.int32)


def _clip_polygon(pts: np.ndarray, box) -> np.ndarray:
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


def _clip_segment(p: np.ndarray, q: np.ndarray, box):
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


def rasterize_polygon(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Fill a polygon (float (K, 2) pixel coords) at ``size = (H, W)``; sub-pixel accurate.

    Vertices farther than 2**20 px out are first clipped (exactly) to a box 2 px around the image,
    so cv2's fixed-point coordinates never overflow."""
    H, W = int(size[0]), int(size[1])
    img = np.zeros((H, W), np.uint8)
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts) >= 3 and np.abs(pts).max() > _SAFE_COORD:
        pts = _clip_polygon(pts, (-2.0, -2.0, W + 1.0, H + 1.0))
    if len(pts) >= 3:
        cv2.fillPoly(img, [_fixed(pts).reshape(-1, 1, 2)], 1, cv2.LINE_8, _SHIFT)
    return img.astype(bool)


def rasterize_shape(shape: dict, size: tuple[int, int]) -> np.ndarray:
    """Bool mask ``[H, W]`` of one shape at ``size = (H, W)``; parts outside the image are clipped.

    Polygons: ``cv2.fillPoly`` with 1/16-px vertex precision (boundary pixels included). Brush
    strokes: the pixels within ``size / 2`` of the stroke's polyline (round dots at the points
    joined by thick lines, i.e. round caps and joins), ``2 * floor(size / 2) + 1`` px wide.
    """
    H, W = int(size[0]), int(size[1])
    if shape["type"] == "polygon":
        return rasterize_polygon(shape["points"], (H, W))
    if shape["type"] != "brush":
        raise ValueError(f"unknown shape type {shape['type']!r}")
    img = np.zeros((H, W), np.uint8)
    for st in shape["strokes"]:
        d = float(st["size"])
        # cv2 fills |offset| <= R for an integer radius R and |offset| <= t/2 for an even line
        # thickness t, so R = floor(d/2), t = 2R paint the pixels within d/2 of the stroke: a
        # stroke of diameter d is 2*floor(d/2) + 1 px wide (odd d: exactly d).
        half = int(math.floor(d / 2 + 1e-9))
        raw = np.asarray(st["points"], np.float64).reshape(-1, 2)
        if half > _CV_MAX_HALF:
            corners = np.array([[0, 0], [W - 1, 0], [0, H - 1], [W - 1, H - 1]], np.float64)
            reach = np.sqrt(((raw[:, None, :] - corners[None]) ** 2).sum(-1)).max(axis=1).min()
            if half >= reach:  # one dot of the stroke already covers the whole image
                img[:] = 1
                continue
            raise RegionDragInputError(
                "RegionMaskPair", "shapes",
                f"a brush stroke {d:.0f} px wide at the {W}x{H} image size is wider than the "
                f"{2 * _CV_MAX_HALF + 1} px this pack paints.",
                "Use a smaller brush, or give the shapes' width/height of the image they were drawn on.")
        for line in _stroke_polylines(raw, half, H, W):
            pts = _fixed(line)
            for p in pts:
                cv2.circle(img, (int(p[0]), int(p[1])), half << _SHIFT, 1, -1, cv2.LINE_8, _SHIFT)
            if len(pts) > 1:
                thick = max(1, 2 * half)
                for p, q in zip(pts[:-1], pts[1:]):
                    cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 1, thick, cv2.LINE_8, _SHIFT)
    return img.astype(bool)


def _stroke_polylines(pts: np.ndarray, half: int, H: int, W: int) -> list[np.ndarray]:
    """The stroke as polylines safe for cv2: itself, or, with points farther than 2**20 px out,
    its segments clipped to the box ``half + 2`` px around the image (nothing outside that box
    is within ``half`` of a pixel, so the painted pixels are the same)."""
    if len(pts) == 0 or np.abs(pts).max() <= _SAFE_COORD:
        return [pts]
    box = (-half - 2.0, -half - 2.0, W + half + 1.0, H + half + 1.0)
    if len(pts) == 1:
        p = pts[0]
        inside = box[0] <= p[0] <= box[2] and box[1] <= p[1] <= box[3]
        return [pts] if inside else []
    return [seg for seg in (_clip_segment(p, q, box) for p, q in zip(pts[:-1], pts[1:])) if seg is not None]


def _shape_bbox(shape: dict) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a shape, brush radius included."""
    if shape["type"] == "polygon":
        p = shape["points"]
        return p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()
    boxes = []
    for st in shape["strokes"]:
        r = st["size"] / 2
        p = st["points"]
        boxes.append((p[:, 0].min() - r, p[:, 1].min() - r, p[:, 0].max() + r, p[:, 1].max() + r))
    b = np.asarray(boxes)
    return b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()


def pairs_from_shapes(shapeset: ShapeSet, size: tuple[int, int], node: str = "RegionMaskPair",
                      input_name: str = "shapes") -> list[RegionPair]:
    """Rasterise every pair of ``shapeset`` at ``size = (H, W)`` (scaling it first if needed).

    An empty side raises an error that says whether the shape lies outside the ``WxH`` image or
    is too small to cover a pixel.
    """
    H, W = int(size[0]), int(size[1])
    ss = scale_shapes(shapeset, (H, W))
    out = []
    for i, (hs, ts) in enumerate(ss.pairs):
        masks = []
        for side, shape in (("handle", hs), ("target", ts)):
            where = f"pair {i + 1} {side} (pairs[{i}].{side})"
            try:
                m = rasterize_shape(shape, (H, W))
            except RegionDragInputError as e:
                raise RegionDragInputError(node, input_name, f"{where}: {e.problem}", e.fix) from None
            if not m.any():
                x0, y0, x1, y1 = _shape_bbox(shape)
                if x1 < 0 or y1 < 0 or x0 > W - 1 or y0 > H - 1:
                    raise RegionDragInputError(
                        node, input_name,
                        f"{where} lies outside the {W}x{H} image (its bounds are x {x0:.0f}..{x1:.0f}, "
                        f"y {y0:.0f}..{y1:.0f}).",
                        "Redraw it on the image, or give the shapes' width/height if they were drawn "
                        "on a different image size.")
                raise RegionDragInputError(
                    node, input_name, f"{where} covers no pixel of the {W}x{H} image (too small, or almost entirely "
                    "outside it).",
                    "Draw a larger region on the image or use a bigger brush.")
            masks.append(m)
        out.append(RegionPair(
            handle=masks[0], target=masks[1],
            handle_polygon=hs["points"].copy() if hs["type"] == "polygon" else None,
            target_polygon=ts["points"].copy() if ts["type"] == "polygon" else None,
        ))
    return out


# --------------------------------------------------------------------------------- masks


def _mask_to_numpy(mask: Any, node: str, input_name: str) -> np.ndarray:
    """ComfyUI MASK (torch/numpy, [H,W], [B,H,W] or [B,1,H,W]) to float32 numpy [B,H,W]."""
    if hasattr(mask, "detach"):  # torch tensor
        arr = mask.detach().float().cpu().numpy()
    else:
        try:
            arr = np.asarray(mask, dtype=np.float32)
        except (TypeError, ValueError):
            raise RegionDragInputError(node, input_name, f"expected a MASK, got {type(mask).__name__}.",
                                       "Connect a MASK output (e.g. Load Image's mask).") from None
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise RegionDragInputError(node, input_name, f"expected a MASK of shape [B, H, W], got {list(arr.shape)}.",
                                   "Connect a MASK output (e.g. Load Image's mask).")
    return arr


def pairs_from_masks(handle_mask: Any, target_mask: Any, node: str = "RegionMaskPair",
                     handle_input: str = "handle_mask", target_input: str = "target_mask") -> list[RegionPair]:
    """Region pairs from two ComfyUI MASKs (float 0..1, threshold 0.5: ``>= 0.5`` is inside).

    Batch item *i* of the handle mask pairs with item *i* of the target mask. Sizes and batch
    counts must match (at most ``MAX_PAIRS`` items); every item must be non-empty and every value
    finite.
    """
    h = _mask_to_numpy(handle_mask, node, handle_input)
    t = _mask_to_numpy(target_mask, node, target_input)
    both = f"{handle_input}/{target_input}"
    for name, arr in ((handle_input, h), (target_input, t)):
        if not np.isfinite(arr).all():
            raise RegionDragInputError(
                node, name, "holds NaN or infinite values; a MASK holds numbers from 0 to 1.",
                "Check the node that makes the mask (e.g. a division by zero), or paint it in the mask editor.")
    if h.shape[0] > MAX_PAIRS:
        raise RegionDragInputError(
            node, both, f"{handle_input} is a batch of {h.shape[0]} masks; the limit is {MAX_PAIRS} pairs.",
            "Merge regions into fewer masks, or run the edit in several passes.")
    if h.shape[1:] != t.shape[1:]:
        raise RegionDragInputError(
            node, both, f"{handle_input} is {_wxh(h.shape[1:])} but {target_input} is {_wxh(t.shape[1:])}.",
            "Paint both masks on the same image (same width and height).")
    if h.shape[0] != t.shape[0]:
        raise RegionDragInputError(
            node, both, f"{handle_input} has {h.shape[0]} masks but {target_input} has {t.shape[0]}.",
            "Give one target mask per handle mask (batch item i of each forms pair i).")
    out = []
    for i in range(h.shape[0]):
        hm = h[i] >= 0.5
        tm = t[i] >= 0.5
        for name, m in ((handle_input, hm), (target_input, tm)):
            if not m.any():
                item = f" (batch item {i + 1})" if h.shape[0] > 1 else ""
                raise RegionDragInputError(
                    node, name, f"the mask{item} is empty (no pixel >= 0.5).",
                    "Paint the region in the mask editor, or disconnect the input.")
        out.append(RegionPair(handle=hm, target=tm))
    return out
