"""Write the golden vectors that pin the editor's JS preview (web/js/regiondrag_geometry.js) to the
Python core: shape pairs at a few image sizes, the masks regiondrag_core rasterises from them, and
the exact target -> handle point maps of regiondrag_core.mapping.map_pair (Algorithm 1, affine and
perspective maps, hole and edge snapping), plus Algorithm 1 on masks that no shape draws (gaps,
holes, one-pixel ranges), and region + points pairs (shapes version 2) moved by their point pairs.

    python tools/make_golden.py            # writes tests/js/golden/*.json
    python tools/make_golden.py --check    # exit 1 if the files differ from what the core gives now

tests/js/golden.test.mjs (node --test) checks the JS against these files point for point;
tests/test_golden.py checks the files against the core (so a change in Python is caught too).
Uses regiondrag_core only (numpy, OpenCV).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from regiondrag_core import mapping  # noqa: E402
from regiondrag_core.masks import RegionPair, pairs_from_shapes  # noqa: E402
from regiondrag_core.shapes import parse_shapes  # noqa: E402

GOLDEN_DIR = os.path.join(REPO, "tests", "js", "golden")
TIE_EPS = 1e-6  # a transformed coordinate this close to a .5 tie may round either way


def poly(*pts):
    return {"type": "polygon", "points": [list(p) for p in pts]}


def brush(*strokes):
    return {"type": "brush", "strokes": [{"size": s, "points": [list(p) for p in pts]} for s, pts in strokes]}


# (name, (H, W), handle, target)
SHAPE_CASES = [
    ("quad-perspective", (48, 64), poly((6, 8), (28, 6), (30, 30), (4, 26)),
     poly((36, 10), (60, 14), (58, 40), (38, 36))),
    ("quad-perspective-fractional", (37, 53), poly((3.25, 4.5), (20.75, 3.1), (22.4, 25.6), (2.6, 21.3)),
     poly((27.3, 6.8), (50.2, 9.9), (48.7, 33.4), (29.1, 30.05))),
    ("triangle-affine", (40, 40), poly((4, 4), (18, 6), (8, 20)), poly((22, 18), (36, 22), (26, 36))),
    ("triangle-affine-scaled", (48, 64), poly((2, 2), (12, 2), (2, 12)), poly((30, 10), (60, 10), (30, 40))),
    ("quad-to-pentagon-algorithm1", (48, 64), poly((6, 8), (28, 6), (30, 30), (4, 26)),
     poly((36, 10), (58, 12), (62, 26), (52, 42), (38, 36))),
    ("concave-quads-algorithm1", (48, 64), poly((4, 4), (28, 4), (14, 14), (4, 30)),
     poly((34, 6), (60, 8), (46, 20), (36, 40))),
    ("hexagon-to-triangle-algorithm1", (64, 96), poly((10, 20), (20, 8), (36, 8), (44, 20), (36, 34), (20, 34)),
     poly((60, 10), (90, 40), (52, 54))),
    ("brush-pair", (48, 64), brush((9, [(8, 10), (20, 24), (12, 36)])), brush((7, [(40, 8), (52, 30), (44, 42)]))),
    ("brush-even-sizes-two-strokes", (48, 64), brush((10, [(6, 10), (26, 12)]), (6, [(10, 30)])),
     brush((12, [(36, 20), (56, 22)]))),
    ("brush-ring-with-holes", (64, 64), brush((5, [(10, 10), (30, 10), (30, 30), (10, 30), (10, 10)])),
     brush((9, [(40, 36), (58, 54)]))),
    ("brush-two-blobs-gap", (48, 96), brush((9, [(10, 20)]), (9, [(40, 22)])), brush((11, [(60, 10), (86, 36)]))),
    ("polygon-handle-brush-target", (48, 64), poly((4, 6), (24, 4), (26, 26), (8, 30)),
     brush((9, [(40, 10), (54, 36)]))),
    ("thin-target-one-column", (32, 32), poly((4, 4), (14, 4), (14, 14), (4, 14)), brush((1, [(24, 4), (24, 20)]))),
    ("brush-fractional-partly-outside", (96, 128), brush((15.5, [(-6.3, 10.7), (20.25, 33.5), (41.6, 30.1)])),
     brush((15.5, [(70.4, 60.2), (96.7, 88.9), (131.2, 99.3)]))),
    ("brush-sizes-1-2-3", (40, 48), brush((1, [(4, 4), (20, 9)]), (2, [(6, 20), (22, 26)]), (3, [(8, 32)])),
     brush((3, [(30, 6), (44, 30)]), (2.5, [(34, 34)]))),
    ("big-polygons-fractional", (128, 192), poly((10.4, 12.2), (80.9, 8.6), (90.3, 70.7), (50.5, 110.1), (6.6, 90.9)),
     poly((110.2, 20.3), (186.6, 30.4), (170.1, 120.8), (100.7, 100.2))),
    ("partly-outside-image", (40, 48), poly((-6, -4), (16, -2), (18, 20), (-4, 18)),
     poly((30, 20), (56, 24), (52, 50), (28, 44))),
    ("fractional-partly-outside-image", (40, 48), poly((-6.3, -4.7), (16.45, -2.2), (18.9, 20.6), (-4.1, 18.35)),
     poly((30.2, 20.7), (56.6, 24.1), (52.3, 50.9), (28.45, 44.2))),
    ("brush-thin-fractional-partly-outside", (40, 48),
     brush((1, [(3.3, 4.7), (20.6, 9.2), (-3.4, 30.1)]), (1.5, [(30.2, 2.7), (44.9, 35.4)])),
     brush((1, [(25.55, 20.15), (50.3, 38.8)]))),
]


# Region + points (shapes version 2): (name, (H, W), handle, [(handle point, target point), ...]).
# The map is regiondrag_core.points.map_region_points through mapping.map_pair at factor 1.
def _ring(cx, cy, r, n):
    import math
    return [(round(cx + r * math.cos(2 * math.pi * k / n), 2), round(cy + r * math.sin(2 * math.pi * k / n), 2))
            for k in range(n + 1)]


POINTS_CASES = [
    ("points-one-pair-translation", (48, 64), poly((8, 10), (30, 8), (32, 30), (6, 28)), [((18, 18), (40, 24))]),
    ("points-three-pairs-polygon", (64, 80), poly((10, 12), (44, 10), (50, 40), (30, 52), (8, 36)),
     [((14, 16), (20, 10)), ((42, 14), (60, 20)), ((28, 46), (34, 58))]),
    ("points-fractional-coords", (40, 56), poly((5.3, 6.7), (30.25, 4.5), (28.6, 30.1), (7.5, 26.5)),
     [((12.5, 12.49), (30.5, 20.5)), ((24.51, 22.5), (40.49, 30.5))]),
    ("points-brush-two-parts-one-idle", (48, 96), brush((11, [(14, 20), (24, 26)]), (9, [(70, 20)])),
     [((16, 21), (30, 30))]),
    ("points-brush-two-parts-both-move", (48, 96), brush((11, [(14, 20), (24, 26)]), (13, [(70, 24)])),
     [((16, 21), (26, 12)), ((22, 25), (30, 20)), ((70, 24), (50, 30))]),
    ("points-ring-hole-filled", (64, 64), brush((5, _ring(30, 30, 14, 24))), [((16, 30), (22, 34)), ((44, 30), (48, 26))]),
    ("points-partly-off-image", (40, 48), poly((-6, -4), (20, -2), (22, 20), (-4, 18)),
     [((2, 2), (8, 2)), ((16, 14), (24, 10)), ((2, 14), (2, 20))]),
    ("points-symmetric-ties", (64, 64), poly((12, 12), (52, 12), (52, 52), (12, 52)),
     [((20, 20), (22, 18)), ((44, 20), (46, 24)), ((20, 44), (16, 46)), ((44, 44), (42, 40)), ((32, 32), (33, 35))]),
    ("points-many-pixels-8-pairs", (96, 128), poly((10, 14), (90, 8), (110, 60), (60, 86), (14, 70)),
     [((20, 20), (26, 16)), ((80, 14), (90, 10)), ((100, 56), (110, 62)), ((60, 80), (58, 90)),
      ((20, 64), (12, 70)), ((50, 40), (60, 44)), ((70, 50), (76, 48)), ((40, 60), (44, 66))]),
    ("points-32-pairs", (64, 96), poly((6, 6), (88, 6), (88, 56), (6, 56)),
     [((10 + 10 * (k % 8), 10 + 12 * (k // 8)), (12 + 10 * (k % 8) + (k % 3), 8 + 12 * (k // 8) + (k % 5)))
      for k in range(32)]),
]


def _mask_cases():
    """Masks no shape draws: Algorithm 1's choices for gaps, holes and one-pixel ranges."""
    rng = np.random.default_rng(14)
    out = []
    H, W = 40, 48
    h = np.zeros((H, W), bool)
    h[5:20, 4:10] = True
    h[8:30, 16:20] = True  # columns 10..15 empty: nearest full column
    h[12:14, 16:20] = False  # a hole inside columns 16..19
    t = np.zeros((H, W), bool)
    t[10:35, 26:44] = True
    out.append(("mask-gaps-and-holes", h, t))
    h = rng.random((H, W)) < 0.35
    h[:, :5] = False
    t = np.zeros((H, W), bool)
    t[20:38, 30:46] = rng.random((18, 16)) < 0.8
    out.append(("mask-random-speckle", h, t))
    h = np.zeros((H, W), bool)
    h[10, 5:30] = True  # one row tall
    t = np.zeros((H, W), bool)
    t[5:35, 40] = True  # one column wide
    out.append(("mask-one-pixel-ranges", h, t))
    return out


def _flat(mask):
    return np.flatnonzero(mask).astype(int).tolist()


def _map_entry(pair, size):
    H, W = size
    hxy, txy, hm, tm = mapping.map_pair(pair, 1)
    hp, tp = pair.handle_polygon, pair.target_polygon
    method = "algorithm1"
    ambiguous = []
    if mapping._uses_transform(hp, tp) and np.array_equal(hm, pair.handle) and np.array_equal(tm, pair.target):
        method = "affine" if len(tp) == 3 else "perspective"
        u, v = mapping._transform_points(hp, tp, txy[:, 0], txy[:, 1])
        tie = (np.abs(np.abs(u - np.floor(u)) - 0.5) < TIE_EPS) | (np.abs(np.abs(v - np.floor(v)) - 0.5) < TIE_EPS)
        ambiguous = np.flatnonzero(tie).astype(int).tolist()
    return {
        "method": method,
        "handle_mask": _flat(pair.handle),
        "target_mask": _flat(pair.target),
        "map": {"target": (txy[:, 1] * W + txy[:, 0]).astype(int).tolist(),
                "handle": (hxy[:, 1] * W + hxy[:, 0]).astype(int).tolist()},
        "ambiguous": ambiguous,
    }


def _points_entry(pair, size):
    H, W = size
    hxy, txy, part, region = mapping.map_pair(pair, 1)
    return {
        "method": "points",
        "handle_mask": _flat(pair.handle),
        "part": _flat(part),
        "region": _flat(region),
        "map": {"target": (txy[:, 1] * W + txy[:, 0]).astype(int).tolist(),
                "handle": (hxy[:, 1] * W + hxy[:, 0]).astype(int).tolist()},
    }


def build() -> dict:
    """File name -> JSON-able content."""
    shapes = []
    for name, (H, W), hs, ts in SHAPE_CASES:
        text = json.dumps({"version": 1, "width": W, "height": H, "pairs": [{"handle": hs, "target": ts}]})
        (pair,) = pairs_from_shapes(parse_shapes(text), (H, W))
        shapes.append({"name": name, "size": [H, W], "shapes": text, **_map_entry(pair, (H, W))})
    masks = []
    for name, h, t in _mask_cases():
        H, W = h.shape
        masks.append({"name": name, "size": [H, W], **_map_entry(RegionPair(handle=h, target=t), (H, W))})
    points = []
    for name, (H, W), hs, pts in POINTS_CASES:
        doc = {"version": 2, "width": W, "height": H,
               "pairs": [{"handle": hs, "points": [{"handle": list(a), "target": list(b)} for a, b in pts]}]}
        text = json.dumps(doc)
        (pair,) = pairs_from_shapes(parse_shapes(text), (H, W))
        points.append({"name": name, "size": [H, W], "shapes": text, **_points_entry(pair, (H, W))})
    header = ("Written by tools/make_golden.py from regiondrag_core; do not edit. Masks and maps are flat "
              "pixel indices y * W + x; map[i]: target pixel -> handle pixel (regiondrag_core.mapping.map_pair). "
              "'ambiguous': map rows whose transformed coordinate is a .5 tie (either rounding is right).")
    points_header = ("Written by tools/make_golden.py from regiondrag_core; do not edit. Region + points pairs "
                     "(shapes version 2) at image resolution: the rasterised handle region, map[i]: target pixel -> "
                     "handle pixel (regiondrag_core.mapping.map_pair -> points.map_region_points, rows in its "
                     "order), 'part' the moved parts of the region, 'region' the target pixels; flat indices "
                     "y * W + x.")
    return {"shapes.json": {"about": header, "cases": shapes}, "masks.json": {"about": header, "cases": masks},
            "points.json": {"about": points_header, "cases": points}}


def render(content) -> str:
    return json.dumps(content, separators=(",", ":")) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    args = ap.parse_args(argv)
    logging.getLogger("regiondrag_core.masks").setLevel(logging.ERROR)  # "parts hold no handle point": intended
    files = build()
    stale = []
    for name, content in files.items():
        path = os.path.join(GOLDEN_DIR, name)
        text = render(content)
        if args.check:
            try:
                with open(path) as f:
                    same = f.read() == text
            except OSError:
                same = False
            if not same:
                stale.append(path)
        else:
            os.makedirs(GOLDEN_DIR, exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
            print(f"wrote {path} ({len(content['cases'])} cases)")
    for p in stale:
        print(f"stale: {p} (run python tools/make_golden.py)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
