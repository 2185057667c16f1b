"""The shapes JSON the region editor writes: its format and limits, parsing and scaling.

Shape JSON
==========
The region editor (and anyone writing it by hand) stores the regions as one JSON object::

    {"version": 2,
     "width": 512, "height": 512,
     "pairs": [
       {"handle": SHAPE, "target": SHAPE},
       {"handle": SHAPE, "points": [{"handle": [x, y], "target": [x, y]}, ...]},
       ...
     ]}

    SHAPE = {"type": "polygon", "points": [[x, y], ...]}
          | {"type": "brush", "strokes": [{"size": 24, "points": [[x, y], ...]}, ...]}

* ``version``: 1 or 2; a document without it is read as version 1. Version 1 is the format
  before point pairs: every pair has a handle and a target shape, and a ``"points"`` key of a pair
  is ignored like any other unknown key (so version 1 documents read exactly as they always did).
  Version 2 adds the point pairs below.
* ``width``/``height``: optional (give both or neither): the pixel size of the image the
  coordinates refer to. When they differ from the size the regions are rasterised at, the shapes
  and points are scaled (:func:`scale_shapes`); without them the coordinates are taken as pixels
  of that size.
* ``pairs``: a list, possibly empty. Pair *i* is one handle region dragged onto one target
  region. Where targets of several pairs overlap, the later pair wins.
* Region + points (version 2): instead of a ``target`` shape (absent or ``null``) a pair may hold
  ``points``, a non-empty list of point pairs ``{"handle": [x, y], "target": [x, y]}``, at most
  ``MAX_POINT_PAIRS`` (32) per pair. Each handle point must lie inside the pair's handle region
  (checked when the shapes are rasterised, :func:`.masks.pairs_from_shapes`) and every point on
  the image (``-0.5 <= x < width - 0.5``, likewise y; checked here when ``width``/``height`` are
  given, else when rasterised). The point pairs move the whole handle region: every pixel follows
  its 4 nearest point pairs (:mod:`.points`, the released RegionDrag tool's "region + points"
  mode). A pair with both a ``target`` shape and ``points`` is an error, as is a pair with
  neither, an empty ``points`` list, or a point pair without its target point.
* Coordinates are image pixels, floats allowed, x to the right and y down, with pixel ``(i, j)``
  centred on the integer point ``(i, j)`` (OpenCV's convention). Points of shapes outside the
  image are fine; rasterisation clips them. ``|x|, |y|`` must not exceed 1e6.
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
(16384) px; at most ``MAX_POINT_PAIRS`` (32) point pairs per pair; ``width``/``height`` at most
``MAX_SIDE`` (16384).

Rasterising the shapes is :mod:`.raster`, the region pairs made of them :mod:`.masks`; the
editor's copy of the format is web/js/regiondrag_geometry.js (the same documents accepted and
rejected: tests/golden/shapes_v2_cases.json). Sizes are ``(H, W)``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import RegionDragInputError
from .geometry import dedupe_closed, polygon_problem, scale_shape

__all__ = [
    "ShapeSet",
    "parse_shapes",
    "scale_shapes",
    "SHAPES_VERSION",
    "MAX_COORD",
    "MAX_SHAPES_CHARS",
    "MAX_JSON_DEPTH",
    "MAX_PAIRS",
    "MAX_POLYGON_VERTICES",
    "MAX_BRUSH_POINTS",
    "MAX_BRUSH_SIZE",
    "MAX_SIDE",
    "MAX_POINT_PAIRS",
]

SHAPES_VERSION = 2              # the newest version this pack reads (and the editor writes for point pairs)
SHAPES_VERSIONS = (1, 2)
MAX_COORD = 1e6
MAX_SHAPES_CHARS = 4_000_000    # the editor writes a few kB; ComfyUI keeps the text in every queued prompt
MAX_JSON_DEPTH = 16             # the format itself nests 6 levels deep
MAX_PAIRS = 64                  # per REGION_PAIRS value; every pair holds two full-size masks
MAX_POLYGON_VERTICES = 4096     # the simplicity check is O(K^2): 4096 vertices take about 0.6 s
MAX_BRUSH_POINTS = 16384        # all strokes of one brush shape together
MAX_BRUSH_SIZE = 16384.0        # px, as written (shapes scaled to a larger image may grow past it)
MAX_SIDE = 16384                # ComfyUI's own MAX_RESOLUTION
MAX_POINT_PAIRS = 32            # per pair: a handful steer a region; the released tool's weighting keeps 100 at most
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_FIX_FORMAT = (
    'Expected {"version": 2, "width": W, "height": H, "pairs": [{"handle": SHAPE, "target": SHAPE}]} '
    'with SHAPE = {"type": "polygon", "points": [[x, y], ...]} or '
    '{"type": "brush", "strokes": [{"size": 24, "points": [[x, y], ...]}]} '
    '(or, instead of "target", "points": [{"handle": [x, y], "target": [x, y]}, ...]); '
    "redraw the regions in the editor or clear the shapes text."
)
_FIX_POINTS = (
    'Give point pairs as "points": [{"handle": [x, y], "target": [x, y]}, ...] with version 2, '
    "each handle point inside the pair's handle region."
)


@dataclass
class ShapeSet:
    """Parsed shape JSON. ``pairs`` holds normalised ``(handle_shape, target_shape)`` dicts.

    Normalised shapes: ``{"type": "polygon", "points": float64 (K, 2)}`` or
    ``{"type": "brush", "strokes": [{"size": float, "points": float64 (K, 2)}, ...]}``; the target
    of a region + points pair is ``{"type": "points", "handle": float64 (P, 2), "target": float64
    (P, 2)}`` (row *k*: point pair *k*).
    """

    width: int | None = None
    height: int | None = None
    pairs: list[tuple[dict, dict]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pairs)


# ----------------------------------------------------------------------------------- parsing


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
    """Carries the input name and the JSON path for error messages."""

    def __init__(self, input_name: str):
        self.input_name = input_name

    def fail(self, where: str, problem: str, fix: str = _FIX_FORMAT) -> RegionDragInputError:
        prefix = f"{where}: " if where else ""
        return RegionDragInputError(self.input_name, prefix + problem, fix)


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


def _parse_shape(raw: Any, ctx: _Ctx, where: str) -> dict:
    if not isinstance(raw, dict):
        raise ctx.fail(where, f"a shape must be an object, got {type(raw).__name__}.")
    kind = raw.get("type")
    if kind == "polygon":
        if "points" not in raw:
            raise ctx.fail(where, 'polygon has no "points".')
        pts = dedupe_closed(_parse_points(raw["points"], ctx, where, MAX_POLYGON_VERTICES))
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


def _parse_xy(raw: Any, ctx: _Ctx, where: str, size) -> np.ndarray:
    """One ``[x, y]`` point: finite, within ``MAX_COORD``, and on the ``size = (W, H)`` image if given."""
    if not (isinstance(raw, (list, tuple)) and len(raw) == 2 and all(_is_number(v) for v in raw)):
        raise ctx.fail(where, f"is {json.dumps(raw)[:60]}, not a pair of numbers [x, y].", _FIX_POINTS)
    try:
        xy = np.asarray(raw, dtype=np.float64)
    except OverflowError:
        xy = np.array([np.inf, np.inf])
    if not np.isfinite(xy).all() or np.abs(xy).max() > MAX_COORD:
        raise ctx.fail(where, f"has a coordinate that is not finite or exceeds {MAX_COORD:.0e} px.",
                       "Use pixel coordinates of the image; place the point again.")
    if size is not None:
        W, H = size
        px, py = math.floor(xy[0] + 0.5), math.floor(xy[1] + 0.5)
        if not (0 <= px < W and 0 <= py < H):
            raise ctx.fail(where, f"({xy[0]:g}, {xy[1]:g}) lies outside the {W}x{H} image.",
                           f"Place the point on the image (x from 0 to {W - 1}, y from 0 to {H - 1}).")
    return xy


def _parse_point_pairs(raw: Any, ctx: _Ctx, i: int, size) -> dict:
    """A pair's ``"points"``: the normalised ``{"type": "points", "handle", "target"}`` dict."""
    where = f"pair {i + 1} points (pairs[{i}].points)"
    if not isinstance(raw, list):
        raise ctx.fail(where, f'must be a list of {{"handle": [x, y], "target": [x, y]}} objects, '
                              f"got {type(raw).__name__}.", _FIX_POINTS)
    if not raw:
        raise ctx.fail(where, "is empty: the handle region has neither a target region nor point pairs.",
                       "Add at least one point pair (a handle point inside the region and its target point), "
                       "or draw a target region instead.")
    if len(raw) > MAX_POINT_PAIRS:
        raise ctx.fail(where, f"has {len(raw)} point pairs; the limit is {MAX_POINT_PAIRS} per region.",
                       "Use fewer point pairs (a few at the ends and corners steer the whole region), or split "
                       "the region into several pairs.")
    hs, ts = [], []
    for k, entry in enumerate(raw):
        w = f"pair {i + 1} point {k + 1} (pairs[{i}].points[{k}])"
        if not isinstance(entry, dict):
            raise ctx.fail(w, f'must be an object {{"handle": [x, y], "target": [x, y]}}, got '
                              f"{type(entry).__name__}.", _FIX_POINTS)
        if entry.get("handle") is None:
            raise ctx.fail(w, 'has no "handle" point.', 'Give every point pair its "handle" [x, y], or remove it.')
        if entry.get("target") is None:
            raise ctx.fail(w, 'has a handle point but no "target" point.',
                           "Give every handle point its target [x, y], or remove the point pair.")
        hs.append(_parse_xy(entry["handle"], ctx, f"pair {i + 1} point {k + 1} handle "
                                                  f"(pairs[{i}].points[{k}].handle)", size))
        ts.append(_parse_xy(entry["target"], ctx, f"pair {i + 1} point {k + 1} target "
                                                  f"(pairs[{i}].points[{k}].target)", size))
    return {"type": "points", "handle": np.stack(hs), "target": np.stack(ts)}


def _parse_pair_v2(rp: dict, ctx: _Ctx, i: int, width, height) -> tuple[dict, dict]:
    """A version 2 pair: a handle shape and either a target shape or point pairs."""
    where = f"pair {i + 1} handle (pairs[{i}].handle)"
    if "handle" not in rp:
        raise ctx.fail(where, "missing; each pair needs a handle shape.",
                       f"Draw the handle region of pair {i + 1}, or remove the pair.")
    handle = _parse_shape(rp["handle"], ctx, where)
    target, points = rp.get("target"), rp.get("points")
    if target is not None and points is not None:
        raise ctx.fail(f"pair {i + 1} (pairs[{i}])",
                       'has both a "target" shape and "points"; a pair moves its handle region onto a target '
                       "region or by point pairs, not both.",
                       'Remove "points" to use the target region, or "target" to drag the region by its point '
                       "pairs.")
    if points is not None:
        size = (width, height) if width is not None else None
        return handle, _parse_point_pairs(points, ctx, i, size)
    where = f"pair {i + 1} target (pairs[{i}].target)"
    if target is None:
        raise ctx.fail(where, 'missing; each pair needs a target shape or "points" (handle -> target point pairs).',
                       f"Draw the target region of pair {i + 1}, add point pairs, or remove the pair.")
    return handle, _parse_shape(target, ctx, where)


def parse_shapes(text: str, input_name: str = "shapes") -> ShapeSet:
    """Parse the shape JSON (format in the module docstring) into a :class:`ShapeSet`.

    Every problem raises :class:`RegionDragInputError` naming ``input_name`` and, for a bad shape,
    the pair (1-based) and side, e.g. ``pair 2 target (pairs[1].target)``.
    """
    ctx = _Ctx(input_name)
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
    version = data.get("version", 1)
    if isinstance(version, bool) or not _is_number(version) or version not in SHAPES_VERSIONS:
        raise ctx.fail("", f"unsupported shapes version {json.dumps(version)[:40]}; this pack reads versions "
                           f"{' and '.join(map(str, SHAPES_VERSIONS))}.",
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
        if version >= 2:
            pairs.append(_parse_pair_v2(rp, ctx, i, width, height))
            continue
        sides = []
        for side in ("handle", "target"):
            where = f"pair {i + 1} {side} (pairs[{i}].{side})"
            if side not in rp:
                fix = f"Draw the {side} region of pair {i + 1}, or remove the pair."
                if side == "target" and "points" in rp:
                    fix += ' Point pairs ("points") need "version": 2.'
                raise ctx.fail(where, f"missing; each pair needs a {side} shape.", fix)
            sides.append(_parse_shape(rp[side], ctx, where))
        pairs.append((sides[0], sides[1]))
    return ShapeSet(width=width, height=height, pairs=pairs)


# ----------------------------------------------------------------------------------- scaling


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
