"""Property-based tests (hypothesis) of the shapes JSON, rasterisation and the region-to-point mapping.

On random documents, shapes, masks and sizes the core must either work or raise the documented
``RegionDragInputError`` (nothing else), and whatever it returns must hold: every point inside the
image, every target point inside its target region, every handle point inside its handle region,
one row per target pixel. Examples are derandomised (a fixed seed) and bounded, so CI runs the same
cases every time; ``pytest --hypothesis-show-statistics`` prints how many ran.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from regiondrag_core.errors import RegionDragInputError
from regiondrag_core.mapping import build_drag_map, map_pair, map_polygon_pair, map_region_pair
from regiondrag_core.masks import pairs_from_masks, pairs_from_shapes
from regiondrag_core.raster import rasterize_shape
from regiondrag_core.shapes import MAX_COORD, parse_shapes


def props(n: int):
    """Fixed seed, ``n`` examples, no per-example deadline (CI machines vary)."""
    return settings(derandomize=True, max_examples=n, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# ----------------------------------------------------------------------------------- strategies

coord = st.one_of(st.integers(-60, 160), st.floats(-60, 160, allow_nan=False, width=32))
point = st.tuples(coord, coord).map(list)
free_polygon = st.lists(point, min_size=0, max_size=10).map(lambda p: {"type": "polygon", "points": p})


@st.composite
def convex_points(draw, n=st.integers(3, 9)):
    """Vertices of a convex polygon: mostly valid, sometimes tiny, rounded flat or off the image."""
    n = draw(n)
    cx, cy = draw(st.floats(-40, 140)), draw(st.floats(-40, 140))
    r = draw(st.floats(0.2, 80))
    angles = sorted(draw(st.lists(st.integers(0, 359), min_size=n, max_size=n, unique=True)))
    pts = [[cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a))] for a in angles]
    if draw(st.booleans()):
        pts = [[round(x), round(y)] for x, y in pts]
    return pts


def convex_polygon():
    return convex_points().map(lambda p: {"type": "polygon", "points": p})


stroke = st.fixed_dictionaries({
    "size": st.one_of(st.integers(1, 40), st.floats(0.1, 40)),
    "points": st.lists(point, min_size=1, max_size=6),
})
brush = st.lists(stroke, min_size=1, max_size=3).map(lambda s: {"type": "brush", "strokes": s})
shape = st.one_of(convex_polygon(), convex_polygon(), free_polygon, brush)


@st.composite
def shapes_doc(draw):
    doc = {"version": 1, "pairs": [{"handle": h, "target": t}
                                   for h, t in draw(st.lists(st.tuples(shape, shape), max_size=3))]}
    if draw(st.booleans()):
        doc["width"], doc["height"] = draw(st.integers(1, 200)), draw(st.integers(1, 200))
    return doc


image_size = st.tuples(st.integers(8, 80), st.integers(8, 80))

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-10**30, 10**30),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(
        ["type", "points", "strokes", "size", "handle", "target", "pairs", "width", "height", "version", "x"]),
        inner, max_size=4)), max_leaves=20)


# -------------------------------------------------------------------------------- checkers


def _check_map(handle_xy, target_xy, handle_mask, target_mask):
    """Points inside the image, target rows = the target pixels (once each), handles on the handle."""
    h, w = target_mask.shape
    for xy in (handle_xy, target_xy):
        assert xy.ndim == 2 and xy.shape[1] == 2 and xy.dtype.kind == "i"
        assert (xy[:, 0] >= 0).all() and (xy[:, 0] < w).all() and (xy[:, 1] >= 0).all() and (xy[:, 1] < h).all()
    assert len(handle_xy) == len(target_xy)
    assert handle_mask[handle_xy[:, 1], handle_xy[:, 0]].all()
    ty, tx = np.nonzero(target_mask)
    assert np.array_equal(target_xy, np.stack([tx, ty], 1))


def _parse_and_rasterise(text, size):
    try:
        return pairs_from_shapes(parse_shapes(text), size)
    except RegionDragInputError as e:
        assert e.node is None and e.input_name == "shapes" and str(e).startswith("shapes: ")
        event("input error")
        return None


# ---------------------------------------------------------------------------------- properties


@props(400)
@given(doc=shapes_doc(), size=image_size)
def test_random_documents_rasterise_and_map_inside_their_regions(doc, size):
    pairs = _parse_and_rasterise(json.dumps(doc), size)
    if pairs is None:
        return
    event(f"{len(pairs)} pairs rasterised")
    for p in pairs:
        assert p.handle.shape == p.target.shape == size and p.handle.dtype == np.bool_
        assert p.handle.any() and p.target.any()
        hxy, txy, hm, tm = map_pair(p, 1)
        assert np.array_equal(hm, p.handle) and np.array_equal(tm, p.target)
        _check_map(hxy, txy, hm, tm)
    H, W = size
    h, w = H // 8, W // 8
    try:
        dm = build_drag_map(pairs, size, (h, w))
    except RegionDragInputError as e:  # a region only in the rows VAE Encode crops away
        assert e.input_name == "region_pairs" and "empty" in str(e)
        event("empty after the VAE crop")
        return
    assert dm.latent_size == (h, w) and dm.num_pairs == len(pairs)
    _check_map(dm.handle_xy, dm.target_xy, dm.handle_union, dm.target_union)
    event("drag map built")


@props(300)
@given(value=json_value, where=st.sampled_from(["top", "pairs", "pair", "handle", "points", "stroke", "size"]))
def test_arbitrary_json_in_any_position_is_an_input_error_or_parses(value, where):
    tri = {"type": "polygon", "points": [[1, 1], [20, 2], [8, 17]]}
    doc = {"top": value,
           "pairs": {"pairs": value},
           "pair": {"pairs": [value]},
           "handle": {"pairs": [{"handle": value, "target": tri}]},
           "points": {"pairs": [{"handle": {"type": "polygon", "points": value}, "target": tri}]},
           "stroke": {"pairs": [{"handle": {"type": "brush", "strokes": [value]}, "target": tri}]},
           "size": {"pairs": [{"handle": {"type": "brush", "strokes": [{"size": value, "points": [[3, 3]]}]},
                               "target": tri}]}}[where]
    pairs = _parse_and_rasterise(json.dumps(doc), (32, 40))
    if pairs is not None:
        event(f"parsed ({where})")


@props(200)
@given(doc=shapes_doc(), cut=st.floats(0, 1, exclude_max=True), junk=st.text(max_size=6))
def test_truncated_or_corrupted_text_is_an_input_error_or_parses(doc, cut, junk):
    text = json.dumps(doc)
    _parse_and_rasterise(text[:int(len(text) * cut)] + junk, (24, 24))


@props(150)
@given(text=st.text(max_size=60))
def test_any_text_is_an_input_error_or_parses(text):
    _parse_and_rasterise(text, (16, 16))


far = st.one_of(st.floats(-MAX_COORD, MAX_COORD), st.integers(-10**7, 10**7), st.floats(-1e12, 1e12))


@props(150)
@given(pts=st.lists(st.tuples(far, far).map(list), min_size=1, max_size=8),
       size=st.floats(0.1, 4e4), wh=st.tuples(st.integers(1, 64), st.integers(1, 64)),
       poly=st.booleans())
def test_far_away_and_huge_shapes_rasterise_without_overflow(pts, size, wh, poly):
    """Coordinates far outside the image (as after scaling a small drawing to a large image) and
    brushes of any size: a mask of the image size, or the documented error, never a cv2 error."""
    shp = {"type": "polygon", "points": np.asarray(pts, np.float64)} if poly else \
        {"type": "brush", "strokes": [{"size": size, "points": np.asarray(pts, np.float64)}]}
    try:
        m = rasterize_shape(shp, wh)
    except RegionDragInputError as e:
        assert not poly and "wider than" in str(e)
        return
    assert m.shape == wh and m.dtype == np.bool_


@props(250)
@given(masks=st.integers(1, 24).flatmap(lambda h: st.integers(1, 24).flatmap(
    lambda w: st.tuples(hnp.arrays(np.bool_, (h, w)), hnp.arrays(np.bool_, (h, w))))))
def test_algorithm1_on_random_masks(masks):
    handle, target = masks
    try:
        hxy, txy = map_region_pair(handle, target)
    except RegionDragInputError as e:
        assert not handle.any() or not target.any()
        assert "empty" in str(e)
        return
    _check_map(hxy, txy, handle, target)


@props(250)
@given(n=st.sampled_from([3, 4, 5]), data=st.data(),
       size=st.one_of(st.none(), st.tuples(st.integers(1, 64), st.integers(1, 64))))
def test_polygon_maps_on_random_polygons(n, data, size):
    """Triangles and quads (affine/perspective maps), other counts (Algorithm 1), and free vertex
    lists that may be degenerate or self-intersecting."""
    poly = st.one_of(convex_points(st.just(n)), convex_points(st.just(n)), st.lists(point, max_size=6))
    hp, tp = data.draw(poly), data.draw(poly)
    from regiondrag_core.raster import rasterize_polygon
    try:
        hxy, txy = map_polygon_pair(hp, tp, size)
    except RegionDragInputError as e:
        assert e.input_name == "region_pairs"
        return
    event("mapped")
    if size is None:
        both = np.asarray(hp + tp, np.float64)
        size = (max(int(np.ceil(both[:, 1].max())) + 1, 1), max(int(np.ceil(both[:, 0].max())) + 1, 1))
    from regiondrag_core.geometry import dedupe_closed as _dedupe_closed
    hm = rasterize_polygon(_dedupe_closed(np.asarray(hp, np.float64)), size)
    tm = rasterize_polygon(_dedupe_closed(np.asarray(tp, np.float64)), size)
    _check_map(hxy, txy, hm, tm)


finite_or_not = st.one_of(st.floats(0, 1), st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.5, 1.0]))


@props(150)
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 16), st.integers(1, 16)), data=st.data())
def test_mask_pairs_from_random_masks(shape, data):
    h = data.draw(hnp.arrays(np.float32, shape, elements=finite_or_not))
    other = data.draw(st.sampled_from(["same", "size", "count"]))
    tshape = {"same": shape, "size": (shape[0], shape[1] + 1, shape[2]), "count": (shape[0] + 1,) + shape[1:]}[other]
    t = data.draw(hnp.arrays(np.float32, tshape, elements=finite_or_not))
    try:
        pairs = pairs_from_masks(h, t)
    except RegionDragInputError as e:
        assert e.input_name in ("handle_mask", "target_mask", "handle_mask/target_mask")
        return
    assert other == "same" and np.isfinite(h).all() and np.isfinite(t).all()
    assert len(pairs) == shape[0]
    for i, p in enumerate(pairs):
        assert np.array_equal(p.handle, h[i] >= 0.5) and np.array_equal(p.target, t[i] >= 0.5)
        _check_map(*map_pair(p, 1))


# --------------------------------------------------------------------------------- limits


def test_limits_are_input_errors():
    """The documented limits: past each one, the error names the limit and the shapes input."""
    from regiondrag_core import shapes as R
    tri = {"type": "polygon", "points": [[1, 1], [20, 2], [8, 17]]}
    ring = lambda n: [[50 + 40 * math.cos(2 * math.pi * k / n), 50 + 40 * math.sin(2 * math.pi * k / n)]
                      for k in range(n)]
    ok = parse_shapes(json.dumps({"pairs": [{"handle": {"type": "polygon", "points": ring(R.MAX_POLYGON_VERTICES)},
                                             "target": tri}]}))
    assert ok.pairs[0][0]["points"].shape == (R.MAX_POLYGON_VERTICES, 2)
    cases = {
        "vertices": json.dumps({"pairs": [{"handle": {"type": "polygon", "points": ring(R.MAX_POLYGON_VERTICES + 1)},
                                           "target": tri}]}),
        "brush points": json.dumps({"pairs": [{"handle": {"type": "brush", "strokes": [
            {"size": 3, "points": [[k % 50, k // 50] for k in range(R.MAX_BRUSH_POINTS // 2 + 1)]}] * 2},
            "target": tri}]}),
        "pairs": json.dumps({"pairs": [{"handle": tri, "target": tri}] * (R.MAX_PAIRS + 1)}),
        "nesting": '{"pairs": ' + "[" * 40 + "]" * 40 + "}",
        "size": '{"pairs": [], "x": "' + "a" * R.MAX_SHAPES_CHARS + '"}',
        "side": json.dumps({"width": R.MAX_SIDE + 1, "height": 8, "pairs": []}),
        "brush size": json.dumps({"pairs": [{"handle": {"type": "brush", "strokes": [
            {"size": R.MAX_BRUSH_SIZE * 2, "points": [[1, 1]]}]}, "target": tri}]}),
    }
    for name, text in cases.items():
        with pytest.raises(RegionDragInputError, match="limit|up to|in \\(0") as e:
            parse_shapes(text)
        assert e.value.input_name == "shapes", name
    big_batch = np.ones((R.MAX_PAIRS + 1, 8, 8), np.float32)
    with pytest.raises(RegionDragInputError, match="limit"):
        pairs_from_masks(big_batch, big_batch)
