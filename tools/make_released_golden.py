"""Write tests/golden/released_points.json: what the authors' released RegionDrag code computes for the
region + points mode, on region masks and point pairs made here, so tests/test_points.py can pin
regiondrag_core.points against it.

The released functions are imported from a checkout (work tree) of github.com/Visual-AI/RegionDrag,
never copied into the pack:

    git --git-dir=<mirror of Visual-AI/RegionDrag> archive HEAD | tar -x -C /tmp/released
    python tools/make_released_golden.py /tmp/released --commit <its commit id>

It runs ``region_utils.ui_utils.region_to_points`` (with its ``interpolate_points``) at scale 1 and
``region_utils.drag.get_border_points``. Needs numpy, OpenCV and torch (the released code computes the
weighting with torch in float16; run it on the CPU so the file does not depend on a GPU). The modules
those files import for other purposes (gradio, diffusers via cycle_sde, huggingface_hub, InstantDrag,
tqdm) are replaced by empty stand-ins, and drag.py's import-time side effects (it creates
``instantdrag/utils/__init__.py`` and ``checkpoints/`` in the working directory and would download
InstantDrag's weights) run in a temporary directory against the stand-ins.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import types

import cv2
import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "tests", "golden", "released_points.json")
MAX_BYTES = 300_000


# ------------------------------------------------------------------------ the released code


class _Inert:
    """Stands in for any class or object of a stubbed module."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return None


def _stub(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def load_released(checkout: str):
    """``(region_to_points, get_border_points)`` imported from the released ``region_utils``."""
    if not os.path.isfile(os.path.join(checkout, "region_utils", "ui_utils.py")):
        raise SystemExit(f"{checkout}: no region_utils/ui_utils.py; pass a work tree of Visual-AI/RegionDrag")
    # ui_utils evaluates gr.Progress() and gr.SelectData at import time.
    _stub("gradio", **{n: _Inert for n in ("Image", "Warning", "Info", "Progress", "SelectData")})
    try:
        importlib.import_module("tqdm")
    except ImportError:
        _stub("tqdm", tqdm=lambda it, *a, **k: it)
    _stub("huggingface_hub", snapshot_download=lambda *a, **k: None)
    _stub("instantdrag")
    _stub("instantdrag.demo")
    _stub("instantdrag.demo.demo_utils", InstantDragPipeline=_Inert)
    sys.path.insert(0, os.path.abspath(checkout))
    importlib.import_module("region_utils")
    _stub("region_utils.cycle_sde", Sampler=_Inert, get_img_latent=None, get_text_embed=None,
          load_model=None, set_seed=None)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        os.makedirs(os.path.join("instantdrag", "utils"))
        try:
            drag = importlib.import_module("region_utils.drag")
            ui_utils = importlib.import_module("region_utils.ui_utils")
        finally:
            os.chdir(cwd)
    return ui_utils.region_to_points, drag.get_border_points


# ------------------------------------------------------------------------------ our cases


def _poly(size, *polys):
    m = np.zeros(size, np.uint8)
    cv2.fillPoly(m, [np.array(p, np.int32) for p in polys], 1)
    return m


def _discs(size, *discs):
    m = np.zeros(size, np.uint8)
    for x, y, r in discs:
        cv2.circle(m, (x, y), r, 1, -1)
    return m


def _ring(size):
    m = _discs(size, (48, 46, 30))
    cv2.circle(m, (50, 44), 12, 0, -1)
    return m


def _stroke(size):
    m = np.zeros(size, np.uint8)
    cv2.polylines(m, [np.array([(6, 30), (20, 8), (40, 26), (58, 10)], np.int32)], False, 1, 2)
    return m


def _rotation(cx, cy, deg, pts):
    a = np.deg2rad(deg)
    out = []
    for x, y in pts:
        dx, dy = x - cx, y - cy
        out.append((x, y, int(round(cx + dx * np.cos(a) - dy * np.sin(a))),
                    int(round(cy + dx * np.sin(a) + dy * np.cos(a)))))
    return out


# (name, mask uint8 [H, W], point pairs (hx, hy, tx, ty)); coordinates are pixels (ints), as the
# released UI records clicks.
CASES = [
    ("rect-one-pair", _poly((48, 64), [(8, 8), (30, 8), (30, 24), (8, 24)]), [(12, 12, 30, 20)]),
    ("rect-two-pairs-stretch", _poly((64, 96), [(10, 10), (40, 10), (40, 40), (10, 40)]),
     [(12, 12, 8, 8), (38, 38, 60, 56)]),
    ("l-shape-three-pairs", _poly((96, 96), [(10, 10), (30, 10), (30, 50), (70, 50), (70, 70), (10, 70)]),
     [(20, 20, 26, 14), (20, 60, 30, 66), (64, 60, 84, 44)]),
    ("star-five-pairs", _poly((128, 128), [(64, 8), (76, 48), (118, 50), (84, 74), (96, 116), (64, 92),
                                           (32, 116), (44, 74), (10, 50), (52, 48)]),
     [(64, 16, 64, 4), (110, 52, 122, 44), (92, 110, 100, 124), (36, 110, 26, 120), (64, 64, 70, 70)]),
    ("ring-hole-filled", _ring((96, 96)), [(24, 46, 30, 40), (72, 46, 84, 52)]),
    ("two-blobs-and-a-bare-one", _discs((80, 128), (20, 20, 12), (64, 40, 14), (108, 60, 10)),
     [(20, 20, 30, 30), (16, 26, 26, 38), (64, 40, 56, 56)]),
    ("edge-pushed-out", _poly((64, 64), [(0, 0), (30, 0), (30, 20), (0, 20)]),
     [(2, 2, 0, 0), (28, 18, 44, 40), (28, 2, 62, 1)]),
    ("many-pairs-rotation", _poly((128, 128), [(14, 34), (66, 34), (66, 66), (14, 66)]),
     _rotation(40, 50, 20, [(x, y) for x in (16, 28, 40, 52, 64) for y in (36, 50, 64)][:12])),
    ("duplicate-handle-point", _poly((48, 48), [(10, 10), (30, 12), (28, 34), (8, 30)]),
     [(18, 20, 26, 20), (18, 20, 18, 30), (28, 14, 32, 10)]),
    ("thin-stroke", _stroke((40, 64)), [(20, 8, 22, 16), (40, 26, 44, 34), (58, 10, 60, 4)]),
    ("latent-size-blob", _discs((64, 64), (30, 34, 14), (44, 22, 8)),
     [(30, 34, 36, 30), (44, 22, 56, 12), (18, 40, 12, 50), (50, 18, 62, 8)]),
    ("points-on-corners", _poly((48, 64), [(6, 6), (40, 6), (40, 30), (6, 30)]),
     [(6, 6, 2, 10), (40, 6, 50, 4), (40, 30, 44, 40), (6, 30, 8, 44)]),
]


def _runs(mask: np.ndarray) -> list:
    """Rows of ``[y, x0, x1]``: pixels x0 <= x < x1 of row y are in the mask."""
    out = []
    for y in range(mask.shape[0]):
        row = np.concatenate([[0], mask[y].astype(np.int8), [0]])
        d = np.diff(row)
        for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)):
            out.append([y, int(a), int(b)])
    return out


def _flat(xy: np.ndarray, W: int) -> list:
    xy = np.asarray(xy, np.int64)
    return (xy[:, 1] * W + xy[:, 0]).astype(int).tolist()


def build(region_to_points, get_border_points, commit: str) -> dict:
    cases, borders = [], []
    for name, mask, pairs in CASES:
        H, W = mask.shape
        clicks = [p for hx, hy, tx, ty in pairs for p in ((hx, hy), (tx, ty))]
        src, trg = region_to_points(mask.copy(), clicks)
        cases.append({"name": name, "size": [H, W], "mask": _runs(mask),
                      "pairs": [list(map(int, p)) for p in pairs],
                      "target": _flat(trg, W), "handle": _flat(src, W)})
        if len(trg):
            borders.append({"name": f"{name}: target points", "of": name, "size": [H, W],
                            "border": np.asarray(get_border_points(np.asarray(trg)), np.int64).tolist()})
    for name, mask, _ in CASES[:4]:
        pts = np.column_stack(np.nonzero(mask))[:, ::-1]
        borders.append({"name": f"{name}: handle region", "mask_of": name, "size": list(mask.shape),
                        "border": np.asarray(get_border_points(pts), np.int64).tolist()})
    return {
        "about": ("Written by tools/make_released_golden.py from the released RegionDrag code; do not edit. "
                  "cases: region_utils.ui_utils.region_to_points(mask, clicks) at scale 1, mask as row runs "
                  "[y, x0, x1) and pairs [hx, hy, tx, ty]; 'target'/'handle' are its two outputs' rows as flat "
                  "pixel indices y * W + x (row i: target pixel <- handle pixel). borders: "
                  "region_utils.drag.get_border_points of a case's released target points ('of') or of its "
                  "handle mask's pixels ('mask_of'), as [x, y] rows."),
        "released": {"repository": "https://github.com/Visual-AI/RegionDrag", "commit": commit,
                     "torch": torch.__version__, "device": "cpu", "dtype": "float16"},
        "cases": cases,
        "borders": borders,
    }


def render(content) -> str:
    return json.dumps(content, separators=(",", ":")) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkout", help="work tree of github.com/Visual-AI/RegionDrag (e.g. /tmp/released)")
    ap.add_argument("--commit", default="unknown", help="the checkout's commit id, recorded in the file")
    ap.add_argument("--out", default=OUT, help=f"output file (default {os.path.relpath(OUT, REPO)})")
    args = ap.parse_args(argv)
    if torch.cuda.is_available():  # the released interpolate_points takes CUDA whenever it is there
        raise SystemExit("run with CUDA_VISIBLE_DEVICES= : the golden file is made on the CPU")
    text = render(build(*load_released(args.checkout), commit=args.commit))
    if len(text) > MAX_BYTES:
        raise SystemExit(f"{len(text):,} bytes; keep the file under {MAX_BYTES:,} (fewer or smaller cases)")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(f"wrote {args.out} ({len(text):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
