"""Write a small synthetic DragBench (DragBench-SR/DR folder layout and file format) for tests and smoke runs.

Usage: python scripts/make_dragbench.py OUT [--sr 4] [--dr 4] [--size 64] [--seed 0]

Writes ``OUT/dragbench-sr/sample_<i>/`` and ``OUT/dragbench-dr/<category>/sample_<i>/``, each with
``original_image.png``, ``meta_data_region.pkl`` (dense region pairs) and ``meta_data.pkl`` (sparse scoring
pairs), as ``regiondrag_core.dragbench.make_synthetic_set`` describes. The same seed writes the same files.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from regiondrag_core.dragbench import make_synthetic_set, read_sample  # noqa: E402
from regiondrag_core.errors import RegionDragInputError  # noqa: E402

log = logging.getLogger("RegionDrag.make_dragbench")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder to write into (created; existing samples are overwritten)")
    ap.add_argument("--sr", type=int, default=4, help="DragBench-SR samples (default 4)")
    ap.add_argument("--dr", type=int, default=4, help="DragBench-DR samples, spread over the categories (default 4)")
    ap.add_argument("--categories", default="animals,art_work,other_objects",
                    help="comma-separated DragBench-DR category folders (default animals,art_work,other_objects)")
    ap.add_argument("--size", type=int, default=64, help="image side in px (default 64)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.sr < 0 or args.dr < 0:
        ap.error("--sr and --dr must be >= 0")
    categories = tuple(c.strip() for c in args.categories.split(",") if c.strip())
    try:
        folders = make_synthetic_set(args.out, n_sr=args.sr, n_dr=args.dr, categories=categories,
                                     size=args.size, seed=args.seed)
    except RegionDragInputError as e:
        ap.error(str(e))
    for folder in folders:
        s = read_sample(folder, args.out)
        log.info("%s: %d dense pairs, %d scoring pairs, %d px editable, '%s'", s.name, len(s.drag), len(s.score),
                 int(s.mask.sum()), s.prompt)
    log.info("wrote %d samples under %s", len(folders), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
