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

Defaults: size on CUDA the family's native size (512; 768 for sd2v; 1024 for sdxl), 256 on the CPU; ``--quick`` = 1 repeat at 128x128 (a smoke run);
``--ckpt`` defaults to the family's random-weight checkpoint in ``~/.cache/comfyui-regiondrag/``
(``$REGIONDRAG_CACHE``), written on first use; ``--dtype`` sets the UNet's dtype as ComfyUI's
``--fp16-unet`` etc. would (default fp16 on CUDA and for SDXL on the CPU, as run_edit.py runs it;
elsewhere ComfyUI chooses). ``--check`` exits 1
when a budget fails. Progress goes to stderr, the report to stdout.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import resource
import statistics
import sys
import time

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(SCRIPTS)
sys.path.insert(0, SCRIPTS)

log = logging.getLogger("RegionDrag.benchmark")

PROMPT = "a photo of a red ball on a wooden table"
SEED = 42
END_T = 0.2          # the paper's t'' / the node's default
NOISE_WEIGHT = 1.0   # alpha, the paper's value
SAMPLER_CFG = 7.5
KV_BUDGET_BYTES = 0.5e9   # GB = 10^9 bytes
# Self-attention blocks of SD1.5's UNet as ComfyUI names them (transformer_options["block"]).
SD15_ATTN_BLOCKS = ([("input", i) for i in (1, 2, 4, 5, 7, 8)] + [("middle", 0)]
                    + [("output", i) for i in range(3, 12)])
FAMILIES = ("sd15", "sd2", "sd2v", "sdxl")
NATIVE_SIZE = {"sd15": 512, "sd2": 512, "sd2v": 768, "sdxl": 1024}


def sd15_kv_bytes(latent_h: int, latent_w: int, levels: int, element_size: int = 2) -> int:
    """K/V bytes SD1.5 caches for ``levels`` model calls: keys and values of every self-attention layer.

    Tokens at UNet level L are ceil(h/2^L) x ceil(w/2^L), channels 320 * (1, 2, 4, 4)[L]; levels 0-2
    have 2 input and 3 output layers each, the middle block (level 3) one. Linear in the latent area.
    """
    def tokens(level):
        return -(-latent_h // 2 ** level) * -(-latent_w // 2 ** level)
    per_call = sum(5 * tokens(lv) * 320 * m for lv, m in ((0, 1), (1, 2), (2, 4))) + tokens(3) * 1280
    return 2 * per_call * element_size * levels


# ---------------------------------------------------------------------------------------- setup

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=None, help="image side in pixels, multiple of 8 "
                   "(default 512 on CUDA, 256 on the CPU, 128 with --quick)")
    p.add_argument("--steps", type=int, default=20, help="RegionDrag steps over the 1000 timesteps (20)")
    p.add_argument("--start-t", type=float, default=0.5, help="inversion depth (0.5: 10 + 10 model calls)")
    p.add_argument("--repeats", type=int, default=None, help="measured rounds after the warm-up (3; 1 with --quick)")
    p.add_argument("--sampler-steps", type=int, default=20, help="steps of ComfyUI's KSampler (20)")
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
    a = p.parse_args(argv)
    if a.vram is not None and (a.cpu or a.vram <= 0):
        p.error("--vram needs a positive size in GB and a CUDA GPU (not with --cpu)")
    if a.repeats is None:
        a.repeats = 1 if a.quick else 3
    if a.repeats < 1:
        p.error("--repeats must be at least 1")
    if a.size is not None and (a.size < 64 or a.size % 8):
        p.error("--size must be a multiple of 8, at least 64")
    return a


def import_comfy(opts) -> str:
    """ComfyUI as a library (``comfy_host``), with the launch flags this run asks for."""
    import comfy_host
    flags = {"use_pytorch_cross_attention": True} if opts.pytorch_attention else {}
    opts.vram_limit = vram_limit(opts.vram) if opts.vram is not None else None
    if opts.vram_limit:
        flags["reserve_vram"] = opts.vram_limit["reserve_vram_gb"]
    try:
        root = comfy_host.import_comfy(cpu=True if opts.cpu else None, **flags)
    except RuntimeError as e:
        raise SystemExit(str(e)) from None
    if opts.vram_limit:
        import torch
        torch.cuda.set_per_process_memory_fraction(opts.vram_limit["memory_fraction"])
    return root


def vram_limit(gb: float) -> dict:
    """``--vram GB`` on this machine's first CUDA device: what ComfyUI reserves and PyTorch is capped at."""
    import torch
    if not torch.cuda.is_available():
        raise SystemExit("--vram simulates a smaller GPU: it needs CUDA, and this machine has none")
    total = torch.cuda.get_device_properties(0).total_memory
    if gb * 2**30 > total:
        raise SystemExit(f"--vram {gb:g}: the card has only {total / 2**30:.1f} GiB")
    return {"gb": gb, "card_gb": total / 2**30, "reserve_vram_gb": (total - gb * 2**30) / 2**30,
            "memory_fraction": gb * 2**30 / total}


def comfy_version(root: str) -> str:
    try:
        with open(os.path.join(root, "comfyui_version.py")) as f:
            return f.read().split('"')[1]
    except (OSError, IndexError):
        return "unknown"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def set_unet_dtype(name: str) -> None:
    """``--fp16-unet`` / ``--bf16-unet`` / ``--fp32-unet``; read by ComfyUI when a model loads."""
    from comfy.cli_args import args
    args.fp16_unet = name == "fp16"
    args.bf16_unet = name == "bf16"
    args.fp32_unet = name == "fp32"


def default_checkpoint(family: str = "sd15") -> str:
    import random_checkpoints
    from comfy_finder import cache_dir
    return os.path.join(cache_dir(), random_checkpoints.checkpoint_name(family))


def resolve_family(opts) -> str:
    """``--family``, else the family ``--ckpt``'s keys show (as run_edit.py), else sd15."""
    if opts.ckpt is None:
        return opts.family or "sd15"
    import random_checkpoints
    try:
        found = random_checkpoints.family_of_checkpoint(opts.ckpt)
    except (ValueError, OSError) as e:
        if opts.family is None:
            raise SystemExit(f"--ckpt {opts.ckpt}: cannot tell its family ({e}); pass --family") from None
        return opts.family
    if opts.family is not None and opts.family != found:
        log.warning("--family %s, but %s looks like %s from its keys; using %s.", opts.family, opts.ckpt, found,
                    opts.family)
    return opts.family or found


class KVLog(logging.Handler):
    """Keeps RegionDrag's "K/V cache ... on ..." placement lines."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("RegionDrag: K/V cache"):
            self.lines.append(msg)


def load_pack():
    import asyncio

    import nodes
    if not asyncio.run(nodes.load_custom_node(REPO)):
        raise SystemExit(f"ComfyUI failed to load the pack at {REPO} (see the log above)")
    return sys.modules[REPO.replace(".", "_x_")]


def load_checkpoint(path: str):
    """(MODEL, CLIP, VAE) through CheckpointLoaderSimple, the file's folder registered first."""
    import folder_paths
    import nodes
    path = os.path.realpath(path)
    folder_paths.add_model_folder_path("checkpoints", os.path.dirname(path), is_default=True)
    name = os.path.basename(path)
    found = folder_paths.get_full_path("checkpoints", name)
    if found is None or os.path.realpath(found) != path:
        raise SystemExit(f"ComfyUI resolves checkpoint {name!r} to {found!r}, not {path!r}: rename the file")
    return nodes.CheckpointLoaderSimple().load_checkpoint(name)[:3]


# --------------------------------------------------------------------------------- measurement

class Clock:
    """Wall time; on CUDA the device is synchronised at every reading."""

    def __init__(self, cuda: bool):
        import torch
        self.sync = torch.cuda.synchronize if cuda else (lambda: None)

    def __call__(self) -> float:
        self.sync()
        return time.perf_counter()


class Memory:
    """Peak memory: CUDA max_memory_allocated per phase (reset before it), or the process's peak RSS."""

    def __init__(self, cuda: bool):
        import torch
        self.cuda = cuda
        self.torch = torch
        self.peaks: dict[str, int] = {}

    @staticmethod
    def peak_rss() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

    def start(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()

    def stop(self, phase: str) -> None:
        peak = self.torch.cuda.max_memory_allocated() if self.cuda else self.peak_rss()
        self.peaks[phase] = max(self.peaks.get(phase, 0), int(peak))


def synthetic_image(size: int):
    """[1, H, W, 3] in 0..1: a colour gradient with a disc and a bar (something to drag)."""
    import torch
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    img = torch.stack([xs, ys, 1.0 - 0.5 * (xs + ys)], dim=-1)
    disc = ((xs - 0.33) ** 2 + (ys - 0.5) ** 2) < 0.12 ** 2
    img[disc] = torch.tensor([0.9, 0.15, 0.1])
    bar = (xs > 0.6) & (xs < 0.8) & (ys > 0.2) & (ys < 0.3)
    img[bar] = torch.tensor([0.1, 0.2, 0.8])
    return img[None].clamp(0, 1).contiguous()


def region_pair(pack, size: int):
    """A rectangle around the disc moved right by 1/8 of the image."""
    import numpy as np
    handle = np.zeros((size, size), bool)
    y0, y1, x0, x1 = 5 * size // 16, 11 * size // 16, 3 * size // 16, 8 * size // 16
    handle[y0:y1, x0:x1] = True
    target = np.roll(handle, size // 8, axis=1)
    return pack.regiondrag_core.regions.RegionPair(handle=handle, target=target)


class Bench:
    def __init__(self, opts, pack, model, clip, vae, cuda: bool):
        import comfy.model_management
        import nodes
        import torch
        self.o, self.pack, self.model, self.vae = opts, pack, model, vae
        self.torch, self.nodes, self.mm = torch, nodes, comfy.model_management
        self.sn = pack.nodes.sampling_nodes
        self.build_drag_map = pack.regiondrag_core.mapping.build_drag_map
        self.clock = Clock(cuda)
        self.mem = Memory(cuda)
        self.cuda = cuda
        self.size = opts.size
        self.image = synthetic_image(opts.size)
        self.pairs = [region_pair(pack, opts.size)]
        from comfy_host import encode_prompt
        self.positive = encode_prompt(clip, opts.family, PROMPT, opts.size)
        self.negative = encode_prompt(clip, opts.family, "", opts.size)
        self.latent = None   # the VAE-encoded image, for the sampler
        self.inv = None
        self.bare_in = None  # the bare calls' inputs, taken from the warm-up's inversion
        self.kv_log = KVLog()
        logging.getLogger("RegionDrag").addHandler(self.kv_log)
        logging.getLogger("RegionDrag").setLevel(logging.INFO)
        self.placement = None

    # -- the edit, in the pieces a ComfyUI graph runs
    def full_edit(self, kv_cache: str = "auto") -> dict:
        c, t = self.clock, {}
        t0 = c()
        latent = self.nodes.VAEEncode().encode(self.vae, self.image)[0]
        t1 = c()
        seen = len(self.kv_log.lines)
        inv = self.sn.run_inversion(self.model, self.positive, latent, self.o.steps, self.o.start_t, SEED,
                                    kv_cache, 0)
        t2 = c()
        if kv_cache == "auto" and len(self.kv_log.lines) > seen:
            self.placement = self.kv_log.lines[-1]   # where auto put this edit's cache, and why
        rest = self._drag(inv, latent)
        t["vae_encode"], t["inversion"] = t1 - t0, t2 - t1
        t.update(rest)
        t["total"] = t["vae_encode"] + t["inversion"] + rest["total"]
        self.latent, self.inv = latent, inv
        return t

    def re_edit(self) -> dict:
        return self._drag(self.inv, self.latent)

    def inversion(self, batch: int) -> float:
        """DDPM Invert-and-Cache alone, ``inversion_batch`` = ``batch``, on the cached VAE latent."""
        t0 = self.clock()
        self.sn.run_inversion(self.model, self.positive, self.latent, self.o.steps, self.o.start_t, SEED,
                              "model device", batch)
        return self.clock() - t0

    def _drag(self, inv, latent) -> dict:
        c = self.clock
        h, w = latent["samples"].shape[2:]
        t0 = c()
        drag_map = self.build_drag_map(self.pairs, (self.size, self.size), (int(h), int(w)))
        t1 = c()
        samples, _ = self.sn.run_drag(self.model, inv, drag_map, self.positive, END_T, NOISE_WEIGHT, SEED)
        t2 = c()
        self.nodes.VAEDecode().decode(self.vae, {"samples": samples})
        t3 = c()
        return {"mapping": t1 - t0, "denoising": t2 - t1, "vae_decode": t3 - t2, "total": t3 - t0}

    # -- the floor: the UNet alone, once per model call the edit makes, on the edit's own inputs
    def bare_inputs(self) -> list[tuple[float, object]]:
        """(sigma, cached latent z_k) of every call: inversion at z_1 .. z_n, denoising at z_n .. z_1.

        The inputs are the inversion's own latents, not fresh noise: on the CPU a UNet call's time
        depends on the values it sees (denormal floats), so only the edit's inputs make a fair floor.
        """
        inv = self.inv
        up = [(inv.schedule.sigmas[k], inv.latents[k]) for k in range(1, inv.levels + 1)]
        return up + up[::-1]

    def unet_inputs(self, x) -> dict:
        """The UNet's inputs besides the latent and sigma, as ComfyUI's sampler makes them from the
        positive conditioning (``encode_model_conds``): the text as cross-attention and, for SDXL, the
        pooled text with the size conditioning as ``y``; repeated to ``x``'s batch, on its device."""
        cond, extra = self.positive[0]
        params = dict(extra, cross_attn=cond, device=x.device, noise=x, prompt_type="positive")
        params.setdefault("width", x.shape[3] * 8)
        params.setdefault("height", x.shape[2] * 8)
        out = {}
        for name, c in self.model.model.extra_conds(**params).items():
            v = c.process_cond(batch_size=x.shape[0], device=x.device, area=None).cond
            out[name] = v.to(x.device) if self.torch.is_tensor(v) else v
        return out

    def bare_calls(self, count: int | None = None) -> float:
        torch, mm = self.torch, self.mm
        mm.load_models_gpu([self.model])
        dev = self.model.load_device
        calls = [(z.to(dev) * (1.0 + s * s) ** 0.5, torch.tensor([s], dtype=torch.float32, device=dev))
                 for s, z in self.bare_in[:count]]
        inputs = self.unet_inputs(calls[0][0])
        unet = self.model.model
        t0 = self.clock()
        for x, s in calls:
            unet.apply_model(x, s, **inputs)
        return self.clock() - t0

    def bare_batched(self) -> float:
        """One plain UNet call on all inversion latents at once, each with its own sigma."""
        torch = self.torch
        self.mm.load_models_gpu([self.model])
        dev = self.model.load_device
        up = self.bare_in[:self.inv.levels]
        x = torch.cat([z.to(dev) * (1.0 + s * s) ** 0.5 for s, z in up])
        sig = torch.tensor([s for s, _ in up], dtype=torch.float32, device=dev)
        inputs = self.unet_inputs(x)
        t0 = self.clock()
        self.model.model.apply_model(x, sig, **inputs)
        return self.clock() - t0

    # -- what users compare with
    def comfy_sampler(self, steps: int) -> float:
        t0 = self.clock()
        self.nodes.KSampler().sample(self.model, SEED, steps, SAMPLER_CFG, "euler", "normal",
                                     self.positive, self.negative, self.latent)
        return self.clock() - t0

    def measured(self, phase: str, fn, *a):
        self.mem.start()
        out = fn(*a)
        self.mem.stop(phase)
        return out


def run(opts) -> dict:
    import torch
    bench_start = time.perf_counter()
    root = import_comfy(opts)
    import comfy.model_management as mm
    import comfy.utils
    dev = mm.get_torch_device()
    cuda = dev.type == "cuda"
    opts.family = resolve_family(opts)
    if opts.size is None:
        opts.size = 128 if opts.quick else (NATIVE_SIZE[opts.family] if cuda else 256)
    dtype = opts.dtype or ("fp16" if cuda or opts.family == "sdxl" else "auto")
    if dtype != "auto":
        set_unet_dtype(dtype)
    comfy.utils.PROGRESS_BAR_ENABLED = False   # both the edit and KSampler read it

    ckpt = opts.ckpt
    if ckpt is None:
        import random_checkpoints
        ckpt = default_checkpoint(opts.family)
        if not os.path.exists(ckpt):
            log.info("writing the random %s checkpoint to %s (a minute or two)", opts.family, ckpt)
        random_checkpoints.write_random_checkpoint(opts.family, ckpt)
    elif not os.path.isfile(ckpt):
        raise SystemExit(f"--ckpt {ckpt}: no such file")
    log.info("checkpoint family: %s", opts.family)

    pack = load_pack()
    with torch.inference_mode():
        t0 = time.perf_counter()
        model, clip, vae = load_checkpoint(ckpt)
        load_s = time.perf_counter() - t0
        if opts.compile:
            import comfy_host
            model = comfy_host.torch_compiled(model, opts.compile)
        b = Bench(opts, pack, model, clip, vae, cuda)
        rss_after_load = Memory.peak_rss()

        log.info("warm-up (%s, %dx%d, ComfyUI %s)", dev, opts.size, opts.size, comfy_version(root))
        first_edit = b.full_edit()   # warms the re-edit's code too (mapping, denoising, VAE decode)
        b.bare_in = b.bare_inputs()
        n_calls = 2 * b.inv.levels   # CFG 1, batch 1: one UNet call per inversion and per denoising step
        if cuda:                      # cheap there; on the CPU the edit above warmed the same code
            b.full_edit("cpu")
        b.bare_calls(None if cuda else 1)
        first_sampler = b.comfy_sampler(opts.sampler_steps if cuda or opts.compile else min(2, opts.sampler_steps))
        kv = b.inv.cache_nbytes()
        kv_entry = next(iter(b.inv.bank.entries.values()))[0]
        kv_dtype, kv_elem = str(kv_entry.dtype).replace("torch.", ""), kv_entry.element_size()
        latent_hw = tuple(int(v) for v in b.latent["samples"].shape[2:])
        levels = b.inv.levels
        if cuda:   # a batch of all levels is a new shape for kernels and compiled graphs: warm it too
            b.inversion(levels)
            b.inversion(1)
            b.bare_batched()

        runs = {k: [] for k in ("full_edit", "re_edit", "full_edit_kv_cpu", "bare_calls", "comfy_sampler",
                                "inversion_sequential", "inversion_batched", "bare_batched")}
        default_chunk = b.inv.chunk
        parts = {k: [] for k in ("vae_encode", "inversion", "mapping", "denoising", "vae_decode")}
        for r in range(opts.repeats):
            log.info("round %d/%d", r + 1, opts.repeats)
            t = b.measured("full_edit", b.full_edit)
            runs["full_edit"].append(t["total"])
            for k in parts:
                parts[k].append(t[k])
            runs["re_edit"].append(b.measured("re_edit", b.re_edit)["total"])
            if cuda or r == 0:   # on the CPU the option is a no-op (the cache is in host memory): once
                b.inv = None     # free this round's cache before the low-memory edit builds its own
                gc.collect()
                runs["full_edit_kv_cpu"].append(b.measured("full_edit_kv_cpu", b.full_edit, "cpu")["total"])
            runs["bare_calls"].append(b.measured("bare_calls", b.bare_calls))
            runs["inversion_sequential"].append(b.measured("inversion_sequential", b.inversion, 1))
            runs["inversion_batched"].append(b.measured("inversion_batched", b.inversion, levels))
            runs["bare_batched"].append(b.measured("bare_batched", b.bare_batched))
            runs["comfy_sampler"].append(b.measured("comfy_sampler", b.comfy_sampler, opts.sampler_steps))

    med = {k: statistics.median(v) for k, v in runs.items()}
    mparts = {k: statistics.median(v) for k, v in parts.items()}
    floor = med["bare_calls"] + mparts["vae_encode"] + mparts["vae_decode"]
    re_floor = med["bare_calls"] / 2 + mparts["vae_decode"]
    ratios = ratio_table(med, mparts)
    # Paired: each ratio within one round (taken minutes apart at most), then the median over rounds;
    # a cross-check when other work on the machine slows some rounds down.
    per_round = []
    for i in range(opts.repeats):
        t = {k: (v[i] if i < len(v) else float("nan")) for k, v in runs.items()}
        per_round.append(ratio_table(t, {k: v[i] for k, v in parts.items()}))
    ratios_paired = {k: statistics.median([x[k] for x in per_round if x[k] == x[k]]) for k in ratios}
    spread = max(max(v) / min(v) for v in runs.values())
    area = (512 * 512) / (opts.size * opts.size)
    kv_fp16 = kv["kv"] * 2 / kv_elem
    kv_512_10_fp16 = kv_fp16 * area * 10 / levels
    attn_blocks = sorted(pack.nodes.host.self_attention_blocks(model))
    sd15_shaped = attn_blocks == sorted(SD15_ATTN_BLOCKS)
    native = NATIVE_SIZE[opts.family]
    kvbank = pack.regiondrag_core.kvbank
    per_choice = {}
    for choice in kvbank.KV_LAYER_CHOICES:
        n, layers = pack.nodes.host.kv_cache_estimate(
            model, (1, 4, native // 8, native // 8), 10, kvbank.choose_layers(attn_blocks, choice), itemsize=2)
        per_choice[choice] = {"layers": layers, "bytes": n}

    unet = model.model
    result = {
        "comfyui_version": comfy_version(root), "comfyui_path": root, "family": opts.family,
        "device": str(dev), "device_name": torch.cuda.get_device_name(dev) if cuda else cpu_name(),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "attention": pack.nodes.host.comfy_attention.optimized_attention.__name__,
        "checkpoint": os.path.realpath(ckpt), "checkpoint_load_s": load_s,
        "size": opts.size, "latent": list(latent_hw), "unet_dtype": str(unet.get_dtype()).replace("torch.", ""),
        "unet_manual_cast": str(unet.manual_cast_dtype).replace("torch.", "") if unet.manual_cast_dtype else None,
        "dtype_option": dtype, "steps": opts.steps, "start_t": opts.start_t, "levels": levels,
        "model_calls": n_calls, "sampler_steps": opts.sampler_steps, "sampler_cfg": SAMPLER_CFG,
        "repeats": opts.repeats, "compile": opts.compile, "default_inversion_chunk": default_chunk,
        "vram_limit": opts.vram_limit,
        "warm_up_s": {"first_full_edit": first_edit["total"], "first_comfy_sampler": first_sampler},
        "median_s": med, "runs_s": runs, "full_edit_parts_median_s": mparts, "full_edit_parts_s": parts,
        "floor_s": floor, "re_edit_floor_s": re_floor, "ratios": ratios, "ratios_per_round_median": ratios_paired,
        "max_spread_between_rounds": spread,
        "self_attention_blocks": [list(x) for x in attn_blocks], "sd15_attention_layout": sd15_shaped,
        "kv_cache": {"bytes": kv["kv"], "dtype": kv_dtype, "bytes_fp16": int(kv_fp16),
                     "bytes_fp16_512px_10_steps": int(kv_512_10_fp16), "latents_bytes": kv["latents"],
                     "sd15_expected_bytes": sd15_kv_bytes(*latent_hw, levels, kv_elem),
                     "sd15_expected_bytes_fp16_512px_10_steps": sd15_kv_bytes(64, 64, 10, 2),
                     "estimate_bytes": pack.nodes.host.kv_cache_estimate(model, b.inv.latent_shape, levels)[0],
                     "placement_log": b.placement,
                     "native_size": native, "native_10_steps_fp16_per_layer_choice": per_choice},
        "peak_memory": {"kind": "cuda max_memory_allocated" if cuda else "process peak RSS",
                        "bytes": dict(b.mem.peaks),
                        **({} if cuda else {"rss_after_model_load": rss_after_load})},
        "wall_s": time.perf_counter() - bench_start,
    }
    result["budgets"] = budgets(result, cuda)
    return result


def ratio_table(t: dict, parts: dict) -> dict:
    floor = t["bare_calls"] + parts["vae_encode"] + parts["vae_decode"]
    return {
        "full_edit_over_floor": t["full_edit"] / floor,
        "re_edit_over_full_edit": t["re_edit"] / t["full_edit"],
        "re_edit_over_its_floor": t["re_edit"] / (t["bare_calls"] / 2 + parts["vae_decode"]),
        "inversion_batched_over_sequential": t["inversion_batched"] / t["inversion_sequential"],
        "full_edit_over_comfy_sampler": t["full_edit"] / t["comfy_sampler"],
        "full_edit_over_comfy_sampler_plus_decode": t["full_edit"] / (t["comfy_sampler"] + parts["vae_decode"]),
        "kv_cpu_over_full_edit": t["full_edit_kv_cpu"] / t["full_edit"],
        "inversion_over_its_bare_calls": parts["inversion"] / (t["bare_calls"] / 2),
        "denoising_over_its_bare_calls": parts["denoising"] / (t["bare_calls"] / 2),
    }


def budgets(r: dict, cuda: bool) -> list[dict]:
    out = []

    def add(name, value, limit, note=""):
        out.append({"budget": name, "value": value, "limit": limit, "pass": value <= limit, "note": note})

    ra = r["ratios"]
    if cuda:
        def fp16_at(side):
            return "" if (r["size"] == side and r["unet_dtype"] == "float16") else \
                f"budget is for {side}x{side} fp16; this run: {r['size']}x{r['size']} {r['unet_dtype']}"
        note = fp16_at(512)
        # the full edit's budget per family: SDXL's at its native 1024x1024 (issue 13), else SD1.5's (issue 10)
        label, limit, side = ("GPU, SDXL", 0.8, 1024) if r["family"] == "sdxl" else ("GPU", 0.6, 512)
        add(f"{label}: full edit <= {limit} x ComfyUI 20-step CFG 7.5 sampler", ra["full_edit_over_comfy_sampler"],
            limit, fp16_at(side))
        add("GPU: re-edit <= 1.10 x its floor (10 bare batch-1 UNet calls + VAE decode)",
            ra["re_edit_over_its_floor"], 1.10, note)
        if r["compile"]:
            card = f"card: {r['device_name']}"
            add("GPU fast path: full edit <= 0.20 s (H100/H200)", r["median_s"]["full_edit"], 0.20,
                note + ("; " if note else "") + card)
            add("GPU fast path: re-edit <= 0.15 s (H100/H200)", r["median_s"]["re_edit"], 0.15,
                note + ("; " if note else "") + card)
    else:
        note = "" if r["size"] == 256 else f"budget is for 256x256; this run: {r['size']}x{r['size']}"
        add("CPU: full edit <= 1.10 x (bare calls + VAE encode + decode)", ra["full_edit_over_floor"], 1.10, note)
        add("CPU: re-edit <= 1.10 x its floor (10 bare batch-1 UNet calls + VAE decode)",
            ra["re_edit_over_its_floor"], 1.10, note)
    kv = r["kv_cache"]
    if r["sd15_attention_layout"]:
        add("K/V cache, SD1.5 512x512, 10 steps, fp16 <= 0.5 GB", kv["bytes_fp16_512px_10_steps"] / 1e9,
            KV_BUDGET_BYTES / 1e9, "scaled from this run by latent area and level count" if
            (r["size"] != 512 or r["levels"] != 10 or kv["dtype"] != "float16") else "")
    else:
        add("K/V cache, SD1.5 512x512, 10 steps, fp16 <= 0.5 GB", kv["sd15_expected_bytes_fp16_512px_10_steps"] / 1e9,
            KV_BUDGET_BYTES / 1e9, "computed for SD1.5's layers: the checkpoint's self-attention layout is not "
            f"SD1.5's; its own cache scales to {kv['bytes_fp16_512px_10_steps'] / 1e9:.3f} GB")
    return out


# ------------------------------------------------------------------------------------- report

def report(r: dict, write=None) -> None:
    write = write or (lambda s: sys.stdout.write(s + "\n"))
    med, parts, ra = r["median_s"], r["full_edit_parts_median_s"], r["ratios"]
    mb = lambda b: f"{b / 1e6:,.1f} MB"  # noqa: E731
    spread = lambda k: f"[{min(r['runs_s'][k]):.3f} .. {max(r['runs_s'][k]):.3f}]"  # noqa: E731
    write("")
    write(f"RegionDrag benchmark - ComfyUI {r['comfyui_version']}, torch {r['torch']}, {r['device_name']} "
          f"({r['device']}, {r['threads']} threads), attention {r['attention']}")
    write(f"model: {os.path.basename(r['checkpoint'])}, UNet {r['unet_dtype']}"
          + (f" (compute {r['unet_manual_cast']})" if r["unet_manual_cast"] else "")
          + f"; image {r['size']}x{r['size']} (latent {r['latent'][1]}x{r['latent'][0]}); "
          f"steps {r['steps']}, start_t {r['start_t']}: {r['levels']} inversion + {r['levels']} denoising calls; "
          f"median of {r['repeats']} after a warm-up")
    if r["vram_limit"]:
        v = r["vram_limit"]
        write(f"card made small: {v['gb']:g} GB of the {v['card_gb']:.1f} GiB (ComfyUI --reserve-vram "
              f"{v['reserve_vram_gb']:.1f}, PyTorch memory fraction {v['memory_fraction']:.3f}); both the edit "
              "and the KSampler completed within it")
    if r["compile"]:
        w = r["warm_up_s"]
        write(f"compiled: ComfyUI TorchCompileModel, backend {r['compile']}; warm-up (compiling included): "
              f"first full edit {w['first_full_edit']:.1f} s, first KSampler {w['first_comfy_sampler']:.1f} s; "
              "the bare calls run the uncompiled UNet")
    write("")
    write(f"{'figure':<54}{'median s':>10}   min .. max")
    rows = [
        ("full edit (encode + invert + map + denoise + decode)", "full_edit"),
        ("re-edit, inversion cached (map + denoise + decode)", "re_edit"),
        ("full edit, kv_cache='cpu'", "full_edit_kv_cpu"),
        (f"bare UNet calls, batch 1 (x{r['model_calls']})", "bare_calls"),
        (f"inversion alone, sequential (inversion_batch 1: {r['levels']} calls)", "inversion_sequential"),
        (f"inversion alone, batched (inversion_batch {r['levels']}: 1 call)", "inversion_batched"),
        (f"bare UNet call, batch {r['levels']} (the inversion's latents)", "bare_batched"),
        (f"ComfyUI KSampler, {r['sampler_steps']} steps, CFG {r['sampler_cfg']}, euler/normal", "comfy_sampler"),
    ]
    for label, k in rows:
        write(f"{label:<54}{med[k]:>10.3f}   {spread(k)}")
    write("full edit, parts: " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
    write(f"floor = bare calls + VAE encode + VAE decode = {r['floor_s']:.3f} s; re-edit floor = "
          f"{r['levels']} bare calls + VAE decode = {r['re_edit_floor_s']:.3f} s")
    write(f"the full edit's inversion ran in chunks of {r['default_inversion_chunk']} level(s) "
          "(inversion_batch 0 = auto: 1 on the CPU, as many as fit on a GPU)")
    write("")
    rm = r["ratios_per_round_median"]
    write(f"{'ratios':<46}{'of medians':>11}{'per round':>11}")
    n = r["levels"]
    for label, k in (("full edit / floor", "full_edit_over_floor"),
                     ("re-edit / full edit", "re_edit_over_full_edit"),
                     ("re-edit / its floor", "re_edit_over_its_floor"),
                     ("inversion batched / sequential", "inversion_batched_over_sequential"),
                     ("full edit / ComfyUI sampler", "full_edit_over_comfy_sampler"),
                     ("full edit / (ComfyUI sampler + VAE decode)", "full_edit_over_comfy_sampler_plus_decode"),
                     ("full edit kv_cache='cpu' / full edit", "kv_cpu_over_full_edit"),
                     (f"inversion / its {n} bare calls", "inversion_over_its_bare_calls"),
                     (f"denoising / its {n} bare calls", "denoising_over_its_bare_calls")):
        write(f"  {label:<44}{ra[k]:>11.3f}{rm[k]:>11.3f}")
    write("  (per round: each ratio within one round, median over the rounds)")
    if r["max_spread_between_rounds"] > 1.3:
        write(f"  WARNING: a figure varied {r['max_spread_between_rounds']:.1f}x between rounds: other work was "
              "slowing this machine; the ratios are unreliable, rerun when it is idle.")
    if r["device"] == "cpu":
        write("  (kv_cache='cpu' is a no-op on the CPU, the cache is in host memory already: timed once)")
    kv = r["kv_cache"]
    write("")
    write(f"K/V cache: {mb(kv['bytes'])} ({kv['dtype']})"
          + (f", {mb(kv['bytes_fp16'])} at fp16" if kv["dtype"] != "float16" else "")
          + f"; cached latents + noise {mb(kv['latents_bytes'])}")
    write(f"K/V cache scaled to 512x512, 10 steps, fp16: {mb(kv['bytes_fp16_512px_10_steps'])}"
          + ("" if r["size"] == 512 else f" (K/V scales with latent area: x{(512 / r['size']) ** 2:g} from "
             f"{r['size']}x{r['size']})"))
    if r["sd15_attention_layout"]:
        write(f"  expected for SD1.5's 16 self-attention layers: {mb(kv['sd15_expected_bytes'])} at this size "
              f"and dtype, {mb(kv['sd15_expected_bytes_fp16_512px_10_steps'])} at 512x512, 10 steps, fp16")
    write(f"  estimated before the inversion (kv_cache auto decides on it): {mb(kv['estimate_bytes'])}")
    if kv["placement_log"]:
        write(f"  placement (the full edit, kv_cache auto): {kv['placement_log'].split(': ', 1)[1]}")
    gib = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
    write(f"K/V cache of this {r['family']} UNet at {kv['native_size']}x{kv['native_size']}, 10 steps, fp16, per "
          "kv_layers: " + "; ".join(f"{c} {v['layers']} layers {gib(v['bytes'])}"
                                    for c, v in kv["native_10_steps_fp16_per_layer_choice"].items()))
    if not r["sd15_attention_layout"] and r["family"] == "sd15":
        write("  WARNING: the checkpoint's UNet is not SD1.5-shaped: self-attention in "
              + " ".join(f"{n}{i}" for n, i in r["self_attention_blocks"])
              + "; SD1.5 has input1 input2 input4 input5 input7 input8 middle0 output3..output11. "
              "Timings and cache size are not SD1.5's.")
    pm = r["peak_memory"]
    if "rss_after_model_load" in pm:   # a high-water mark for the whole process: one figure
        write(f"peak memory ({pm['kind']}): {mb(max(pm['bytes'].values()))} "
              f"(already {mb(pm['rss_after_model_load'])} after loading the checkpoint)")
    else:
        write(f"peak GPU memory: full edit {mb(pm['bytes'].get('full_edit', 0))} vs ComfyUI KSampler "
              f"{mb(pm['bytes'].get('comfy_sampler', 0))}")
        write(f"peak memory ({pm['kind']}, per figure): "
              + ", ".join(f"{k} {mb(v)}" for k, v in pm["bytes"].items()))
    write("")
    for bgt in r["budgets"]:
        write(f"{'PASS' if bgt['pass'] else 'FAIL'}  {bgt['budget']}: {bgt['value']:.3f}"
              + (f"  ({bgt['note']})" if bgt["note"] else ""))
    write(f"(benchmark wall time {r['wall_s']:.0f} s, checkpoint load {r['checkpoint_load_s']:.1f} s)")


def main(argv=None) -> int:
    opts = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    result = run(opts)
    report(result)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(result, f, indent=2)
    return 1 if opts.check and not all(b["pass"] for b in result["budgets"]) else 0


if __name__ == "__main__":
    sys.exit(main())
