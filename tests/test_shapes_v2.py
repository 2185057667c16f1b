"""Shapes JSON version 2 (region + points pairs): the shared accept/reject cases of
tests/golden/shapes_v2_cases.json and of the limits and simple-polygon rule,
tests/golden/shapes_limits_cases.json (the editor's parser reads the same files in
tests/js/shapes_v2.test.mjs), version 1 documents read exactly as before, and the checks made when
the shapes are rasterised (a handle point inside its region, every point on the image)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from regiondrag_core.errors import RegionDragInputError
from regiondrag_core.masks import pairs_from_shapes
from regiondrag_core.shapes import MAX_POINT_PAIRS, SHAPES_VERSION, parse_shapes, scale_shapes

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "shapes_v2_cases.json")
with open(GOLDEN) as _f:
    CASES = json.load(_f)["cases"]
LIMITS = os.path.join(os.path.dirname(__file__), "golden", "shapes_limits_cases.json")
with open(LIMITS) as _f:
    LIMIT_CASES = json.load(_f)["cases"]

SQ = {"type": "polygon", "points": [[10, 10], [40, 10], [40, 40], [10, 40]]}
TRI = {"type": "polygon", "points": [[60, 10], [90, 10], [75, 40]]}
BRUSH = {"type": "brush", "strokes": [{"size": 12, "points": [[60, 60], [80, 64]]}]}


def _kinds(ss):
    return ["shape" if t["type"] != "points" else len(t["handle"]) for _, t in ss.pairs]


def _check_case(text, case):
    """A shared case: refused with its error (where it says, with a fix; returns None), or read as its
    pairs (returns the parsed shapes)."""
    if not case["accept"]:
        with pytest.raises(RegionDragInputError) as e:
            parse_shapes(text, input_name="shapes")
        msg = str(e.value)
        assert case["error"] in msg and case.get("where", "") in msg, msg
        assert e.value.fix
        return None
    ss = parse_shapes(text)
    assert _kinds(ss) == case["pairs"]
    return ss


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_shared_case(case):
    ss = _check_case(json.dumps(case["doc"]), case)
    if ss is None:
        return
    for (_, t), raw in zip(ss.pairs, case["doc"]["pairs"]):
        if t["type"] == "points":
            np.testing.assert_array_equal(t["handle"], [q["handle"] for q in raw["points"]])
            np.testing.assert_array_equal(t["target"], [q["target"] for q in raw["points"]])
    raster = case.get("raster")
    if raster is None:
        return
    if raster["error"] is None:
        pairs = pairs_from_shapes(ss, tuple(raster["size"]))
        assert [p.has_points for p in pairs] == [k != "shape" for k in case["pairs"]]
        for p in pairs:
            assert p.handle.any() and p.target.any()
    else:
        with pytest.raises(RegionDragInputError) as e:
            pairs_from_shapes(ss, tuple(raster["size"]), input_name="shapes")
        msg = str(e.value)
        assert raster["error"] in msg and raster.get("where", "") in msg, msg
        assert msg.startswith("shapes: ") and e.value.fix


def test_shared_cases_cover_the_format():
    names = " ".join(c["name"] for c in CASES)
    for word in ("both", "empty", "33", "without its target", "outside", "v1", "no version", "version 3"):
        assert word in names
    assert sum(c["accept"] for c in CASES) >= 8 and sum(not c["accept"] for c in CASES) >= 20


def expand(v):
    """The shorthands of shapes_limits_cases.json (its "about" says what they give)."""
    if isinstance(v, str) and v.startswith("$"):
        kind, n = v[1:].split()
        n = int(n)
        if kind == "zigzag":
            return [[i, 10 + i % 2] for i in range(n - 2)] + [[n - 3, 30], [0, 30]]
        if kind == "dots":
            return [[i % 100, i // 100] for i in range(n)]
        if kind == "chars":
            return "x" * n
        raise ValueError(v)
    if isinstance(v, dict):
        if "$repeat" in v:
            return [expand(v["item"]) for _ in range(v["$repeat"])]
        return {k: expand(x) for k, x in v.items()}
    if isinstance(v, list):
        return [expand(x) for x in v]
    return v


@pytest.mark.parametrize("case", LIMIT_CASES, ids=[c["name"] for c in LIMIT_CASES])
def test_limit_case(case):
    """The backend's limits and simple-polygon rule, on the documents the editor's strict parser
    reads alike (compact JSON, the same text in both tests)."""
    case = expand(case)
    _check_case(json.dumps(case["doc"], separators=(",", ":")), case)


def test_limit_cases_cover_the_caps_and_polygon_rules():
    names = " ".join(c["name"] for c in LIMIT_CASES)
    for word in ("4096", "4097", "16384 points", "16385 points", "64 pairs", "65 pairs", "touching", "fold back",
                 "cross", "one line", "size 16385", "17 levels", "4,000,000"):
        assert word in names, word
    from regiondrag_core.shapes import MAX_BRUSH_POINTS, MAX_JSON_DEPTH, MAX_PAIRS, MAX_POLYGON_VERTICES
    assert (MAX_PAIRS, MAX_POLYGON_VERTICES, MAX_BRUSH_POINTS, MAX_JSON_DEPTH) == (64, 4096, 16384, 16)


def test_version_constants():
    assert SHAPES_VERSION == 2 and MAX_POINT_PAIRS == 32


# ------------------------------------------------------------------ version 1 reads as before

V1_DOCS = [
    {"version": 1, "width": 100, "height": 80, "pairs": [{"handle": SQ, "target": TRI}, {"handle": BRUSH, "target": SQ}]},
    {"pairs": [{"handle": SQ, "target": BRUSH, "color": "red"}]},
    {"version": 1, "pairs": [{"handle": TRI, "target": SQ, "points": [{"handle": [70, 20], "target": [80, 20]}]}]},
    {"pairs": [{"handle": TRI, "target": SQ, "points": "not even a list"}]},
    {"version": 1, "pairs": []},
]


def _same_shape(a, b):
    assert a["type"] == b["type"]
    if a["type"] == "polygon":
        np.testing.assert_array_equal(a["points"], b["points"])
    else:
        assert len(a["strokes"]) == len(b["strokes"])
        for s, t in zip(a["strokes"], b["strokes"]):
            assert s["size"] == t["size"]
            np.testing.assert_array_equal(s["points"], t["points"])


@pytest.mark.parametrize("doc", V1_DOCS)
def test_version_1_loads_as_before(doc):
    """A version 1 (or unversioned) document reads as the same shapes and masks as the document
    without any "points" key, and as version 2 when it has no points."""
    ss = parse_shapes(json.dumps(doc))
    plain = {**doc, "pairs": [{k: v for k, v in p.items() if k in ("handle", "target")} for p in doc["pairs"]]}
    ref = parse_shapes(json.dumps(plain))
    assert (ss.width, ss.height) == (ref.width, ref.height) and len(ss.pairs) == len(ref.pairs)
    for (h, t), (rh, rt) in zip(ss.pairs, ref.pairs):
        _same_shape(h, rh)
        _same_shape(t, rt)
    pairs = pairs_from_shapes(ss, (80, 100))
    assert not any(p.has_points for p in pairs)
    for p, q in zip(pairs, pairs_from_shapes(ref, (80, 100))):
        np.testing.assert_array_equal(p.handle, q.handle)
        np.testing.assert_array_equal(p.target, q.target)
    v2 = parse_shapes(json.dumps({**plain, "version": 2}))
    for (h, t), (rh, rt) in zip(v2.pairs, ref.pairs):
        _same_shape(h, rh)
        _same_shape(t, rt)


def test_version_1_error_hints_at_version_2():
    with pytest.raises(RegionDragInputError, match=r'pair 1 target .*missing.*need "version": 2'):
        parse_shapes(json.dumps({"pairs": [{"handle": SQ, "points": [{"handle": [20, 20], "target": [30, 30]}]}]}))


def test_non_finite_point_rejected():
    # Python's json reads NaN/Infinity (JSON.parse in the editor does not: there it is not valid JSON)
    text = ('{"version": 2, "pairs": [{"handle": ' + json.dumps(SQ)
            + ', "points": [{"handle": [20, NaN], "target": [30, 30]}]}]}')
    with pytest.raises(RegionDragInputError, match="pair 1 point 1 handle.*not finite"):
        parse_shapes(text)


# ------------------------------------------------------------------ scaling and rasterising


def test_points_scale_with_width_height():
    doc = {"version": 2, "width": 50, "height": 40,
           "pairs": [{"handle": SQ, "points": [{"handle": [20, 20], "target": [30, 25]}]}]}
    ss = scale_shapes(parse_shapes(json.dumps(doc)), (80, 100))
    t = ss.pairs[0][1]
    np.testing.assert_allclose(t["handle"], [[40.5, 40.5]])
    np.testing.assert_allclose(t["target"], [[60.5, 50.5]])
    (pair,) = pairs_from_shapes(parse_shapes(json.dumps(doc)), (80, 100))
    np.testing.assert_allclose(pair.handle_points, [[40.5, 40.5]])
    assert pair.handle_polygon is not None and pair.target_polygon is None


def test_points_pair_target_is_the_moved_region():
    doc = {"version": 2, "pairs": [{"handle": SQ, "points": [{"handle": [20, 20], "target": [50, 30]}]}]}
    (pair,) = pairs_from_shapes(parse_shapes(json.dumps(doc)), (80, 100))
    # one point pair: a plain translation by (30, 10)
    expect = np.zeros_like(pair.handle)
    expect[10:, 30:] = pair.handle[:70, :70]
    np.testing.assert_array_equal(pair.target, expect)


def test_region_moved_off_the_image_is_an_error():
    # the handle point at the region's left edge drags to the right edge: most of the region
    # leaves the image, but not all; a region moved wholly off the image cannot be written with
    # points on the image, so the check is of RegionPair.validate (masks built by hand)
    doc = {"version": 2, "pairs": [{"handle": SQ, "points": [{"handle": [10, 10], "target": [99, 79]}]}]}
    (pair,) = pairs_from_shapes(parse_shapes(json.dumps(doc)), (80, 100))
    assert pair.target.sum() == 1
    pair.target[:] = False
    with pytest.raises(RegionDragInputError, match="move the handle region entirely off the 100x80 image"):
        pair.validate("region_pairs")


def test_parts_without_points_stay_and_are_logged(caplog):
    two = {"type": "brush", "strokes": [{"size": 10, "points": [[20, 20]]}, {"size": 10, "points": [[70, 60]]}]}
    doc = {"version": 2, "pairs": [{"handle": two, "points": [{"handle": [20, 20], "target": [30, 20]}]}]}
    with caplog.at_level("WARNING"):
        (pair,) = pairs_from_shapes(parse_shapes(json.dumps(doc)), (80, 100))
    assert "1 separate part(s) of the handle region hold no handle point" in caplog.text
    assert not pair.target[45:, 55:].any() and pair.target[18:23, 28:33].all()
    assert pair.target.sum() == pair.handle[:40, :50].sum()  # the moved disc, as drawn
