"""Time a RegionDrag edit against the floor of the stack and against ComfyUI's own sampler.

One process, one model, one image size. Every figure is the median of ``--repeats`` rounds taken
after a warm-up; the rounds interleave the measurements, so a slow spell on a shared machine
touches all of them alike and the ratios stay meaningful.

* full edit       VAE Encode + DDPM Invert-and-Cache + Region-to-Point Mapping + RegionDrag
                  KSampler + VAE Decode (the pack's ``run_inversion``/``run_drag``, ComfyUI's nodes),
                  the inversion in the node's default mode (``inversion_batch`` 0, auto)
* inversion       DDPM Invert-and-Cache alone, sequential (``inversion_batch`` 1, one UNet call per
                  level, bit-exact reconstruction) and batched (all levels in one UNet call)
* re-edit         the inversion cached (as ComfyUI's output cache does when only the regions
                  change): mapping + RegionDrag KSampler + VAE Decode
* bare calls      as many plain UNet calls at batch 1 as the edit makes (inversion + denoising
                  steps), ``model.model.apply_model`` on the loaded model, fed the inversion's own
                  latents and sigmas: the floor of the stack. The re-edit's floor is its 10 of them
                  (half the 20) + VAE decode. Also one bare call with all inversion latents batched.
* ComfyUI sampler ``KSampler`` node, ``--sampler-steps`` (20) steps, CFG 7.5, euler/normal
* low-memory edit the full edit with ``kv_cache="cpu"`` (keys/values kept in host memory)
* live re-edit    (``--live``; on by default for SD1.5 but not with ``--quick``) the re-edit as the
                  front-end's "Run (On Change)" makes it, at ``--live-size`` (128): a ComfyUI server of
                  its own runs the live graph (Load Image ... RegionDrag KSampler -> VAE Decode ->
                  Preview Image); from posting the changed shapes to ``/prompt`` to the decoded image
                  (the Preview Image's ``executed`` message, then its PNG from ``/view``), the inversion
                  served from ComfyUI's cache (``bench_live.py``; the in-process models are released
                  first)

The full edit runs DDPM Invert-and-Cache with its defaults (``kv_cache`` auto, ``kv_layers`` all); the
report gives the K/V cache size and where auto placed it, and the cache at the family's native size
(10 steps, fp16) for every ``kv_layers`` choice.

``--family`` (sd15, sd2, sd2v = SD2.x 768 v-prediction, sdxl) is read from ``--ckpt``'s keys when not
given, as scripts/run_edit.py does; without ``--ckpt`` it picks that family's random-weight checkpoint
(written once to the cache folder). SD2.x and SDXL are conditioned as their workflows do (SDXL: CLIP
Text Encode SDXL with the image size).

``--vram GB`` (CUDA) runs everything as on a card with GB of memory: ComfyUI plans for it
(``--reserve-vram`` = the card's memory - GB, so its free-memory figures, and kv_cache auto's decision,
see GB) and PyTorch's allocator is capped at GB (``torch.cuda.set_per_process_memory_fraction``), so an
edit or a KSampler that needs more fails with an out-of-memory error instead of borrowing the rest.

``--compile BACKEND`` chains ComfyUI's TorchCompileModel node (backend ``inductor`` or ``cudagraphs``)
onto the loaded model before anything runs, as a user would: the edit and the KSampler then run
compiled UNets (the fast path), and the warm-up's first edit, timed on its own, includes compiling.
The bare calls stay the uncompiled UNet: the floor of the plain stack.

It prints each figure, the ratios, the K/V cache size (scaled to SD1.5 at 512x512, 10 steps, fp16)
and the peak memory (on CUDA: a full edit's beside ComfyUI's KSampler's), and PASS/FAIL for the
budgets that apply to the device: the GPU budgets only on CUDA, the CPU budgets only on the CPU.
Everything runs under ``torch.inference_mode()``, as ComfyUI runs nodes; progress bars are off for
every path.

Usage (the pack's folder as the working directory, or any)::

    COMFYUI_PATH=/path/to/ComfyUI /path/to/ComfyUI/venv/bin/python scripts/benchmark.py
        [--size 256] [--steps 20] [--start-t 0.5] [--repeats 3] [--ckpt PATH]
        [--dtype auto|fp16|bf16|fp32] [--json OUT.json] [--quick] [--pytorch-attention] [--cpu] [--check]
        [--compile inductor|cudagraphs] [--family sd15|sd2|sd2v|sdxl] [--vram GB]
        [--live | --no-live] [--live-size 128]

Defaults: size on CUDA the family's native size (512; 768 for sd2v; 1024 for sdxl), 256 on the CPU;
``--quick`` = 1 repeat at 128x128 (a smoke run); ``--ckpt`` defaults to the family's random-weight
checkpoint in the cache folder (``$REGIONDRAG_CACHE``, else ``~/.cache/comfyui-regiondrag/``), written
on first use; ``--dtype`` sets the UNet's dtype as ComfyUI's ``--fp16-unet`` etc. would (default fp16
on CUDA and for SDXL on the CPU, as run_edit.py runs it; elsewhere ComfyUI chooses). ``--check`` exits
1 when a budget fails. Progress goes to stderr, the report to stdout.

This file is the command line; ``bench_harness.py`` imports ComfyUI and loads the pack and the model,
``bench_runs.py`` takes the measurements, ``bench_live.py`` the live figure through a server,
``bench_report.py`` holds the ratios, the budgets and the report.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SCRIPTS)

from bench_live import LIVE_SIZE, run_live  # noqa: E402
from bench_report import report  # noqa: E402
from bench_runs import run  # noqa: E402
from families import FAMILIES  # noqa: E402

log = logging.getLogger("RegionDrag.benchmark")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=None, help="image side in pixels, multiple of 8 "
                   "(default: the family's native size on CUDA, 256 on the CPU, 128 with --quick)")
    p.add_argument("--steps", type=int, default=20, help="RegionDrag steps over the 1000 timesteps (20)")
    p.add_argument("--start-t", type=float, default=0.5, help="inversion depth (0.5: 10 + 10 model calls)")
    p.add_argument("--repeats", type=int, default=None, help="measured rounds after the warm-up (3; 1 with --quick)")
    p.add_argument("--sampler-steps", type=int, default=20, help="steps of ComfyUI's KSampler (20)")
    p.add_argument("--cfg", type=float, default=7.5,
                   help="CFG of the guided full edit (with an empty negative prompt), timed beside CFG 1 (7.5)")
    p.add_argument("--ckpt", default=None, help="SD1.5, SD2.x or SDXL checkpoint (default: the family's "
                   "random-weight one, written if missing)")
    p.add_argument("--family", choices=FAMILIES, default=None,
                   help="the checkpoint's family (default: read from --ckpt's keys; sd15 without --ckpt)")
    p.add_argument("--dtype", choices=["auto", "fp16", "bf16", "fp32"], default=None,
                   help="UNet dtype (default fp16 on CUDA, else ComfyUI's own choice)")
    p.add_argument("--json", metavar="OUT", default=None, help="also write the figures as JSON")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 repeat at 128x128")
    p.add_argument("--pytorch-attention", action="store_true",
                   help="as ComfyUI's --use-pytorch-cross-attention (faster on CPUs)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even where CUDA is present")
    p.add_argument("--check", action="store_true", help="exit with status 1 when a budget fails")
    p.add_argument("--compile", metavar="BACKEND", default=None,
                   help="chain ComfyUI's TorchCompileModel with this backend (inductor, cudagraphs): the fast path")
    p.add_argument("--vram", metavar="GB", type=float, default=None,
                   help="CUDA only: run as on a card with GB of GPU memory (ComfyUI's --reserve-vram for the "
                   "rest, PyTorch's allocator capped at GB), e.g. 12 for SDXL on a 12 GB card")
    live = p.add_mutually_exclusive_group()
    live.add_argument("--live", dest="live", action="store_true", default=None,
                      help="also time the live re-edit through a ComfyUI server "
                      "(default: on for SD1.5 without --quick)")
    live.add_argument("--no-live", dest="live", action="store_false", help="skip the live re-edit")
    p.add_argument("--live-size", type=int, default=LIVE_SIZE, help=f"image side of the live re-edit ({LIVE_SIZE})")
    a = p.parse_args(argv)
    if a.vram is not None and (a.cpu or a.vram <= 0):
        p.error("--vram needs a positive size in GB and a CUDA GPU (not with --cpu)")
    if a.repeats is None:
        a.repeats = 1 if a.quick else 3
    if a.repeats < 1:
        p.error("--repeats must be at least 1")
    if a.size is not None and (a.size < 64 or a.size % 8):
        p.error("--size must be a multiple of 8, at least 64")
    if a.live_size < 64 or a.live_size % 8:
        p.error("--live-size must be a multiple of 8, at least 64")
    return a


def main(argv=None) -> int:
    opts = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    result = run(opts)
    if opts.live or (opts.live is None and not opts.quick and opts.family == "sd15"):
        opts.dtype_option = result["dtype_option"]
        try:
            result["live"] = run_live(opts, result["checkpoint"], opts.live_size)
        except (OSError, RuntimeError, ValueError) as e:  # a server that cannot start must not cost the rest
            log.error("live re-edit not measured: %s", e)
            result["live_error"] = str(e)[-4000:]
    report(result)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(result, f, indent=2)
    return 1 if opts.check and not all(b["pass"] for b in result["budgets"]) else 0


if __name__ == "__main__":
    sys.exit(main())
