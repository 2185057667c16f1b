"""DDPM Invert-and-Cache and RegionDrag KSampler: thin nodes over regiondrag_core.sampling."""
from __future__ import annotations

import dataclasses
import logging
import math

import torch
from comfy_api.latest import io

from ..regiondrag_core.errors import RegionDragInputError
from ..regiondrag_core.kvbank import KV_LAYER_CHOICES, AttentionSwap, KVMismatch, KVBank, choose_layers
from ..regiondrag_core.mapping import DragMap
from ..regiondrag_core.sampling import (CP_THEN_ENCODE, ENCODE_THEN_CP, METHODS, DragPlan, Inversion,
                                        InversionRecorder, sample_cp_then_encode, sample_ddpm_invert,
                                        sample_ode_invert, sample_regiondrag)
from ..regiondrag_core.schedule import make_schedule
from .errors import node_errors
from .memory import inversion_plan, kv_cache_estimate, kv_owner, staging_for
from .patches import check_guidance, extra_passes, patch_failures_named, uses_uncond
from .model_patch import (attention, check_model, model_signature, patched_clone, self_attention_blocks,
                          sigma_of_timestep)
from .sampler import conditioning_split_key, latent_out, run_sampler
from .socket_types import DragMapType, InversionType

log = logging.getLogger("RegionDrag")

INVERT = "DDPMInvertAndCache"
DRAG = "RegionDragKSampler"
# "auto" first: the default. "model device" and "cpu" stay, so saved workflows load unchanged.
KV_CACHE_OPTIONS = ("auto", "model device", "cpu")


def latent_samples(latent, input_name: str = "latent") -> torch.Tensor:
    """The samples of a one-image LATENT input."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor) or getattr(samples, "is_nested", False) or samples.ndim != 4:
        raise RegionDragInputError(input_name, "expects an image LATENT of shape [1, C, H/8, W/8].",
                                   "Connect the output of VAE Encode for one still image.")
    if samples.shape[0] != 1:
        raise RegionDragInputError(
            input_name, f"holds a batch of {samples.shape[0]} latents; RegionDrag edits one image at a time.",
            "Pick one image first (Latent From Batch, batch_index, length 1).")
    return samples


def guidance_inputs(negative_tooltip: str, cfg_tooltip: str) -> list:
    """The optional negative prompt and CFG scale both nodes take (last, so saved workflows keep their
    widget order)."""
    return [io.Conditioning.Input("negative", optional=True, tooltip=negative_tooltip),
            io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01, optional=True,
                           tooltip=cfg_tooltip)]


def _check_fraction(name, value, low_open, fix):
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value > 0 if low_open else value >= 0) and value <= 1
    if not ok:
        rng = "(0, 1]" if low_open else "[0, 1]"
        raise RegionDragInputError(name, f"must lie in {rng}, got {value!r}.", fix)


class DDPMInvertAndCache(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=INVERT,
            display_name="DDPM Invert-and-Cache",
            category="RegionDrag",
            description="DDPM-inverts the image latent to start_t, caching every intermediate latent, the noise "
                        "that reproduces it and the self-attention keys/values. Independent of the regions, so "
                        "ComfyUI re-uses it when only the regions change.",
            inputs=[
                io.Model.Input("model", tooltip="The SD1.5, SD2.x or SDXL model (any LoRA/patches applied) used for the edit."),
                io.Conditioning.Input("positive", tooltip="Prompt describing the image (an empty prompt works)."),
                io.Latent.Input("latent", tooltip="VAE Encode of the image to edit (one image)."),
                io.Int.Input("steps", default=20, min=2, max=1000,
                             tooltip="Total DDPM steps over the 1000 training timesteps (paper: 20)."),
                io.Float.Input("start_t", default=0.5, min=0.01, max=1.0, step=0.01,
                               tooltip="Invert up to this fraction of the diffusion (paper: 0.5 = timestep 500, "
                                       "so 10 inversion and 10 denoising steps). Higher allows larger edits."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="Seed of the inversion noise."),
                io.Combo.Input("kv_cache", options=list(KV_CACHE_OPTIONS), default="auto", optional=True,
                               tooltip="Where the cached keys/values live. 'auto': on the model's GPU when the "
                                       "whole cache fits in ComfyUI's free memory beside a UNet call, otherwise "
                                       "in pinned host memory (logged with the size). 'model device': always "
                                       "with the model (fastest). 'cpu': always in host memory, one step's "
                                       "keys/values copied to the GPU per denoising step (SD1.5 512x512 fp16: "
                                       "0.43 GiB in all, 46 MB a step; SDXL 1024x1024: 3.91 GiB, 400 MiB)."),
                io.Int.Input("inversion_batch", default=0, min=0, max=1000, optional=True,
                             tooltip="Inversion steps per UNet call. 0 = auto: on a GPU as many as free memory "
                                     "allows (all 10 in one call is several times faster), on the CPU 1. 1 = one "
                                     "step per call: a no-region edit then reproduces the image bit for bit; "
                                     "batched calls differ from it by kernel rounding only."),
                io.Combo.Input("kv_layers", options=list(KV_LAYER_CHOICES), default="all", optional=True,
                               tooltip="Which self-attention layers share the image's keys/values with the edit. "
                                       "'all' is the paper's method (every layer, every step). Fewer layers "
                                       "need less memory (and copy less per step when the cache is in host "
                                       "memory), but preserve the image's identity (textures, details) less "
                                       "well; the other layers run plain self-attention. "
                                       "SDXL 1024x1024, 10 steps, fp16: all 70 layers 3.91 GiB, 'decoder only' "
                                       "(36 layers) 2.05 GiB, 'encoder + middle' (34) 1.86 GiB; SD1.5 512x512: "
                                       "16 layers 0.43 GiB, 9 layers 0.26 GiB, 7 layers 0.17 GiB."),
                *guidance_inputs(
                    "Optional negative prompt, for cfg above 1 and for guidance patches that need the "
                    "unconditional prediction (Self-Attention Guidance). Connect the same one to both RegionDrag "
                    "nodes.",
                    "Classifier-free guidance scale (needs a negative prompt above 1). 1.0 is the paper's: the "
                    "positive prompt alone. Use the same value in both RegionDrag nodes: the inversion is exact "
                    "for any value."),
                io.Combo.Input("method", options=list(METHODS), default=ENCODE_THEN_CP, optional=True,
                               tooltip="'Encode then CP' (the paper): DDPM inversion with cached noise; the "
                                       "sampler copies the image's own latents from the handle to the target. "
                                       "'CP then Encode' (the authors' released tool): deterministic (DDIM) "
                                       "inversion; the sampler copies the latents of the pasted preview "
                                       "(Region-to-Point Mapping's preview through VAE Encode into RegionDrag "
                                       "KSampler's preview_latent). The sampler follows this choice."),
            ],
            outputs=[io.Custom(InversionType).Output(display_name="INVERSION",
                                                     tooltip="Cached inversion for RegionDrag KSampler.")],
        )

    @classmethod
    def execute(cls, model, positive, latent, steps, start_t, seed, kv_cache="auto",
                inversion_batch=0, kv_layers="all", negative=None, cfg=1.0,
                method=ENCODE_THEN_CP) -> io.NodeOutput:
        return io.NodeOutput(run_inversion(model, positive, latent, steps, start_t, seed, kv_cache, inversion_batch,
                                           kv_layers, negative, cfg, method))


@node_errors(INVERT)
def run_inversion(model, positive, latent, steps, start_t, seed, kv_cache="auto",
                  inversion_batch=0, kv_layers="all", negative=None, cfg=1.0, method=ENCODE_THEN_CP) -> Inversion:
    """DDPM (or, for "CP then Encode", deterministic) inversion through the host's sampler on a
    K/V-capturing clone of ``model``."""
    samples = latent_samples(latent)
    if not bool(torch.isfinite(samples).all()):
        raise RegionDragInputError("latent", "holds NaN or infinite values.",
                                   "Check the nodes that made the latent; VAE Encode of an image gives finite values.")
    check_model(model)
    check_guidance(model, negative, cfg)
    if method not in METHODS:
        raise RegionDragInputError("method", f"is {method!r}; one of {', '.join(METHODS)}.",
                                   f"Pick '{ENCODE_THEN_CP}' (the paper's method, the default).")
    if kv_cache not in KV_CACHE_OPTIONS:
        raise RegionDragInputError("kv_cache", f"is {kv_cache!r}; one of {', '.join(KV_CACHE_OPTIONS)}.",
                                   "Pick 'auto' (the default).")
    if kv_layers not in KV_LAYER_CHOICES:
        raise RegionDragInputError("kv_layers", f"is {kv_layers!r}; one of {', '.join(KV_LAYER_CHOICES)}.",
                                   "Pick 'all' (the paper's method, the default).")
    schedule = make_schedule(steps, start_t, sigma_of_timestep(model))
    if isinstance(inversion_batch, bool) or not isinstance(inversion_batch, int) or inversion_batch < 0:
        raise RegionDragInputError("inversion_batch", f"must be an integer >= 0, got {inversion_batch!r}.",
                                   "Use 0 (auto), 1 (exact reconstruction) or the number of steps per UNet call.")
    layers = choose_layers(self_attention_blocks(model), kv_layers)
    if not layers:
        raise RegionDragInputError("kv_layers", f"{kv_layers!r} holds no self-attention layer of this UNet.",
                                   "Pick 'all'.")
    negative_entries = len(negative or []) if uses_uncond(model, negative, cfg) else 0
    entries = max(1, len(positive or [])) + negative_entries
    kv_bytes, n_layers = kv_cache_estimate(model, tuple(samples.shape), schedule.levels, layers, entries,
                                           passes=1 + extra_passes(model))
    bank = KVBank(torch.device("cpu") if kv_cache == "cpu" else None)
    swap = AttentionSwap(bank, "capture", attention, layers=layers)
    patched = patched_clone(model, swap, layers=layers)
    ode = method == CP_THEN_ENCODE   # each deterministic step starts from the one before: one level per call
    recorder = InversionRecorder(
        schedule=schedule, seed=seed, swap=swap, latent_shape=tuple(samples.shape),
        layers=layers, layer_choice=kv_layers,
        chunk=inversion_plan(patched, bank, kv_cache, 1 if ode else inversion_batch, schedule.levels, entries,
                             kv_bytes, n_layers),
        split_key=conditioning_split_key(model, positive, schedule, negative),
        latent_image=samples.detach().to(device="cpu", dtype=torch.float32).clone())
    sigmas = torch.tensor(schedule.sigmas, dtype=torch.float32)
    with patch_failures_named(model):
        run_sampler(patched, positive, samples, sigmas, sample_ode_invert if ode else sample_ddpm_invert,
                    {"recorder": recorder}, seed, swap=swap, negative=negative, cfg=cfg)
    inv = recorder.result
    _check_patch_ran(swap, recorder.layers, range(1, inv.levels + 1))
    inv = dataclasses.replace(inv, owner=kv_owner(inv.bank, model.load_device), model_signature=model_signature(model),
                              cfg=float(cfg), negative_entries=negative_entries)
    log.info("RegionDrag inversion (%s): %d steps to t=%d in chunks of %d, K/V cache %.1f MB", method, inv.levels,
             schedule.timesteps[-1], inv.chunk, inv.cache_nbytes()["kv"] / 2**20)
    return inv


def _edit_mask(mask, inv: Inversion, device):
    """Edit-area MASK (image or latent size) -> [1, 1, h, w] float on ``device``, 1 = may change."""
    if mask is None:
        return None
    h, w = inv.latent_shape[2:]
    m = mask if mask.ndim == 3 else mask.unsqueeze(0)
    if m.ndim != 3 or m.shape[0] != 1 or tuple(m.shape[1:]) not in ((h, w), (h * 8, w * 8)):
        raise RegionDragInputError(
            "edit_mask",
            f"has shape {tuple(mask.shape)}; expected one mask of {w * 8}x{h * 8} pixels (or {w}x{h}).",
            "Draw the mask on the same image that was VAE-encoded.")
    if not bool(torch.isfinite(m).all()):
        raise RegionDragInputError("edit_mask", "holds NaN or infinite values; a MASK holds numbers from 0 to 1.",
                                   "Check the node that makes the mask, or paint it in the mask editor.")
    m = m.unsqueeze(1).float()
    if m.shape[-2:] != (h, w):
        m = torch.nn.functional.adaptive_avg_pool2d(m, (h, w))
    return m.clamp(0, 1).to(device)


class RegionDragKSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=DRAG,
            display_name="RegionDrag KSampler",
            category="RegionDrag",
            description="Denoises the cached inversion while copying the handle regions onto the target regions "
                        "and re-using the inversion's self-attention keys/values (RegionDrag, Algorithm 2).",
            inputs=[
                io.Model.Input("model", tooltip="The same model that made the INVERSION."),
                io.Custom(InversionType).Input("inversion", tooltip="From DDPM Invert-and-Cache."),
                io.Custom(DragMapType).Input("drag_map", tooltip="From Region-to-Point Mapping."),
                io.Conditioning.Input("positive", tooltip="Prompt; usually the same as for the inversion."),
                io.Float.Input("end_t", default=0.2, min=0.0, max=1.0, step=0.01,
                               tooltip="Copy-paste at every denoising step with t >= end_t*1000 (paper: 0.2). "
                                       "0 pastes at every step, as the authors' released code does."),
                io.Float.Input("noise_weight", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="alpha: how much noise replaces the handle region before denoising "
                                       "(paper: 1.0). Lower keeps more of the original content there."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="Seed of the handle-region noise."),
                io.Mask.Input("edit_mask", optional=True,
                              tooltip="Optional: only this area may change; outside it the image is kept exactly."),
                io.Boolean.Input("mutual_self_attention", default=True, optional=True,
                                 tooltip="Replace self-attention keys/values with the inversion's (keeps the "
                                         "image's identity). Off only for comparison."),
                *guidance_inputs(
                    "Optional negative prompt: the same one as for DDPM Invert-and-Cache (needed when that ran "
                    "with one at cfg above 1 or for a patch such as Self-Attention Guidance).",
                    "Classifier-free guidance scale; the same value as for DDPM Invert-and-Cache keeps the "
                    "unedited parts exact (1.0: the paper's)."),
                io.Latent.Input("preview_latent", optional=True,
                                tooltip="For an INVERSION made with method 'CP then Encode': Region-to-Point "
                                        "Mapping's preview (the pasted image) through VAE Encode. It is inverted "
                                        "here, deterministically, and its latents are copied onto the targets."),
            ],
            outputs=[io.Latent.Output(tooltip="The edited latent; connect to VAE Decode.")],
        )

    @classmethod
    def execute(cls, model, inversion, drag_map, positive, end_t, noise_weight, seed,
                edit_mask=None, mutual_self_attention=True, negative=None, cfg=1.0,
                preview_latent=None) -> io.NodeOutput:
        samples, _ = run_drag(model, inversion, drag_map, positive, end_t, noise_weight, seed,
                              edit_mask, mutual_self_attention, negative=negative, cfg=cfg,
                              preview_latent=preview_latent)
        return io.NodeOutput({"samples": samples})


@node_errors(DRAG)
def run_drag(model, inversion, drag_map, positive, end_t, noise_weight, seed, edit_mask=None,
             mutual_self_attention=True, on_level=None, negative=None, cfg=1.0, preview_latent=None):
    """RegionDrag denoising through the host's sampler; returns (LATENT samples, the run's AttentionSwap)."""
    if not isinstance(inversion, Inversion):
        raise RegionDragInputError("inversion", "is not an INVERSION.", "Connect DDPM Invert-and-Cache.")
    if not isinstance(drag_map, DragMap):
        raise RegionDragInputError("drag_map", "is not a DRAG_MAP.", "Connect Region-to-Point Mapping.")
    _check_fraction("end_t", end_t, False, "0.2 is the paper's value.")
    _check_fraction("noise_weight", noise_weight, False, "1.0 is the paper's value.")
    sched = inversion.schedule
    if end_t > sched.start_t:
        raise RegionDragInputError(
            "end_t", f"{end_t} is above the inversion's start_t {sched.start_t}: no step would paste.",
            f"Use an end_t below {sched.start_t} (paper: 0.2 with start_t 0.5).")
    h, w = inversion.latent_shape[2:]
    if tuple(drag_map.latent_size) != (h, w):
        mh, mw = drag_map.latent_size
        raise RegionDragInputError(
            "drag_map",
            f"was made for a {mw * 8}x{mh * 8} image (latent {mw}x{mh}) but the inversion is of a "
            f"{w * 8}x{h * 8} image (latent {w}x{h}).",
            "Feed Region-to-Point Mapping the same LATENT that DDPM Invert-and-Cache inverted.")
    check_model(model)
    check_guidance(model, negative, cfg)
    if uses_uncond(model, negative, cfg) and not inversion.negative_entries and mutual_self_attention:
        raise RegionDragInputError(
            "negative", f"runs at every step here (cfg {cfg}), but the inversion ran without a negative prompt"
            + (" (or at cfg 1)" if inversion.cfg == 1.0 else "") + ", so it cached no keys/values for it.",
            "Connect the same negative prompt and cfg to DDPM Invert-and-Cache as well.")
    if not math.isclose(float(cfg), inversion.cfg):
        log.warning("RegionDrag: cfg %s differs from the inversion's %s: the unedited parts will not be kept "
                    "exactly.", cfg, inversion.cfg)
    own = make_schedule(sched.steps, sched.start_t, sigma_of_timestep(model))
    if any(abs(a - b) > 1e-4 * max(1.0, b) for a, b in zip(own.sigmas, sched.sigmas)):
        raise RegionDragInputError("inversion", "was made with a model of another noise schedule.",
                                   "Use the same MODEL for DDPM Invert-and-Cache and RegionDrag KSampler.")
    if inversion.layers != choose_layers(self_attention_blocks(model), inversion.layer_choice):
        raise RegionDragInputError("inversion", "was made with a model of another architecture.",
                                   "Use the same MODEL for DDPM Invert-and-Cache and RegionDrag KSampler.")
    made, own_sig = inversion.model_signature, model_signature(model)
    if made is not None and made != own_sig:
        raise RegionDragInputError(
            "inversion", f"was made by a model with {made[0]} computing in {made[1]}, but this model has "
            f"{own_sig[0]} computing in {own_sig[1]}.",
            "Use the same MODEL (ModelSampling, compute dtype) for DDPM Invert-and-Cache and RegionDrag KSampler.")

    cp_first = getattr(inversion, "method", ENCODE_THEN_CP) == CP_THEN_ENCODE
    preview = _preview_samples(preview_latent, inversion, cp_first)
    device = inversion.latents[0].device
    pairs = drag_map.num_pairs > 0 and len(drag_map.target_xy) > 0
    swap = AttentionSwap(inversion.bank, "replace", attention, enabled=mutual_self_attention,
                         staging=staging_for(inversion.bank), layers=inversion.layers)
    blend = drag_map.cp_blend_mask() if cp_first else drag_map.handle_union
    plan = DragPlan(
        inversion=inversion, swap=swap,
        handle_index=drag_map.handle_index().to(device) if pairs else None,
        target_index=drag_map.target_index().to(device) if pairs else None,
        handle_union=torch.from_numpy(blend).to(device=device, dtype=torch.float32)[None, None] if pairs else None,
        edit_mask=_edit_mask(edit_mask, inversion, device),
        alpha=float(noise_weight), seed=seed, paste=sched.paste_levels(end_t), on_level=on_level)
    sigmas = torch.tensor(sched.sigmas[::-1], dtype=torch.float32)
    image = inversion.latent_image
    if image is None:
        image = torch.zeros(inversion.latent_shape, dtype=torch.float32)
    try:
        with patch_failures_named(model):
            if cp_first:   # the pasted preview, inverted as the original was (deterministically), no K/V
                plan.preview = _invert_preview(model, positive, preview, inversion, seed, negative, cfg)
            patched = patched_clone(model, swap, inversion.owner, inversion.layers)
            samples = run_sampler(patched, positive, image, sigmas,
                                  sample_cp_then_encode if cp_first else sample_regiondrag,
                                  {"plan": plan}, seed, swap=swap, negative=negative, cfg=cfg)
    except KVMismatch as e:
        raise _mismatch_error(e, positive) from None
    if mutual_self_attention:
        _check_patch_ran(swap, inversion.layers, range(1, inversion.levels + 1))
    if inversion.latent_image is not None:
        # The input plus the edit's change: the host's latent scaling in and out (x * 0.18215 / 0.18215
        # for SD1.5) is no exact round trip in float32, so an edit that reproduces z_0 returns the input.
        samples = image.to(samples.device) + (samples - latent_out(model, inversion.latents[0]))
    return samples, swap


def _preview_samples(preview_latent, inversion: Inversion, cp_first: bool):
    """The preview LATENT's samples for a "CP then Encode" inversion (checked), else None."""
    if not cp_first:
        if preview_latent is not None:
            log.warning("RegionDrag KSampler: preview_latent is ignored: the INVERSION was made with method "
                        "'%s', which copies the image's own latents.", ENCODE_THEN_CP)
        return None
    if preview_latent is None:
        raise RegionDragInputError(
            "preview_latent", f"is not connected, but the INVERSION was made with method '{CP_THEN_ENCODE}', which "
            "copies the latents of the pasted preview.",
            "Connect Region-to-Point Mapping's preview through VAE Encode here, or set DDPM Invert-and-Cache's "
            f"method to '{ENCODE_THEN_CP}'.")
    samples = latent_samples(preview_latent, "preview_latent")
    if tuple(samples.shape) != tuple(inversion.latent_shape):
        raise RegionDragInputError(
            "preview_latent", f"has shape {tuple(samples.shape)} but the inversion's latent is "
            f"{tuple(inversion.latent_shape)}.",
            "VAE-encode Region-to-Point Mapping's preview of the same image (same size) that was inverted.")
    if not bool(torch.isfinite(samples).all()):
        raise RegionDragInputError("preview_latent", "holds NaN or infinite values.",
                                   "Connect VAE Encode of Region-to-Point Mapping's preview.")
    return samples


def _invert_preview(model, positive, samples, inversion: Inversion, seed, negative, cfg) -> tuple:
    """The preview's deterministic inversion latents p_0 .. p_n (the plain model; nothing cached)."""
    recorder = InversionRecorder(schedule=inversion.schedule, seed=seed,
                                 swap=AttentionSwap(KVBank(), "capture", attention, enabled=False),
                                 latent_shape=tuple(samples.shape))
    sigmas = torch.tensor(inversion.schedule.sigmas, dtype=torch.float32)
    run_sampler(model, positive, samples, sigmas, sample_ode_invert, {"recorder": recorder}, seed,
                negative=negative, cfg=cfg)
    return recorder.result.latents


def _mismatch_error(e: KVMismatch, positive) -> RegionDragInputError:
    """The input to blame for keys/values the inversion did not cache."""
    if e.pass_index:
        return RegionDragInputError(
            "model", f"calls the UNet more often per step than the model the inversion ran with: {e}.",
            "Connect the same MODEL (with the same guidance patch nodes) to DDPM Invert-and-Cache and RegionDrag "
            "KSampler.")
    if e.entry is not None and e.entry >= len(positive or []):
        return RegionDragInputError(
            "negative", f"does not match the inversion's: {e}.",
            "Connect the same negative prompt and cfg to DDPM Invert-and-Cache and RegionDrag KSampler.")
    return RegionDragInputError(
        "positive", f"does not match the inversion's: {e}.",
        "Connect the same positive conditioning (same entries, areas and masks) to DDPM Invert-and-Cache "
        "and RegionDrag KSampler.")


def _check_patch_ran(swap: AttentionSwap, layers, levels) -> None:
    """Every chosen self-attention layer must go through RegionDrag's patch at every inversion step (their
    keys/values are needed later). While denoising, a node that skips some UNet calls (step caching)
    only gets a warning; a UNet that never went through the patch is an error."""
    missing = swap.levels_missing(layers, levels)
    if missing and swap.mode == "replace" and len(missing) < len(levels):
        log.warning("RegionDrag: the UNet skipped the shared keys/values at %d of %d steps "
                    "(a step-caching node?)", len(missing), len(levels))
    elif missing:
        raise RegionDragInputError(
            "model",
            f"its UNet skipped RegionDrag's attention patch at {len(missing)} of {len(levels)} steps: something "
            "upstream replaces or compiles the model's forward pass in a way that ignores ComfyUI's "
            "attention patches, so the keys/values could not be "
            + ("cached." if swap.mode == "capture" else "shared."),
            "Connect the model before nodes that wrap or compile its UNet (TorchCompileModel is supported).")
