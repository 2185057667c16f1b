"""Region-to-point mapping: Algorithm 1, polygon maps, downsampling, the latent drag map."""

import cv2
import numpy as np
import pytest
import torch

from regiondrag_core.errors import RegionDragInputError
from regiondrag_core.mapping import (
    DragMap,
    build_drag_map,
    downsample_region,
    map_polygon_pair,
    map_region_pair,
    preview_image,
)
from regiondrag_core.masks import RegionPair
from regiondrag_core.raster import rasterize_polygon


def rect(size, x0, y0, x1, y1):
    m = np.zeros(size, bool)
    m[y0:y1 + 1, x0:x1 + 1] = True
    return m


def random_region(rng, size, holes=True):
    """A few random filled ellipses/polygons, possibly with holes punched in."""
    H, W = size
    m = np.zeros(size, np.uint8)
    for _ in range(rng.integers(1, 4)):
        if rng.random() < 0.5:
            c = (int(rng.integers(0, W)), int(rng.integers(0, H)))
            ax = (int(rng.integers(1, W // 4)), int(rng.integers(1, H // 4)))
            cv2.ellipse(m, c, ax, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        else:
            pts = rng.integers(0, [W, H], size=(int(rng.integers(3, 7)), 2)).astype(np.int32)
            cv2.fillPoly(m, [pts], 1)
    if holes and rng.random() < 0.7:
        for _ in range(rng.integers(1, 4)):
            c = (int(rng.integers(0, W)), int(rng.integers(0, H)))
            cv2.circle(m, c, int(rng.integers(1, max(2, W // 10))), 0, -1)
    m = m.astype(bool)
    if not m.any():
        m[int(rng.integers(0, H)), int(rng.integers(0, W))] = True
    return m


def assert_valid_map(hxy, txy, handle, target):
    assert hxy.dtype == np.int64 and txy.dtype == np.int64
    assert hxy.shape == txy.shape and hxy.shape[1] == 2
    # every target pixel exactly once
    flat = txy[:, 1] * target.shape[1] + txy[:, 0]
    assert len(np.unique(flat)) == len(flat) == target.sum()
    assert target[txy[:, 1], txy[:, 0]].all()
    # every handle point inside the handle region
    assert (hxy >= 0).all() and (hxy[:, 0] < handle.shape[1]).all() and (hxy[:, 1] < handle.shape[0]).all()
    assert handle[hxy[:, 1], hxy[:, 0]].all()


# ------------------------------------------------------------------------ Algorithm 1


@pytest.mark.parametrize("dx,dy", [(40, 20), (-13, 7), (0, 0), (5, -30)])
def test_translation_rectangle_is_exact(dx, dy):
    size = (128, 160)
    h = rect(size, 50, 40, 90, 70)
    t = np.roll(np.roll(h, dy, 0), dx, 1)
    hxy, txy = map_region_pair(h, t)
    assert_valid_map(hxy, txy, h, t)
    np.testing.assert_array_equal(hxy + [dx, dy], txy)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_translation_irregular_blob_is_exact(seed):
    rng = np.random.default_rng(seed)
    size = (200, 200)
    blob = random_region(rng, (100, 100))
    h = np.zeros(size, bool)
    h[20:120, 30:130] = blob
    dx, dy = int(rng.integers(-25, 60)), int(rng.integers(-15, 70))
    t = np.zeros(size, bool)
    t[20 + dy:120 + dy, 30 + dx:130 + dx] = blob
    hxy, txy = map_region_pair(h, t)
    assert_valid_map(hxy, txy, h, t)
    np.testing.assert_array_equal(hxy + [dx, dy], txy)


def test_scaled_rectangle_maps_corners_to_corners():
    size = (200, 200)
    h = rect(size, 10, 20, 49, 59)      # 40x40
    t = rect(size, 100, 100, 179, 139)  # 80x40
    hxy, txy = map_region_pair(h, t)
    assert_valid_map(hxy, txy, h, t)
    lut = {tuple(p): tuple(q) for p, q in zip(txy, hxy)}
    assert lut[(100, 100)] == (10, 20)
    assert lut[(179, 100)] == (49, 20)
    assert lut[(100, 139)] == (10, 59)
    assert lut[(179, 139)] == (49, 59)
    # monotone: x' non-decreasing in x along a row
    row = txy[:, 1] == 120
    order = np.argsort(txy[row, 0])
    assert (np.diff(hxy[row][order, 0]) >= 0).all()
    # the handle is covered: every handle column is used
    assert len(np.unique(hxy[:, 0])) == 40


def test_exact_integer_floor_on_scaling():
    # Scale 3 -> 10 pixels: x' = floor(i * 9 / 2) = 0, 4, 9 (no float drift like 8.9999)
    h = rect((20, 20), 0, 0, 9, 0)
    t = rect((20, 20), 5, 5, 7, 5)
    hxy, txy = map_region_pair(h, t)
    np.testing.assert_array_equal(hxy[np.argsort(txy[:, 0]), 0], [0, 4, 9])


@pytest.mark.parametrize("seed", range(8))
def test_random_regions_properties(seed):
    rng = np.random.default_rng(100 + seed)
    size = (int(rng.integers(20, 120)), int(rng.integers(20, 120)))
    h = random_region(rng, size)
    t = random_region(rng, size)
    hxy, txy = map_region_pair(h, t)
    assert_valid_map(hxy, txy, h, t)


def test_handle_with_hole_and_two_blobs():
    size = (100, 100)
    h = rect(size, 10, 10, 20, 60) | rect(size, 50, 10, 60, 60)  # two blobs, gap in columns 21..49
    h[30:40, 50:61] = False                                        # a hole across the second blob
    t = rect(size, 30, 70, 89, 95)
    hxy, txy = map_region_pair(h, t)
    assert_valid_map(hxy, txy, h, t)
    # both blobs are used
    assert (hxy[:, 0] <= 20).any() and (hxy[:, 0] >= 50).any()


def test_target_with_holes_and_blobs():
    size = (90, 90)
    h = rect(size, 5, 5, 40, 40)
    t = rect(size, 50, 5, 60, 80) | rect(size, 75, 30, 85, 50)
    t[20:30, 50:61] = False
    hxy, txy = map_region_pair(h, t)
    assert_valid_map(hxy, txy, h, t)


def test_one_pixel_wide_and_single_pixel_regions():
    size = (50, 50)
    line = rect(size, 25, 5, 25, 40)        # one column
    block = rect(size, 2, 2, 12, 30)
    hxy, txy = map_region_pair(block, line)  # target width 1: range 0
    assert_valid_map(hxy, txy, block, line)
    assert (hxy[:, 0] == 2).all()
    hxy, txy = map_region_pair(line, block)  # handle width 1
    assert_valid_map(hxy, txy, line, block)
    assert (hxy[:, 0] == 25).all()
    dot = rect(size, 40, 40, 40, 40)
    hxy, txy = map_region_pair(block, dot)  # column height 1
    assert_valid_map(hxy, txy, block, dot)
    assert hxy.tolist() == [[2, 2]]
    hxy, txy = map_region_pair(dot, block)
    assert_valid_map(hxy, txy, dot, block)
    hrow = rect(size, 5, 10, 30, 10)        # one row: handle column ranges 0
    hxy, txy = map_region_pair(hrow, block)
    assert_valid_map(hxy, txy, hrow, block)


def test_map_region_pair_errors():
    size = (20, 20)
    with pytest.raises(RegionDragInputError, match="handle region is empty"):
        map_region_pair(np.zeros(size, bool), rect(size, 1, 1, 3, 3))
    with pytest.raises(RegionDragInputError, match="target region is empty"):
        map_region_pair(rect(size, 1, 1, 3, 3), np.zeros(size, bool))
    with pytest.raises(RegionDragInputError, match="same size"):
        map_region_pair(rect(size, 1, 1, 3, 3), rect((21, 20), 1, 1, 3, 3))


# ------------------------------------------------------------------------ polygons


def _lookup(hxy, txy, pt):
    hit = np.flatnonzero((txy[:, 0] == pt[0]) & (txy[:, 1] == pt[1]))
    assert len(hit) == 1, f"target vertex {pt} is not a target pixel"
    return hxy[hit[0]]


@pytest.mark.parametrize("n", [3, 4])
def test_polygon_vertices_map_to_vertices(n):
    size = (300, 320)
    if n == 3:
        hp = np.array([[20.0, 30.0], [150.0, 40.0], [60.5, 170.25]])
        tp = np.array([[180, 120], [300, 200], [190, 280]])
        M = cv2.getAffineTransform(tp.astype(np.float32), hp.astype(np.float32))
        warp = lambda p: cv2.transform(p[None].astype(np.float32), M)[0]  # noqa: E731
    else:
        hp = np.array([[20.0, 20.0], [120.0, 30.0], [140.0, 150.0], [10.0, 130.0]])
        tp = np.array([[170, 150], [310, 160], [300, 290], [160, 270]])
        M = cv2.getPerspectiveTransform(tp.astype(np.float32), hp.astype(np.float32))
        warp = lambda p: cv2.perspectiveTransform(p[None].astype(np.float32), M)[0]  # noqa: E731
    hxy, txy = map_polygon_pair(hp, tp, size=size)
    assert_valid_map(hxy, txy, rasterize_polygon(hp, size), rasterize_polygon(tp, size))
    for v_t, v_h in zip(tp, hp):
        got = _lookup(hxy, txy, v_t)
        assert np.abs(got - v_h).max() <= 1.0
    # interior points agree with the cv2 transform within 1 px
    ref = warp(txy.astype(np.float64))
    assert np.percentile(np.abs(hxy - ref).max(axis=1), 99) <= 1.0


def test_polygon_translation_is_exact():
    hp = np.array([[10, 10], [60, 12], [55, 70], [8, 50]], float)
    tp = hp + [30, 25]
    hxy, txy = map_polygon_pair(hp, tp, size=(128, 128))
    np.testing.assert_array_equal(hxy + [30, 25], txy)


def test_polygon_partly_outside_image_stays_inside_handle():
    size = (100, 100)
    hp = np.array([[-30, -20], [60, -10], [40, 50]], float)   # handle runs off the top-left
    tp = np.array([[50, 40], [99, 60], [60, 99]], float)
    hxy, txy = map_polygon_pair(hp, tp, size=size)
    assert_valid_map(hxy, txy, rasterize_polygon(hp, size), rasterize_polygon(tp, size))


@pytest.mark.parametrize("seed", range(6))
def test_random_polygons_properties(seed):
    rng = np.random.default_rng(seed)
    size = (160, 160)
    # random convex quads / triangles: sorted angles around a centre
    def poly(n):
        c = rng.uniform(40, 120, 2)
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = rng.uniform(10, 40, n)
        return c + np.stack([np.cos(ang) * r, np.sin(ang) * r], 1)
    n = int(rng.integers(3, 6))
    hp, tp = poly(n), poly(n)
    try:
        hxy, txy = map_polygon_pair(hp, tp, size=size)
    except RegionDragInputError:
        pytest.skip("random polygon degenerate")
    assert_valid_map(hxy, txy, rasterize_polygon(hp, size), rasterize_polygon(tp, size))


def test_polygon_more_vertices_and_concave_quad_use_algorithm_1():
    size = (100, 100)
    hp = np.array([[10, 10], [40, 5], [50, 30], [30, 50], [5, 35]], float)
    tp = hp + [40, 40]
    hxy, txy = map_polygon_pair(hp, tp, size=size)
    np.testing.assert_array_equal(hxy + [40, 40], txy)
    concave = np.array([[10, 10], [50, 10], [20, 20], [10, 50]], float)
    hxy, txy = map_polygon_pair(concave, np.array([[60, 60], [95, 60], [95, 95], [60, 95]], float), size=size)
    assert_valid_map(hxy, txy, rasterize_polygon(concave, size), rect(size, 60, 60, 95, 95))


@pytest.mark.parametrize("bad,match", [
    ([[0, 0], [10, 10]], "at least 3"),
    ([[0, 0], [5, 5], [10, 10]], "zero area"),
    ([[0, 0], [10, 10], [10, 0], [0, 10]], "intersects itself"),
    ([[0, 0], [np.nan, 1], [3, 4]], "non-finite"),
])
def test_polygon_degenerate_errors(bad, match):
    good = [[20, 20], [40, 20], [30, 40]]
    with pytest.raises(RegionDragInputError, match=match) as e:
        map_polygon_pair(good, bad, size=(64, 64))
    assert "target" in str(e.value)
    with pytest.raises(RegionDragInputError, match=match):
        map_polygon_pair(bad, good, size=(64, 64))


def test_polygon_outside_image_error():
    with pytest.raises(RegionDragInputError, match="covers no pixel"):
        map_polygon_pair([[200, 200], [240, 200], [220, 240]], [[1, 1], [20, 1], [10, 20]], size=(64, 64))


# ------------------------------------------------------------------------ downsampling


def test_downsample_never_vanishes_one_pixel():
    m = np.zeros((64, 64), bool)
    m[13, 42] = True
    d = downsample_region(m)
    assert d.shape == (8, 8) and d.sum() == 1 and d[1, 5]


def test_downsample_threshold_and_odd_sizes():
    m = np.zeros((100, 75), bool)
    assert downsample_region(m).shape == (13, 10)
    assert not downsample_region(m).any()
    m[:, :4] = True  # half of the first column of cells
    d = downsample_region(m)
    assert d[:, 0].all() and not d[:, 1:].any()
    m2 = np.zeros((100, 75), bool)
    m2[96:100, 72:75] = True  # the whole 4x3 corner cell
    d2 = downsample_region(m2)
    assert d2[12, 9] and d2.sum() == 1
    m3 = np.zeros((16, 16), bool)
    m3[:3, :8] = True  # 24/64 of a cell: below half, but the region must not vanish
    assert downsample_region(m3).tolist() == [[True, False], [False, False]]


# ------------------------------------------------------------------------ drag map


def _pair(size, h, t, hp=None, tp=None):
    return RegionPair(handle=h, target=t, handle_polygon=hp, target_polygon=tp)


def test_build_drag_map_translation_and_indices():
    size = (128, 128)
    p = _pair(size, rect(size, 16, 16, 47, 47), rect(size, 64, 32, 95, 63))
    dm = build_drag_map([p], size, (16, 16))
    assert isinstance(dm, DragMap) and dm.num_pairs == 1 and dm.latent_size == (16, 16)
    assert len(dm.target_xy) == 16 == dm.target_union.sum()
    np.testing.assert_array_equal(dm.handle_xy + [6, 2], dm.target_xy)
    hi, ti = dm.handle_index(), dm.target_index()
    assert hi.dtype == torch.int64 and ti.dtype == torch.int64
    assert torch.equal(ti, torch.from_numpy(dm.target_xy[:, 1] * 16 + dm.target_xy[:, 0]))
    assert dm.handle_union.sum() == 16


def test_build_drag_map_later_pair_wins():
    size = (128, 128)
    h1, t1 = rect(size, 0, 0, 31, 31), rect(size, 64, 64, 111, 111)
    h2, t2 = rect(size, 0, 96, 31, 127), rect(size, 80, 80, 127, 127)
    dm = build_drag_map([_pair(size, h1, t1), _pair(size, h2, t2)], size, (16, 16))
    lat_t = downsample_region(t1) | downsample_region(t2)
    assert dm.target_union.tolist() == lat_t.tolist()
    flat = dm.target_xy[:, 1] * 16 + dm.target_xy[:, 0]
    assert len(np.unique(flat)) == len(flat) == lat_t.sum()
    in_t2 = downsample_region(t2)[dm.target_xy[:, 1], dm.target_xy[:, 0]]
    h2l = downsample_region(h2)
    h1l = downsample_region(h1)
    assert h2l[dm.handle_xy[in_t2, 1], dm.handle_xy[in_t2, 0]].all()
    assert h1l[dm.handle_xy[~in_t2, 1], dm.handle_xy[~in_t2, 0]].all()
    assert dm.handle_union.tolist() == (h1l | h2l).tolist()
    # reversed order: pair 1 wins in the overlap
    dm2 = build_drag_map([_pair(size, h2, t2), _pair(size, h1, t1)], size, (16, 16))
    in_t1 = downsample_region(t1)[dm2.target_xy[:, 1], dm2.target_xy[:, 0]]
    assert h1l[dm2.handle_xy[in_t1, 1], dm2.handle_xy[in_t1, 0]].all()


def test_build_drag_map_polygon_pair_and_fallback():
    size = (256, 256)
    hp = np.array([[20, 20], [100, 24], [90, 110], [16, 100]], float)
    tp = hp + [120, 96]
    p = _pair(size, rasterize_polygon(hp, size), rasterize_polygon(tp, size), hp, tp)
    dm = build_drag_map([p], size, (32, 32))
    np.testing.assert_array_equal(dm.handle_xy + [15, 12], dm.target_xy)
    # a polygon too thin for the latent grid falls back to the downsampled masks
    thin_h = np.array([[20, 20], [200, 20], [200, 22]], float)
    thin_t = thin_h + [0, 100]
    p = _pair(size, rasterize_polygon(thin_h, size), rasterize_polygon(thin_t, size), thin_h, thin_t)
    dm = build_drag_map([p], size, (32, 32))
    assert dm.num_points > 0 and dm.handle_union[dm.handle_xy[:, 1], dm.handle_xy[:, 0]].all()


def test_build_drag_map_empty_and_size_errors():
    dm = build_drag_map([], (64, 96), (8, 12))
    assert dm.handle_xy.shape == (0, 2) and dm.num_pairs == 0 and len(dm.target_index()) == 0
    with pytest.raises(RegionDragInputError, match="8× the latent size") as e:
        build_drag_map([], (64, 104), (8, 12))
    assert str(e.value).startswith("latent: ") and "104x64" in str(e.value)
    size = (64, 64)
    with pytest.raises(RegionDragInputError, match="pair 1"):
        build_drag_map([_pair(size, rect(size, 0, 0, 5, 5), rect(size, 9, 9, 20, 20))], (128, 128), (16, 16))
    with pytest.raises(RegionDragInputError, match="pair 2 handle region is empty"):
        build_drag_map([_pair(size, rect(size, 0, 0, 9, 9), rect(size, 9, 9, 20, 20)),
                        _pair(size, np.zeros(size, bool), rect(size, 9, 9, 20, 20))], size, (8, 8))


def test_build_drag_map_crops_like_vae_encode_for_sizes_not_divisible_by_8():
    """VAE Encode keeps the centred 8k x 8k window of a 67x101 image: regions are cut the same way."""
    size = (67, 101)
    hm, tm = rect(size, 10, 12, 40, 30), rect(size, 50, 20, 80, 38)
    hp = np.array([[10, 12], [40, 12], [40, 30], [10, 30]], float)
    dm = build_drag_map([_pair(size, hm, tm)], size, (8, 12))
    top, left = 1, 2  # (67 % 8) // 2, (101 % 8) // 2
    ref = build_drag_map([_pair((64, 96), hm[top:top + 64, left:left + 96], tm[top:top + 64, left:left + 96])],
                         (64, 96), (8, 12))
    np.testing.assert_array_equal(dm.handle_xy, ref.handle_xy)
    np.testing.assert_array_equal(dm.target_xy, ref.target_xy)
    poly = build_drag_map([_pair(size, hm, tm, hp, hp + [38, 8])], size, (8, 12))
    assert poly.num_points > 0 and poly.handle_union[poly.handle_xy[:, 1], poly.handle_xy[:, 0]].all()


def test_preview_copies_from_original():
    size = (40, 40)
    rng = np.random.default_rng(0)
    img = rng.random((40, 40, 3)).astype(np.float32)
    h, t = rect(size, 2, 2, 9, 9), rect(size, 20, 22, 27, 29)
    h2, t2 = rect(size, 20, 22, 27, 29), rect(size, 30, 30, 37, 37)  # handle 2 = target 1
    out = preview_image(img, [_pair(size, h, t), _pair(size, h2, t2)])
    np.testing.assert_array_equal(out[22:30, 20:28], img[2:10, 2:10])
    np.testing.assert_array_equal(out[30:38, 30:38], img[22:30, 20:28])  # from the original
    assert out[0, 39].tolist() == img[0, 39].tolist()
    with pytest.raises(RegionDragInputError, match="image is 30x40"):
        preview_image(img[:, :30], [_pair(size, h, t)])
