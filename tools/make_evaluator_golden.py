"""Write tests/golden/released_evaluator.json: what the authors' released evaluator
(``region_utils/evaluator.py`` of github.com/Visual-AI/RegionDrag) computes on inputs made here, so
tests/test_dragbench_core.py can pin ``regiondrag_core.dragbench`` against it bit for bit.

As tools/make_released_golden.py, the released code is imported from a checkout (work tree), never
copied into the pack:

    git --git-dir=<mirror of Visual-AI/RegionDrag> archive HEAD | tar -x -C /tmp/released
    python tools/make_evaluator_golden.py /tmp/released --commit <its commit id>

What it records:

* ``cases``: ``create_mask(src, trg, (H, W))`` (as packed bits) and ``nn_get_matches(src_feat, trg_feat,
  src, l2_norm, mask or None)`` on [1, C, H, W] float32 feature maps from :func:`features` (integer hashes,
  so every machine builds the same floats; their SHA-256 is recorded too): several N, drags shorter and
  longer than the 5 px radius clamp, one exactly at a pixel distance, points on the borders, cosine and
  dot product, with and without the mask, features with many ties, fractional points.
* ``distances``: ``DragEvaluator().compute_distance(src_image, trg_image, src, trg, method='sd')`` with only
  the model stood in: ``load_sd`` does nothing and ``encode_image`` returns the case's feature maps
  (original, then edited) after recording the image tensor it was given (the released
  ``preprocess_image`` + 768x768 nearest resize, float16: its SHA-256); the matches are recorded by a
  wrapper around the released ``nn_get_matches``. Images come from :func:`picture`.

The evaluator's other imports (matplotlib, lpips, diffusers, transformers) are empty stand-ins; run on
the CPU.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import sys
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_released_golden import REPO, _Inert, _stub, _write, render  # noqa: E402

OUT = os.path.join(REPO, "tests", "golden", "released_evaluator.json")
MAX_BYTES = 60_000
DIFT_SIZE = 768


def load_evaluator(checkout: str) -> types.ModuleType:
    """The released ``region_utils.evaluator`` (its model and plotting imports are stand-ins)."""
    if not os.path.isfile(os.path.join(checkout, "region_utils", "evaluator.py")):
        raise SystemExit(f"{checkout}: no region_utils/evaluator.py; pass a work tree of Visual-AI/RegionDrag")
    try:
        importlib.import_module("matplotlib.pyplot")
    except ImportError:
        _stub("matplotlib", pyplot=_stub("matplotlib.pyplot"))
    _stub("lpips", LPIPS=_Inert)
    _stub("diffusers", StableDiffusionPipeline=_Inert)
    _stub("transformers", AutoModel=_Inert)
    sys.path.insert(0, os.path.abspath(checkout))
    return importlib.import_module("region_utils.evaluator")


# ------------------------------------------------------------------------------- inputs

FEATURES = ("splitmix64(seed * 2**32 + i) for i = 0 .. C*H*W-1 (uint64 wrapping), k = value % levels - "
            "levels // 2, feature = float32(k) / float32(levels // 2), reshaped to [1, C, H, W] (C, H, W order)")
PICTURE = "uint8 (x * 7 + y * 13 + c * 29 + seed * 31) % 256 at [y, x, c], H x W x 3"


def features(seed: int, c: int, h: int, w: int, levels: int = 2001) -> torch.Tensor:
    """Deterministic float32 [1, c, h, w] values k / (levels // 2), k in -levels//2 .. levels//2 (exact)."""
    z = np.arange(c * h * w, dtype=np.uint64) + np.uint64(seed) * np.uint64(1 << 32)
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    k = (z % np.uint64(levels)).astype(np.int64) - levels // 2
    v = k.astype(np.float32) / np.float32(levels // 2)
    return torch.from_numpy(v.reshape(1, c, h, w))


def picture(seed: int, h: int, w: int) -> np.ndarray:
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    return ((x * 7 + y * 13 + c * 29 + seed * 31) % 256).astype(np.uint8)


def sha(t) -> str:
    a = t.detach().cpu().contiguous().numpy() if isinstance(t, torch.Tensor) else np.ascontiguousarray(t)
    return hashlib.sha256(a.tobytes()).hexdigest()


def packed(mask: torch.Tensor) -> str:
    return np.packbits(mask.numpy().reshape(-1)).tobytes().hex()


# (name, (H, W), C, src [[x, y]], trg [[x, y]], l2_norm, with mask, feature levels, seed)
CASES = [
    ("one pair, short drag: radius clamped to 5", (24, 32), 8, [[10, 12]], [[13, 14]], True, True, 2001, 1),
    ("three pairs, long drags: radius above 5", (32, 32), 8, [[4, 5], [20, 8], [16, 28]],
     [[26, 20], [6, 25], [30, 2]], True, True, 2001, 2),
    ("points on the borders", (20, 28), 6, [[0, 0], [27, 19], [0, 19], [27, 0]],
     [[5, 3], [20, 19], [0, 10], [27, 11]], True, True, 2001, 3),
    ("radius 7 exactly (drag (7, 7)): pixels at distance 7 are out", (24, 24), 4, [[10, 10], [2, 3]],
     [[17, 17], [9, 10]], True, True, 2001, 4),
    ("dot product (l2_norm False), masked", (24, 32), 8, [[10, 12], [25, 3]], [[18, 16], [20, 9]],
     False, True, 2001, 5),
    ("cosine, no mask", (24, 32), 8, [[10, 12], [25, 3], [0, 23]], [[18, 16], [20, 9], [6, 20]],
     True, False, 2001, 6),
    ("dot product, no mask", (16, 20), 8, [[3, 4], [19, 15]], [[9, 9], [11, 2]], False, False, 2001, 7),
    ("ties: features in {-1, 0, 1}, cosine, masked", (16, 16), 2, [[5, 5], [10, 3], [15, 15]],
     [[8, 9], [3, 3], [9, 12]], True, True, 3, 8),
    ("ties: features in {-1, 0, 1}, dot product, no mask", (16, 16), 2, [[5, 5], [10, 3]],
     [[8, 9], [3, 3]], False, False, 3, 9),
    ("eight pairs, wide image", (18, 40), 8,
     [[2, 2], [8, 15], [14, 6], [20, 11], [26, 1], [31, 17], [35, 8], [39, 12]],
     [[6, 9], [15, 13], [13, 0], [28, 14], [24, 8], [38, 17], [30, 3], [33, 16]], True, True, 2001, 10),
    ("fractional points (create_mask as float; queries truncated)", (20, 24), 6, [[5.75, 9.25], [12.5, 3.9]],
     [[10.5, 14.0], [20.2, 3.1]], True, True, 2001, 11),
]

# (name, image (H, W), feature map (C, h, w), src [[x, y]], trg [[x, y]], seed)
DISTANCES = [
    ("40x56 image, 12x16 features, one point", (40, 56), (8, 12, 16), [[20, 18]], [[30, 22]], 21),
    ("64x64 image, 16x16 features, three points", (64, 64), (8, 16, 16), [[10, 12], [40, 50], [60, 3]],
     [[18, 20], [30, 44], [52, 10]], 22),
    ("37x50 image, 10x12 features, four points near the borders", (37, 50), (6, 10, 12),
     [[0, 0], [49, 36], [0, 36], [49, 0]], [[6, 4], [40, 30], [3, 29], [44, 7]], 23),
]


# ------------------------------------------------------------------------------ the runs


def build_cases(ev) -> list:
    out = []
    for name, (H, W), C, src, trg, l2, use_mask, levels, seed in CASES:
        dtype = torch.float32 if any(isinstance(v, float) for p in src + trg for v in p) else torch.int64
        s, t = torch.tensor(src, dtype=dtype), torch.tensor(trg, dtype=dtype)
        fs, ft = features(2 * seed, C, H, W, levels), features(2 * seed + 1, C, H, W, levels)
        mask = ev.create_mask(s, t, (H, W))
        matches = ev.nn_get_matches(fs, ft, s, l2_norm=l2, mask=mask if use_mask else None)
        out.append({"name": name, "size": [H, W], "channels": C, "levels": levels,
                    "src_seed": 2 * seed, "trg_seed": 2 * seed + 1, "src_sha256": sha(fs), "trg_sha256": sha(ft),
                    "src": src, "trg": trg, "points_dtype": str(dtype).replace("torch.", ""),
                    "l2_norm": l2, "use_mask": use_mask,
                    "mask_shape": list(mask.shape), "mask_bits": packed(mask), "mask_count": int(mask.sum()),
                    "matches": matches.tolist()})
    return out


def build_distances(ev) -> list:
    out = []
    for name, (H, W), (C, h, w), src, trg, seed in DISTANCES:
        fs, ft = features(100 + 2 * seed, C, h, w), features(101 + 2 * seed, C, h, w)
        src_image, trg_image = picture(seed, H, W), picture(seed + 1, H, W)
        seen, matches = [], []

        def encode_image(image, method, prompt=None):
            seen.append(image.clone())
            return (fs, ft)[len(seen) - 1]

        nn_released = ev.nn_get_matches

        def nn_get_matches(*args, **kwargs):
            m = nn_released(*args, **kwargs)
            matches.append(m.clone())
            return m

        evaluator = ev.DragEvaluator()
        evaluator.device = "cpu"
        evaluator.load_sd = lambda: None
        evaluator.encode_image = encode_image
        ev.nn_get_matches = nn_get_matches
        try:
            md = evaluator.compute_distance(src_image, trg_image, src, trg, method="sd", prompt="a prompt")
        finally:
            ev.nn_get_matches = nn_released
        assert len(seen) == 2 and len(matches) == 1
        assert tuple(seen[0].shape) == (1, 3, DIFT_SIZE, DIFT_SIZE) and seen[0].dtype == torch.float16
        out.append({"name": name, "size": [H, W], "features": [C, h, w], "src_seed": 100 + 2 * seed,
                    "trg_seed": 101 + 2 * seed, "src_sha256": sha(fs), "trg_sha256": sha(ft),
                    "picture_seed": seed, "src": src, "trg": trg, "md": md, "matches": matches[0].tolist(),
                    "dift_input_sha256": [sha(seen[0]), sha(seen[1])],
                    "picture_sha256": [sha(src_image), sha(trg_image)]})
    return out


def build(ev, commit: str) -> dict:
    return {
        "about": ("Written by tools/make_evaluator_golden.py from the released RegionDrag evaluator "
                  "(region_utils/evaluator.py); do not edit. cases: create_mask(src, trg, (H, W)) as "
                  "np.packbits(mask.reshape(-1)).hex() of the bool [N, H, W] mask, and nn_get_matches(src_feat, "
                  "trg_feat, src, l2_norm, mask if use_mask else None) as float [x, y] rows; points are tensors of "
                  "points_dtype. distances: DragEvaluator.compute_distance(src_image, trg_image, src, trg, "
                  "method='sd') with encode_image returning the features (original, then edited): 'md' its "
                  "return value, 'matches' its nn_get_matches output, 'dift_input_sha256' the SHA-256 of the "
                  "float16 [1, 3, 768, 768] image tensors it passed to encode_image. Features: see 'features' "
                  "(sha256 of the float32 bytes); pictures: see 'picture'."),
        "released": {"repository": "https://github.com/Visual-AI/RegionDrag", "commit": commit,
                     "file": "region_utils/evaluator.py", "torch": torch.__version__, "numpy": np.__version__,
                     "device": "cpu"},
        "features": FEATURES,
        "picture": PICTURE,
        "dift_size": DIFT_SIZE,
        "cases": build_cases(ev),
        "distances": build_distances(ev),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkout", help="work tree of github.com/Visual-AI/RegionDrag (e.g. /tmp/released)")
    ap.add_argument("--commit", default="unknown", help="the checkout's commit id, recorded in the file")
    ap.add_argument("--out", default=OUT, help=f"output (default {os.path.relpath(OUT, REPO)})")
    args = ap.parse_args(argv)
    if torch.cuda.is_available():  # DragEvaluator takes CUDA whenever it is there
        raise SystemExit("run with CUDA_VISIBLE_DEVICES= : the golden file is made on the CPU")
    _write(args.out, render(build(load_evaluator(args.checkout), commit=args.commit)), MAX_BYTES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
