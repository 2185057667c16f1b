"""Write tests/golden/released_points.json and tests/golden/released_backward.json: what the authors'
released RegionDrag code computes, on inputs made here, so the pack's tests can pin regiondrag_core
against it.

The released functions are imported from a checkout (work tree) of github.com/Visual-AI/RegionDrag,
never copied into the pack:

    git --git-dir=<mirror of Visual-AI/RegionDrag> archive HEAD | tar -x -C /tmp/released
    python tools/make_released_golden.py /tmp/released --commit <its commit id>

released_points.json (tests/test_points.py): ``region_utils.ui_utils.region_to_points`` (with its
``interpolate_points``) at scale 1 and ``region_utils.drag.get_border_points``.

released_backward.json (tests/test_released_backward.py): ``region_utils.drag.backward`` with the
"CP then Encode" settings of the released ``drag`` (``sde=False``; blur points
``cat(get_border_points(target), source)``, copy and paste points ``target``, ``latent=start_latent``)
driving the released ``region_utils.cycle_sde.Sampler``, on a [1, 4, 8, 8] float64 latent. Only the
model and the scheduler are stand-ins: a fake UNet whose noise prediction is the fixed function
:func:`toy_eps` of (latent, timestep), and a fake scheduler with SD1.5's scaled-linear
``alphas_cumprod`` (``alphas_cumprod[0]`` set to 1, so the last step lands on the clean level) and
timesteps 950, 900, ..., 0. The noise the released ``blur_source`` draws (``torch.randn_like``) comes
from a seeded generator, rounded to 4 decimals, and is recorded, as are every ``Sampler.sample`` call's
input latent and the steps on which ``copy_and_paste`` ran (each through a wrapper that then calls the
released function).

Needs numpy, OpenCV and torch (the released code computes the region + points weighting with torch in
float16; run it on the CPU so the files do not depend on a GPU). The modules those files import for
other purposes (gradio, diffusers, torchvision where it is missing, huggingface_hub, InstantDrag, tqdm)
are replaced by empty stand-ins, and drag.py's import-time side effects (it creates
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


def load_released(checkout: str) -> types.SimpleNamespace:
    """The released ``region_utils``: ``region_to_points``, ``get_border_points`` and the modules
    ``drag`` and ``cycle_sde`` (the real ones; only their unrelated imports are stand-ins)."""
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
    # cycle_sde loads Stable Diffusion through diffusers (load_model) and reads images with torchvision
    # (get_img_latent); neither runs here. Its Sampler is used as released.
    _stub("diffusers", **{n: _Inert for n in ("StableDiffusionPipeline", "StableDiffusionXLPipeline",
                                              "DPMSolverMultistepScheduler")})
    try:
        importlib.import_module("torchvision")
    except ImportError:
        _stub("torchvision", transforms=_stub("torchvision.transforms", ToTensor=_Inert))
    sys.path.insert(0, os.path.abspath(checkout))
    importlib.import_module("region_utils")
    cycle_sde = importlib.import_module("region_utils.cycle_sde")
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        os.makedirs(os.path.join("instantdrag", "utils"))
        try:
            drag = importlib.import_module("region_utils.drag")
            ui_utils = importlib.import_module("region_utils.ui_utils")
        finally:
            os.chdir(cwd)
    return types.SimpleNamespace(region_to_points=ui_utils.region_to_points,
                                 get_border_points=drag.get_border_points, drag=drag, cycle_sde=cycle_sde)


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


# ------------------------------------------------------------ the released backward ("CP then Encode")

BACKWARD_OUT = os.path.join(REPO, "tests", "golden", "released_backward.json")
BACKWARD_MAX_BYTES = 200_000
STEPS, START_T = 20, 0.5              # the released defaults: 10 denoising steps, t = 500 .. 50
LATENT_SHAPE = (1, 4, 8, 8)
EPS_W = (0.9, -0.7, 0.5, 1.1)         # toy_eps's per-channel weights
EPS_NEIGHBOUR = 0.25                  # toy_eps's weight of the neighbouring pixel's channel mean
EPS_FORMULA = ("eps[c, y, x] = tanh(w[c] * z[c, y, x] + neighbour * mean over c' of z[c', y, (x - 1) mod W] "
               "+ t / 1000), z the latent the UNet is called at, t its timestep")


def toy_eps(z: torch.Tensor, t) -> torch.Tensor:
    """The fake UNet's noise prediction (:data:`EPS_FORMULA`): per channel, per pixel, plus the channel
    mean of the pixel to the left (wrapping), so a value at the wrong place or of the wrong step shows."""
    w = torch.tensor(EPS_W, dtype=z.dtype).view(1, -1, 1, 1)
    left = torch.roll(z, shifts=1, dims=-1).mean(dim=1, keepdim=True)
    return torch.tanh(w * z + EPS_NEIGHBOUR * left + float(t) / 1000)


class _UNet:
    """The diffusers UNet call the released ``Sampler.get_eps`` makes, answered by :func:`toy_eps`."""

    def __call__(self, latent_model_input, timestep, encoder_hidden_states=None, cross_attention_kwargs=None,
                 added_cond_kwargs=None):
        return types.SimpleNamespace(sample=toy_eps(latent_model_input, timestep))


class _Scheduler:
    """What the released ``Sampler`` and ``backward`` read of a diffusers scheduler: SD1.5's scaled-linear
    schedule with ``alphas_cumprod[0] = 1`` (the step to timestep 0 lands on the clean latent, as the
    pack's last step to sigma = 0 does), timesteps ``1000 // n`` apart from 0 (steps_offset 0)."""

    def __init__(self):
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        self.alphas_cumprod[0] = 1.0
        self.timesteps = None

    def set_timesteps(self, num_inference_steps):
        self.timesteps = torch.arange(0, 1000, 1000 // num_inference_steps).flip(0)

    def __len__(self):
        return 1000


def _rounded_randn(shape, generator) -> torch.Tensor:
    """Gaussian draws rounded to 4 decimals, float64: written to JSON they read back bit for bit."""
    return torch.round(torch.randn(shape, generator=generator, dtype=torch.float64) * 1e4) / 1e4


def _square(x0, y0, side):
    return [(x, y) for y in range(y0, y0 + side) for x in range(x0, x0 + side)]


def _irregular():
    """An L-shaped (concave) target, raster order; each target pixel's handle pixel (x // 2 + 1, y - 1),
    so handle pixels repeat and overlap the target: the blur points hold a pixel twice (a target corner
    that is also a handle pixel)."""
    target = [(x, y) for y in range(2, 7) for x in range(3, 8) if x <= 4 or y >= 5]
    return [(x // 2 + 1, y - 1) for x, y in target], target


def _partial_mask():
    m = torch.zeros(8, 8, dtype=torch.float64)
    m[:7, :6] = 1.0   # the last row and the last two columns stay: part of each target lies outside
    return m


_SQ_SOURCE, _SQ_TARGET = _square(1, 1, 3), _square(4, 3, 3)
_IR_SOURCE, _IR_TARGET = _irregular()
_FULL = torch.ones(8, 8, dtype=torch.float64)
# (name, source, target, mask [8, 8], end_t, noise_scale)
BACKWARD_CASES = [
    ("square, full mask, end_t 0.2, noise 1.0", _SQ_SOURCE, _SQ_TARGET, _FULL, 0.2, 1.0),
    ("square, partial mask, end_t 0.0, noise 0.6", _SQ_SOURCE, _SQ_TARGET, _partial_mask(), 0.0, 0.6),
    ("irregular, full mask, end_t 0.0, noise 0.6", _IR_SOURCE, _IR_TARGET, _FULL, 0.0, 0.6),
    ("irregular, partial mask, end_t 0.2, noise 1.0", _IR_SOURCE, _IR_TARGET, _partial_mask(), 0.2, 1.0),
]


def _flat_values(t: torch.Tensor, decimals=None) -> list:
    vals = t.detach().to(torch.float64).flatten().tolist()
    return vals if decimals is None else [round(v, decimals) for v in vals]


def run_backward(released, hook_latents, start_latent, source, target, mask, end_t, noise_scale, seed):
    """The released ``backward`` as the released ``drag`` calls it for "CP then Encode", logged."""
    drag, cycle_sde = released.drag, released.cycle_sde
    scheduler = _Scheduler()
    sampler = cycle_sde.Sampler(unet=_UNet(), scheduler=scheduler, num_steps=STEPS)
    source = torch.tensor(source, dtype=torch.int64)
    target = torch.tensor(target, dtype=torch.int64)
    # as drag(): blur_pts = cat(border(target), source); copy_pts = paste_pts = target
    blur_pts = torch.cat([torch.from_numpy(drag.get_border_points(target.cpu().numpy())), source], dim=0)
    copy_pts = paste_pts = target
    mask_pt = mask[None, None].expand(LATENT_SHAPE)   # drag(): F.interpolate(mask, latent size).expand_as(latent)
    n = int(START_T * STEPS)

    log = {"sample": [], "paste": [], "blur": [], "randn": []}
    gen = torch.Generator().manual_seed(seed)

    def randn_like(x, *args, **kwargs):   # blur_source's draw (and Sampler.sample's, which sde=False multiplies by 0)
        draw = _rounded_randn(tuple(x.shape), gen).to(x.dtype)
        log["randn"].append(draw.clone())
        return draw

    sample_released = sampler.sample

    def sample(timestep, latent, *args, **kwargs):
        log["sample"].append((int(timestep), latent.clone()))
        return sample_released(timestep, latent, *args, **kwargs)

    cp_released, blur_released = drag.copy_and_paste, drag.blur_source

    def copy_and_paste(*args):
        log["paste"].append(len(log["sample"]))   # the step (sample call) it precedes
        return cp_released(*args)

    def blur_source(latents, scale, points):
        log["blur"].append(points.clone())
        return blur_released(latents, scale, points)

    randn_released = torch.randn_like
    sampler.sample = sample
    drag.copy_and_paste, drag.blur_source, torch.randn_like = copy_and_paste, blur_source, randn_like
    try:
        out = drag.backward(scheduler, sampler, STEPS, START_T, end_t, noise_scale, list(hook_latents),
                            [None] * n, [1.0] * n, mask_pt, torch.zeros(1, 1, 1), {}, blur_pts, copy_pts,
                            paste_pts, progress=lambda it: it, latent=start_latent.clone(), sde=False)
    finally:
        drag.copy_and_paste, drag.blur_source, torch.randn_like = cp_released, blur_released, randn_released

    assert len(log["blur"]) == 1 and torch.equal(log["blur"][0], blur_pts)
    draw = log["randn"][0]
    assert tuple(draw.shape) == (LATENT_SHAPE[1], len(blur_pts))
    # The draw as a noise field over the latent, laid out by the same indexing the released blur_source
    # assigns with (where a blur point repeats, the same draw wins), checked against the released blur.
    field = torch.zeros(LATENT_SHAPE, dtype=torch.float64)
    field[0, :, blur_pts[:, 1], blur_pts[:, 0]] = draw
    where = torch.zeros(LATENT_SHAPE[2:], dtype=torch.bool)
    where[blur_pts[:, 1], blur_pts[:, 0]] = True
    img_scale = (1 - noise_scale ** 2) ** 0.5 if noise_scale < 1 else 0
    torch.randn_like = lambda x, *a, **k: draw.clone()
    try:
        blurred = blur_released(start_latent.clone(), noise_scale, blur_pts)
    finally:
        torch.randn_like = randn_released
    assert torch.equal(blurred, torch.where(where, start_latent * img_scale + field * noise_scale, start_latent))
    assert [t for t, _ in log["sample"]] == list(range(500, 0, -50))
    return {"out": out, "blur": blur_pts, "field": field, "steps": log["sample"],
            "pasted": [log["sample"][i][0] if i < len(log["sample"]) else None for i in log["paste"]]}


def build_backward(released, commit: str) -> dict:
    n = int(START_T * STEPS)
    gen = torch.Generator().manual_seed(20240611)
    hook = [_rounded_randn(LATENT_SHAPE, gen) for _ in range(n + 1)]   # the preview's p_0 .. p_n
    start = _rounded_randn(LATENT_SHAPE, gen)                          # the original's z_n
    cases = []
    for i, (name, source, target, mask, end_t, noise_scale) in enumerate(BACKWARD_CASES):
        r = run_backward(released, hook, start, source, target, mask, end_t, noise_scale, seed=1000 + i)
        cases.append({
            "name": name, "end_t": end_t, "noise_scale": noise_scale,
            "source": [list(p) for p in source], "target": [list(p) for p in target],
            "mask": [[int(v) for v in row] for row in mask.tolist()],
            "blur": r["blur"].tolist(),
            "noise": _flat_values(r["field"]),
            "pasted": r["pasted"],
            "steps": [{"t": t, "latent": _flat_values(z, 8)} for t, z in r["steps"]],
            "output": _flat_values(r["out"], 8),
        })
    return {
        "about": ("Written by tools/make_released_golden.py from the released RegionDrag code; do not edit. "
                  "region_utils.drag.backward(scheduler, Sampler(unet, scheduler, steps), steps, start_t, end_t, "
                  "noise_scale, hook_latents, noises=[None]*n, cfg_scales=[1.0]*n, mask, ..., blur, source, target, "
                  "latent=start_latent, sde=False) with the 'CP then Encode' points of the released drag(): "
                  "blur = cat(get_border_points(target), source), copy = paste = target. Latents are flat "
                  "row-major [1, 4, 8, 8] float64 lists; inputs (hook_latents = the preview's p_0 .. p_n, "
                  "start_latent, noise) hold 4 decimals and are exactly what the released code was given; "
                  "'steps' (each Sampler.sample call's timestep and input latent, in call order) and 'output' "
                  "are rounded to 8 decimals. 'noise' is the draw blur_source took, laid out at the blur points "
                  "(zero elsewhere); 'pasted' the timesteps whose step copy_and_paste ran before. Points are "
                  "latent-scale [x, y] rows (row i: target i <- source i); mask [8][8] in {0, 1}."),
        "released": {"repository": "https://github.com/Visual-AI/RegionDrag", "commit": commit,
                     "torch": torch.__version__, "device": "cpu", "dtype": "float64"},
        "setup": {
            "steps": STEPS, "start_t": START_T, "latent_shape": list(LATENT_SHAPE),
            "scheduler": ("timesteps 950, 900, ..., 0; alphas_cumprod = cumprod(1 - betas), betas = "
                          "linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, float64) ** 2, with alphas_cumprod[0] = 1"),
            "eps": {"formula": EPS_FORMULA, "w": list(EPS_W), "neighbour": EPS_NEIGHBOUR},
        },
        "hook_latents": [_flat_values(p) for p in hook],
        "start_latent": _flat_values(start),
        "cases": cases,
    }


def render(content) -> str:
    return json.dumps(content, separators=(",", ":")) + "\n"


def _write(path: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise SystemExit(f"{path}: {len(text):,} bytes; keep the file under {limit:,} (fewer or smaller cases)")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {path} ({len(text):,} bytes)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkout", help="work tree of github.com/Visual-AI/RegionDrag (e.g. /tmp/released)")
    ap.add_argument("--commit", default="unknown", help="the checkout's commit id, recorded in the files")
    ap.add_argument("--out", default=OUT, help=f"points file (default {os.path.relpath(OUT, REPO)})")
    ap.add_argument("--backward-out", default=BACKWARD_OUT,
                    help=f"backward file (default {os.path.relpath(BACKWARD_OUT, REPO)})")
    args = ap.parse_args(argv)
    if torch.cuda.is_available():  # the released interpolate_points takes CUDA whenever it is there
        raise SystemExit("run with CUDA_VISIBLE_DEVICES= : the golden files are made on the CPU")
    released = load_released(args.checkout)
    points = render(build(released.region_to_points, released.get_border_points, commit=args.commit))
    backward = render(build_backward(released, commit=args.commit))
    _write(args.out, points, MAX_BYTES)
    _write(args.backward_out, backward, BACKWARD_MAX_BYTES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
