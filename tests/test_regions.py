"""Shape JSON parsing, rasterisation and ComfyUI mask pairs."""

import json

import numpy as np
import pytest
import torch

from regiondrag_core.errors import RegionDragInputError
from regiondrag_core.masks import RegionPair, pairs_from_masks, pairs_from_shapes
from regiondrag_core.raster import rasterize_shape
from regiondrag_core.shapes import ShapeSet, parse_shapes, scale_shapes

TRI = {"type": "polygon", "points": [[10, 10], [50, 12], [30, 40]]}
QUAD = {"type": "polygon", "points": [[60, 60], [100, 60], [100, 100], [60, 100]]}
BRUSH = {"type": "brush", "strokes": [{"size": 8, "points": [[20, 80], [40, 90]]}]}


def doc(*pairs, **extra):
    d = {"version": 1, "pairs": [{"handle": h, "target": t} for h, t in pairs]}
    d.update(extra)
    return json.dumps(d)


# ------------------------------------------------------------------------ parsing


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_means_no_shapes(text):
    ss = parse_shapes(text)
    assert isinstance(ss, ShapeSet) and ss.pairs == [] and ss.width is None and ss.height is None


def test_parse_valid_document():
    ss = parse_shapes(doc((TRI, QUAD), (BRUSH, TRI), width=128, height=96))
    assert (ss.width, ss.height) == (128, 96) and len(ss.pairs) == 2
    h, t = ss.pairs[0]
    assert h["type"] == "polygon" and h["points"].shape == (3, 2) and h["points"].dtype == np.float64
    assert ss.pairs[1][0]["strokes"][0]["size"] == 8.0
    # closing vertex and repeated vertices are dropped; version/width/height optional
    closed = {"type": "polygon", "points": [[0, 0], [10, 0], [10, 0], [10, 10], [0, 0]]}
    ss = parse_shapes(json.dumps({"pairs": [{"handle": closed, "target": TRI, "color": "red"}]}))
    assert ss.pairs[0][0]["points"].shape == (3, 2) and ss.width is None


def test_float_and_many_vertex_polygon_ok():
    ang = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    circle = np.stack([50 + 30.5 * np.cos(ang), 50 + 30.5 * np.sin(ang)], 1).tolist()
    ss = parse_shapes(doc(({"type": "polygon", "points": circle}, TRI)))
    assert ss.pairs[0][0]["points"].shape == (200, 2)
    concave = {"type": "polygon", "points": [[0, 0], [40, 0], [10, 10], [0, 40]]}
    parse_shapes(doc((concave, TRI)))


BAD = [
    # (document text, expected fragment, pair/side fragment or None)
    ("{not json", "not valid JSON", None),
    ("[1, 2]", "top level must be a JSON object", None),
    (json.dumps({"version": 1}), 'missing "pairs"', None),
    (json.dumps({"pairs": {}}), '"pairs" must be a list', None),
    (json.dumps({"version": 3, "pairs": []}), "unsupported shapes version", None),
    (json.dumps({"width": 10, "pairs": []}), "both", None),
    (json.dumps({"width": -5, "height": 10, "pairs": []}), "positive integer", None),
    (json.dumps({"pairs": [5]}), "pair 1", "pair 1"),
    (json.dumps({"pairs": [{"handle": TRI}]}), "missing", "pair 1 target"),
    (doc((TRI, TRI), ({"points": [[0, 0], [1, 0], [0, 1]]}, TRI)), '"type"', "pair 2 handle"),
    (doc((TRI, {"type": "circle", "r": 3})), "unknown shape type", "pair 1 target"),
    (doc((TRI, {"type": "polygon"})), 'no "points"', "pair 1 target"),
    (doc(({"type": "polygon", "points": "1,2,3"}, TRI)), "must be a list", "pair 1 handle"),
    (doc(({"type": "polygon", "points": [[0, 0], ["a", 1], [3, 4]]}, TRI)), "point 1", "pair 1 handle"),
    (doc(({"type": "polygon", "points": [[0, 0], [1, 2, 3], [3, 4]]}, TRI)), "point 1", "pair 1 handle"),
    (doc(({"type": "polygon", "points": [[0, 0], [True, 1], [3, 4]]}, TRI)), "point 1", "pair 1 handle"),
    ('{"pairs": [{"handle": {"type": "polygon", "points": [[0, 0], [NaN, 1], [3, 4]]}, "target": '
     + json.dumps(TRI) + "}]}", "non-finite", "pair 1 handle"),
    ('{"pairs": [{"handle": ' + json.dumps(TRI) + ', "target": {"type": "polygon", "points": '
     '[[0, 0], [Infinity, 1], [3, 4]]}}]}', "non-finite", "pair 1 target"),
    (doc((TRI, {"type": "polygon", "points": [[0, 0], [1e9, 1], [3, 4]]})), "exceeds", "pair 1 target"),
    (doc((TRI, {"type": "polygon", "points": [[0, 0], [10, 10]]})), "at least 3", "pair 1 target"),
    (doc((TRI, {"type": "polygon", "points": [[0, 0], [10, 10], [0, 0]]})), "at least 3", "pair 1 target"),
    (doc(({"type": "polygon", "points": [[0, 0], [5, 5], [10, 10]]}, TRI)), "zero area", "pair 1 handle"),
    (doc(({"type": "polygon", "points": [[0, 0], [5, 5], [10, 10], [20, 20]]}, TRI)), "zero area", "pair 1 handle"),
    # bow-tie quadrilateral (signed area zero) and an asymmetric one (non-zero area)
    (doc((TRI, {"type": "polygon", "points": [[0, 0], [10, 10], [10, 0], [0, 10]]})), "intersects itself",
     "pair 1 target"),
    (doc((TRI, {"type": "polygon", "points": [[0, 0], [30, 10], [30, 0], [0, 12]]})), "intersects itself",
     "pair 1 target"),
    # five-pointed star drawn as a pentagram, and a hexagon whose vertex touches another edge
    (doc(({"type": "polygon", "points": [[50, 0], [79, 90], [2, 35], [98, 35], [21, 90]]}, TRI)),
     "intersects itself", "pair 1 handle"),
    (doc(({"type": "polygon", "points": [[0, 0], [20, 0], [20, 20], [10, 0], [0, 20], [-5, 10]]}, TRI)),
     "intersects itself", "pair 1 handle"),
    (doc((TRI, {"type": "polygon", "points": [[0, 0], [20, 0], [10, 0], [10, 20]]})), "folds back",
     "pair 1 target"),
    (doc((TRI, {"type": "brush", "strokes": []})), "non-empty", "pair 1 target"),
    (doc((TRI, {"type": "brush"})), "non-empty", "pair 1 target"),
    (doc((TRI, {"type": "brush", "strokes": [{"size": 5, "points": []}]})), "no points", "pair 1 target"),
    (doc((TRI, {"type": "brush", "strokes": [{"size": 0, "points": [[1, 1]]}]})), "size", "pair 1 target"),
    (doc((TRI, {"type": "brush", "strokes": [{"size": -3, "points": [[1, 1]]}]})), "size", "pair 1 target"),
    (doc((TRI, {"type": "brush", "strokes": [{"size": "big", "points": [[1, 1]]}]})), "size", "pair 1 target"),
    (doc((TRI, {"type": "brush", "strokes": [{"points": [[1, 1]]}]})), '"size"', "pair 1 target"),
    (doc((TRI, {"type": "brush", "strokes": [[1, 1]]})), "stroke", "pair 1 target"),
]


@pytest.mark.parametrize("text,fragment,where", BAD)
def test_parse_errors_name_node_input_pair(text, fragment, where):
    with pytest.raises(RegionDragInputError) as e:
        parse_shapes(text, input_name="my_shapes")
    msg = str(e.value)
    assert e.value.node is None and e.value.input_name == "my_shapes"
    assert msg.startswith("my_shapes: ") and str(e.value.for_node("MyNode")) == "MyNode / " + msg
    assert fragment in msg
    if where is not None:
        assert where in msg
    assert e.value.fix  # always says what to do


def test_parse_default_node_names():
    with pytest.raises(RegionDragInputError, match=r"^shapes: ") as e:
        parse_shapes("{")
    assert str(e.value.for_node("RegionMaskPair")).startswith("RegionMaskPair / shapes: ")


# ------------------------------------------------------------------------ rasterising


def test_polygon_rasterisation():
    sq = {"type": "polygon", "points": np.array([[10.0, 10.0], [20.0, 10.0], [20.0, 20.0], [10.0, 20.0]])}
    m = rasterize_shape(sq, (32, 40))
    assert m.shape == (32, 40) and m.dtype == bool
    ys, xs = np.nonzero(m)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 20, 10, 20)
    # sub-pixel vertices are honoured (not truncated)
    sq2 = {"type": "polygon", "points": np.array([[10.0, 10.0], [20.7, 10.0], [20.7, 20.0], [10.0, 20.0]])}
    assert np.nonzero(rasterize_shape(sq2, (32, 40)))[1].max() == 21
    # clipped by the image
    big = {"type": "polygon", "points": np.array([[-50.0, -50.0], [100.0, -50.0], [100.0, 5.0], [-50.0, 5.0]])}
    mb = rasterize_shape(big, (32, 40))
    assert mb[:6].all() and not mb[6:].any()


@pytest.mark.parametrize("size", [6, 12, 24, 25])
def test_brush_stroke_width(size):
    shape = {"type": "brush", "strokes": [{"size": size, "points": np.array([[20.0, 50.0], [120.0, 50.0]])}]}
    m = rasterize_shape(shape, (100, 140))
    width = m[:, 70].sum()
    assert abs(int(width) - size) <= 1
    # round caps: the stroke reaches about size/2 beyond its end points, no further
    xs = np.nonzero(m[50])[0]
    assert abs(xs.min() - (20 - size / 2)) <= 1 and abs(xs.max() - (120 + size / 2)) <= 1
    cap_rows = np.nonzero(m[:, 120 + size // 2])[0]
    assert len(cap_rows) < width  # rounded, not square
    # a diagonal stroke is as wide, measured across it
    diag = {"type": "brush", "strokes": [{"size": size, "points": np.array([[20.0, 10.0], [100.0, 90.0]])}]}
    md = rasterize_shape(diag, (100, 140))
    assert abs(md[:, 60].sum() / np.sqrt(2) - size) <= 2


def test_brush_dot_and_polyline():
    dot = {"type": "brush", "strokes": [{"size": 10, "points": np.array([[30.0, 30.0]])}]}
    m = rasterize_shape(dot, (64, 64))
    area = m.sum()
    assert abs(area - np.pi * 25) < 0.25 * np.pi * 25
    ys, xs = np.nonzero(m)
    assert abs(xs.mean() - 30) < 0.5 and abs(ys.mean() - 30) < 0.5
    poly = {"type": "brush", "strokes": [{"size": 4, "points": np.array([[5.0, 5.0], [50.0, 5.0], [50.0, 50.0]])},
                                         {"size": 3, "points": np.array([[5.0, 60.0]])}]}
    m = rasterize_shape(poly, (64, 64))
    assert m[5, 30] and m[30, 50] and m[60, 5] and not m[30, 30]


def test_scale_shapes():
    ss = parse_shapes(doc((TRI, BRUSH), width=100, height=50))
    scaled = scale_shapes(ss, (100, 200))  # (H, W): 2x in both
    assert (scaled.width, scaled.height) == (200, 100)
    np.testing.assert_allclose(scaled.pairs[0][0]["points"], (np.array(TRI["points"]) + 0.5) * 2 - 0.5)
    assert scaled.pairs[0][1]["strokes"][0]["size"] == 16.0
    # the original is untouched
    np.testing.assert_array_equal(ss.pairs[0][0]["points"], TRI["points"])
    # same size or no size: unchanged
    same = scale_shapes(ss, (50, 100))
    np.testing.assert_array_equal(same.pairs[0][0]["points"], ss.pairs[0][0]["points"])
    nosize = scale_shapes(parse_shapes(doc((TRI, BRUSH))), (7, 9))
    np.testing.assert_array_equal(nosize.pairs[0][0]["points"], TRI["points"])
    # a full-image rectangle stays full-image after scaling
    full = {"type": "polygon", "points": [[0, 0], [99, 0], [99, 49], [0, 49]]}
    ss = parse_shapes(doc((full, full), width=100, height=50))
    pairs = pairs_from_shapes(ss, (200, 400))
    # pixel-centre aligned: vertices on the centres of the edge pixels land 1.5 px inside
    ys, xs = np.nonzero(pairs[0].handle)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (2, 398, 2, 198)
    assert pairs[0].handle[2:199, 2:399].all()


def test_pairs_from_shapes():
    ss = parse_shapes(doc((TRI, QUAD), (BRUSH, TRI)))
    pairs = pairs_from_shapes(ss, (128, 128))
    assert len(pairs) == 2 and all(isinstance(p, RegionPair) for p in pairs)
    p0, p1 = pairs
    assert p0.handle.shape == (128, 128) and p0.handle.dtype == bool
    assert p0.handle_polygon.shape == (3, 2) and p0.target_polygon.shape == (4, 2)
    assert p1.handle_polygon is None and p1.target_polygon is not None
    assert p0.target[80, 80] and not p0.target[10, 10]
    assert pairs_from_shapes(parse_shapes(""), (64, 64)) == []


def test_pairs_from_shapes_outside_image():
    far = {"type": "polygon", "points": [[500, 500], [600, 500], [550, 600]]}
    with pytest.raises(RegionDragInputError, match=r"pair 2 target .* lies outside the 128x64 image") as e:
        pairs_from_shapes(parse_shapes(doc((TRI, TRI), (TRI, far))), (64, 128), input_name="shapes")
    assert str(e.value).startswith("shapes: ")
    left = {"type": "brush", "strokes": [{"size": 4, "points": [[-10, 5], [-3, 40]]}]}
    with pytest.raises(RegionDragInputError, match=r"pair 1 handle .* lies outside the 64x64 image"):
        pairs_from_shapes(parse_shapes(doc((left, TRI))), (64, 64))



# ------------------------------------------------------------------------ masks


def test_pairs_from_masks_torch_and_numpy():
    h = torch.zeros(2, 32, 48)
    t = torch.zeros(2, 32, 48)
    h[0, 2:6, 2:6] = 1.0
    t[0, 10:20, 10:20] = 0.6
    h[1, 0, 0] = 0.5
    t[1, 30, 40] = 1.0
    t[1, 31, 40] = 0.49
    pairs = pairs_from_masks(h, t)
    assert len(pairs) == 2
    assert pairs[0].handle.sum() == 16 and pairs[0].target.sum() == 100
    assert pairs[1].handle.sum() == 1 and pairs[1].target.sum() == 1
    assert pairs[0].handle_polygon is None
    one = pairs_from_masks(h[0].numpy(), t[0].numpy())  # [H, W] numpy
    assert len(one) == 1 and one[0].handle.shape == (32, 48)


def test_pairs_from_masks_errors():
    h = torch.zeros(1, 32, 48)
    h[0, 1, 1] = 1
    t = torch.zeros(1, 32, 40)
    t[0, 1, 1] = 1
    with pytest.raises(RegionDragInputError) as e:
        pairs_from_masks(h, t)
    msg = str(e.value)
    assert "handle_mask" in msg and "target_mask" in msg and "48x32" in msg and "40x32" in msg
    t2 = torch.zeros(3, 32, 48)
    t2[:, 1, 1] = 1
    with pytest.raises(RegionDragInputError, match="1 masks but target_mask has 3"):
        pairs_from_masks(h, t2)
    with pytest.raises(RegionDragInputError, match=r"^target_mask: the mask is empty"):
        pairs_from_masks(h, torch.zeros(1, 32, 48))
    with pytest.raises(RegionDragInputError, match=r"handle_mask: expected a MASK"):
        pairs_from_masks(torch.zeros(2, 3, 4, 5), t)


def test_region_pair_validate():
    m = np.zeros((8, 8), bool)
    m[1, 1] = True
    RegionPair(m, m).validate("in")
    with pytest.raises(RegionDragInputError, match="pair 3 target region is empty"):
        RegionPair(m, np.zeros((8, 8), bool)).validate("in", index=2)
    with pytest.raises(RegionDragInputError, match="8x8 but target region is 9x8"):
        RegionPair(m, np.ones((8, 9), bool)).validate("in")


# ------------------------------------------------------------ inputs the property tests found


@pytest.mark.parametrize("text,fragment", [
    ("[" * 5000 + "]" * 5000, "nested 5000 levels"),                       # was RecursionError
    ('{"pairs": [{"handle": {"type": "polygon", "points": [[1' + "0" * 400 + ", 0], [1, 1], [0, 1]]}}]}",
     "exceeds"),                                                            # was OverflowError
    ('{"width": 1' + "0" * 40 + ', "height": 5, "pairs": []}', "up to 16384"),  # was a 1e40-px raster later
    (doc((TRI, {"type": "brush", "strokes": [{"size": 1e300, "points": [[1, 1]]}]})), "brush size"),  # cv2 error
])
def test_inputs_that_used_to_raise_other_errors(text, fragment):
    with pytest.raises(RegionDragInputError, match=fragment):
        parse_shapes(text)


def test_huge_brush_after_scaling_covers_image_or_is_refused():
    # drawn with a 16000 px brush on a 100 px wide canvas, rasterised at 200 px: 32000 px wide
    ss = parse_shapes(json.dumps({"width": 100, "height": 100, "pairs": [
        {"handle": {"type": "brush", "strokes": [{"size": 16000, "points": [[50, 50], [60, 50]]}]}, "target": TRI}]}))
    pair = pairs_from_shapes(ss, (200, 200))[0]
    assert pair.handle.all()
    far = {"type": "brush", "strokes": [{"size": 40000.0, "points": np.array([[1e5, 10.0]])}]}
    with pytest.raises(RegionDragInputError, match="wider than"):
        rasterize_shape(far, (64, 64))


def test_far_away_vertices_are_clipped_not_distorted():
    # a half-plane x <= 20 drawn with vertices 1e9 px away, as after scaling a tiny drawing up
    half = {"type": "polygon", "points": np.array([[20.0, -1e9], [20.0, 1e9], [-1e9, 1e9], [-1e9, -1e9]])}
    m = rasterize_shape(half, (32, 48))
    assert m[:, :21].all() and not m[:, 21:].any()
    stroke = {"type": "brush", "strokes": [{"size": 5, "points": np.array([[-1e9, 10.0], [1e9, 10.0]])}]}
    m = rasterize_shape(stroke, (32, 48))
    assert m[8:13].all() and not m[:8].any() and not m[13:].any()


def test_nan_in_mask_is_an_input_error():
    m = np.ones((1, 8, 8), np.float32)
    bad = m.copy()
    bad[0, 3, 3] = np.nan
    with pytest.raises(RegionDragInputError, match="NaN"):
        pairs_from_masks(bad, m)
    bad[0, 3, 3] = np.inf
    with pytest.raises(RegionDragInputError, match="target_mask: holds NaN or infinite"):
        pairs_from_masks(m, bad)
