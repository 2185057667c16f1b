"""The benchmark's measurements: the edit in the pieces a ComfyUI graph runs, its floor (bare UNet
calls on the edit's own inputs) and ComfyUI's own sampler, timed in interleaved rounds after a
warm-up (:class:`Bench`), and :func:`run`, which takes every figure and returns the result that
``bench_report.py`` prints and ``--json`` writes.
"""
from __future__ import annotations

import gc
import logging
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_harness import (Clock, KVLog, Memory, comfy_version, cpu_name, import_comfy,  # noqa: E402
                           load_checkpoint, load_pack, set_unet_dtype)
from bench_report import budgets, ratio_table, sd15_kv_bytes  # noqa: E402
from families import NATIVE_SIZE, FamilyError, random_checkpoint_path, resolve_family  # noqa: E402

log = logging.getLogger("RegionDrag.benchmark")

PROMPT = "a photo of a red ball on a wooden table"
SEED = 42
END_T = 0.2          # the paper's t'' / the node's default
NOISE_WEIGHT = 1.0   # alpha, the paper's value
SAMPLER_CFG = 7.5
# Self-attention blocks of SD1.5's UNet as ComfyUI names them (transformer_options["block"]).
SD15_ATTN_BLOCKS = ([("input", i) for i in (1, 2, 4, 5, 7, 8)] + [("middle", 0)]
                    + [("output", i) for i in range(3, 12)])


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
    return pack.regiondrag_core.masks.RegionPair(handle=handle, target=target)


class Bench:
    def __init__(self, opts, pack, model, clip, vae, cuda: bool):
        import comfy.model_management
        import nodes
        import torch
        self.o, self.pack, self.model, self.vae = opts, pack, model, vae
        self.torch, self.nodes, self.mm = torch, nodes, comfy.model_management
        self.sn = pack.nodes.sampling_nodes
        self.build_drag_map = pack.regiondrag_core.mapping.build_drag_map
        self.preview_image = pack.regiondrag_core.mapping.preview_image
        self.cp_inv = None   # the image's "CP then Encode" inversion, made at the first CP re-edit
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
    def full_edit(self, kv_cache: str = "auto", cfg: float = 1.0) -> dict:
        """The edit as a graph runs it; ``cfg`` above 1 runs both nodes with the negative (empty) prompt."""
        c, t = self.clock, {}
        t0 = c()
        latent = self.nodes.VAEEncode().encode(self.vae, self.image)[0]
        t1 = c()
        seen = len(self.kv_log.lines)
        negative = self.negative if cfg != 1.0 else None
        inv = self.sn.run_inversion(self.model, self.positive, latent, self.o.steps, self.o.start_t, SEED,
                                    kv_cache, 0, "all", negative, cfg)
        t2 = c()
        if kv_cache == "auto" and cfg == 1.0 and len(self.kv_log.lines) > seen:
            self.placement = self.kv_log.lines[-1]   # where auto put this edit's cache, and why
        rest = self._drag(inv, latent, negative, cfg)
        t["vae_encode"], t["inversion"] = t1 - t0, t2 - t1
        t.update(rest)
        t["total"] = t["vae_encode"] + t["inversion"] + rest["total"]
        self.latent, self.inv = latent, inv
        return t

    def re_edit(self) -> dict:
        return self._drag(self.inv, self.latent)

    def re_edit_cp(self) -> dict:
        """A re-edit with method "CP then Encode" (the image's deterministic inversion cached): the mapping and
        its pixel preview, the preview's VAE Encode, the sampler (which inverts the preview, then denoises)
        and VAE Decode: what ComfyUI re-runs in that method when only the regions change."""
        c = self.clock
        if self.cp_inv is None:
            self.cp_inv = self.sn.run_inversion(self.model, self.positive, self.latent, self.o.steps, self.o.start_t,
                                                SEED, "auto", 0, method="CP then Encode")
        h, w = self.latent["samples"].shape[2:]
        t0 = c()
        drag_map = self.build_drag_map(self.pairs, (self.size, self.size), (int(h), int(w)))
        preview = self.preview_image(self.image[0].numpy(), self.pairs)
        t1 = c()
        preview_latent = self.nodes.VAEEncode().encode(self.vae, self.torch.from_numpy(preview)[None])[0]
        t2 = c()
        samples, _ = self.sn.run_drag(self.model, self.cp_inv, drag_map, self.positive, END_T, NOISE_WEIGHT, SEED,
                                      preview_latent=preview_latent)
        t3 = c()
        self.nodes.VAEDecode().decode(self.vae, {"samples": samples})
        t4 = c()
        return {"mapping": t1 - t0, "vae_encode": t2 - t1, "denoising": t3 - t2, "vae_decode": t4 - t3,
                "total": t4 - t0}

    def inversion(self, batch: int) -> float:
        """DDPM Invert-and-Cache alone, ``inversion_batch`` = ``batch``, on the cached VAE latent."""
        t0 = self.clock()
        self.sn.run_inversion(self.model, self.positive, self.latent, self.o.steps, self.o.start_t, SEED,
                              "model device", batch)
        return self.clock() - t0

    def _drag(self, inv, latent, negative=None, cfg: float = 1.0) -> dict:
        c = self.clock
        h, w = latent["samples"].shape[2:]
        t0 = c()
        drag_map = self.build_drag_map(self.pairs, (self.size, self.size), (int(h), int(w)))
        t1 = c()
        samples, _ = self.sn.run_drag(self.model, inv, drag_map, self.positive, END_T, NOISE_WEIGHT, SEED,
                                      negative=negative, cfg=cfg)
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
    try:
        opts.family = resolve_family(opts.ckpt, opts.family)
    except FamilyError as e:
        raise SystemExit(str(e)) from None
    if opts.size is None:
        opts.size = 128 if opts.quick else (NATIVE_SIZE[opts.family] if cuda else 256)
    dtype = opts.dtype or ("fp16" if cuda or opts.family == "sdxl" else "auto")
    if dtype != "auto":
        set_unet_dtype(dtype)
    comfy.utils.PROGRESS_BAR_ENABLED = False   # both the edit and KSampler read it

    ckpt = opts.ckpt
    if ckpt is None:
        import random_checkpoints
        ckpt = random_checkpoint_path(opts.family)
        if not random_checkpoints.is_written(opts.family, ckpt):
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

        b.re_edit_cp()   # warms the method's code and caches the image's deterministic inversion
        runs = {k: [] for k in ("full_edit", "re_edit", "re_edit_cp", "full_edit_kv_cpu", "full_edit_cfg",
                                "bare_calls", "comfy_sampler",
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
            runs["re_edit_cp"].append(b.measured("re_edit_cp", b.re_edit_cp)["total"])
            if cuda or r == 0:   # on the CPU the option is a no-op (the cache is in host memory): once
                b.inv = None     # free this round's cache before the low-memory edit builds its own
                gc.collect()
                runs["full_edit_kv_cpu"].append(b.measured("full_edit_kv_cpu", b.full_edit, "cpu")["total"])
            if cuda or r == 0:   # twice the UNet batch: once per round on a GPU, once on the CPU
                b.inv = None
                gc.collect()
                runs["full_edit_cfg"].append(b.measured("full_edit_cfg", b.full_edit, "auto", opts.cfg)["total"])
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
    attn_blocks = sorted(pack.nodes.model_patch.self_attention_blocks(model))
    sd15_shaped = attn_blocks == sorted(SD15_ATTN_BLOCKS)
    native = NATIVE_SIZE[opts.family]
    kvbank = pack.regiondrag_core.kvbank
    per_choice = {}
    for choice in kvbank.KV_LAYER_CHOICES:
        n, layers = pack.nodes.memory.kv_cache_estimate(
            model, (1, 4, native // 8, native // 8), 10, kvbank.choose_layers(attn_blocks, choice), itemsize=2)
        per_choice[choice] = {"layers": layers, "bytes": n}

    unet = model.model
    result = {
        "comfyui_version": comfy_version(root), "comfyui_path": root, "family": opts.family,
        "device": str(dev), "device_name": torch.cuda.get_device_name(dev) if cuda else cpu_name(),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "attention": pack.nodes.model_patch.comfy_attention.optimized_attention.__name__,
        "checkpoint": os.path.realpath(ckpt), "checkpoint_load_s": load_s,
        "size": opts.size, "latent": list(latent_hw), "unet_dtype": str(unet.get_dtype()).replace("torch.", ""),
        "unet_manual_cast": str(unet.manual_cast_dtype).replace("torch.", "") if unet.manual_cast_dtype else None,
        "dtype_option": dtype, "steps": opts.steps, "start_t": opts.start_t, "levels": levels,
        "model_calls": n_calls, "sampler_steps": opts.sampler_steps, "sampler_cfg": SAMPLER_CFG,
        "edit_cfg": opts.cfg,
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
                     "estimate_bytes": pack.nodes.memory.kv_cache_estimate(model, b.inv.latent_shape, levels)[0],
                     "placement_log": b.placement,
                     "native_size": native, "native_10_steps_fp16_per_layer_choice": per_choice},
        "peak_memory": {"kind": "cuda max_memory_allocated" if cuda else "process peak RSS",
                        "bytes": dict(b.mem.peaks),
                        **({} if cuda else {"rss_after_model_load": rss_after_load})},
        "wall_s": time.perf_counter() - bench_start,
    }
    result["budgets"] = budgets(result, cuda)
    return result
