"""Time the region-to-point mapping on a 512x512 pair with about 50,000 target pixels.

Usage: python scripts/bench_mapping.py [--runs 21]
Prints the median wall time of each function (after warm-up runs).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from regiondrag_core.mapping import build_drag_map, map_polygon_pair, map_region_pair, preview_image  # noqa: E402
from regiondrag_core.masks import RegionPair  # noqa: E402
from regiondrag_core.raster import rasterize_polygon  # noqa: E402

SIZE = (512, 512)


def median_ms(fn, runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21)
    args = ap.parse_args()

    yy, xx = np.mgrid[:SIZE[0], :SIZE[1]]
    # Brush-like regions: an ellipse with a hole dragged onto a larger wobbly blob.
    handle = ((xx - 170) / 110.0) ** 2 + ((yy - 190) / 90.0) ** 2 <= 1
    handle &= (xx - 150) ** 2 + (yy - 200) ** 2 > 20 ** 2
    r = 126 + 8 * np.sin(6 * np.arctan2(yy - 320, xx - 320))
    target = (xx - 320) ** 2 + (yy - 320) ** 2 <= r ** 2
    # Quadrilaterals for the perspective map, target about 50k pixels.
    hq = np.array([[40.0, 60.0], [230.0, 40.0], [250.0, 240.0], [30.0, 210.0]])
    tq = np.array([[250.0, 230.0], [490.0, 260.0], [470.0, 480.0], [260.0, 470.0]])
    ht = hq[:3]
    tt = np.array([[200.0, 180.0], [500.0, 250.0], [260.0, 500.0]])

    rows = [
        ("map_region_pair (Algorithm 1)", int(target.sum()), lambda: map_region_pair(handle, target)),
        ("map_polygon_pair (4 vertices, perspective)", int(rasterize_polygon(tq, SIZE).sum()),
         lambda: map_polygon_pair(hq, tq, size=SIZE)),
        ("map_polygon_pair (3 vertices, affine)", int(rasterize_polygon(tt, SIZE).sum()),
         lambda: map_polygon_pair(ht, tt, size=SIZE)),
    ]
    pairs = [RegionPair(handle, target),
             RegionPair(rasterize_polygon(hq, SIZE), rasterize_polygon(tq, SIZE), hq, tq)]
    image = np.random.default_rng(0).random((*SIZE, 3), dtype=np.float32)
    rows += [
        ("build_drag_map (2 pairs -> 64x64 latent)", None, lambda: build_drag_map(pairs, SIZE, (64, 64))),
        ("preview_image (2 pairs, 512x512)", None, lambda: preview_image(image, pairs)),
    ]
    out = sys.stdout
    out.write(f"512x512, median of {args.runs} runs after warm-up\n")
    for name, n, fn in rows:
        ms = median_ms(fn, args.runs)
        npx = f"{n:>6d} target px" if n is not None else " " * 16
        out.write(f"  {name:<45s} {npx}  {ms:7.2f} ms\n")


if __name__ == "__main__":
    main()
