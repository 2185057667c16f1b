"""The thin layer between the RegionDrag core and ComfyUI's model patchers and samplers."""
from __future__ import annotations

import logging

import torch

import comfy.model_management
import comfy.model_sampling
import comfy.samplers
import comfy.utils
import latent_preview
from comfy.ldm.modules import attention as comfy_attention

from ..regiondrag_core.errors import RegionDragInputError
from ..regiondrag_core.kvbank import AttentionSwap

log = logging.getLogger("RegionDrag")


def attention(q, k, v, heads, attn_precision=None):
    """ComfyUI's attention for this machine, looked up at call time (the host may swap it)."""
    return comfy_attention.optimized_attention(q, k, v, heads, attn_precision=attn_precision)


def check_model(model, node: str) -> None:
    """RegionDrag's DDPM math needs a discrete variance-preserving (eps or v) model with a UNet."""
    ms = model.get_model_object("model_sampling")
    vp = (isinstance(ms, comfy.model_sampling.ModelSamplingDiscrete)
          and isinstance(ms, comfy.model_sampling.EPS)
          and not isinstance(ms, (comfy.model_sampling.EDM, comfy.model_sampling.X0)))
    if not vp:
        raise RegionDragInputError(
            node, "model",
            f"{type(ms).__name__} sampling is not supported: RegionDrag needs a DDPM-trained model "
            "(SD1.5, SD2, SDXL).", "Load an SD1.5 checkpoint such as v1-5-pruned-emaonly.safetensors.")
    if not self_attention_blocks(model):
        raise RegionDragInputError(
            node, "model", "the model has no UNet self-attention layers to share keys/values through.",
            "Load an SD1.5 checkpoint such as v1-5-pruned-emaonly.safetensors.")


def self_attention_blocks(model) -> list[tuple[str, int]]:
    """(block name, number) of every UNet block that holds a SpatialTransformer, as the host names them."""
    unet = model.get_model_object("diffusion_model")
    found = []
    for name, blocks in (("input", getattr(unet, "input_blocks", None)),
                         ("middle", [getattr(unet, "middle_block", None)]),
                         ("output", getattr(unet, "output_blocks", None))):
        if blocks is None:
            continue
        for number, block in enumerate(blocks):
            if block is not None and any(isinstance(m, comfy_attention.SpatialTransformer) for m in block.modules()):
                found.append((name, number))
    return found


def patched_clone(model, swap: AttentionSwap):
    """A clone of ``model`` whose self-attention goes through ``swap``; ``model`` is untouched."""
    m = model.clone()

    def attn1(q, k, v, extra_options):  # a plain closure: clone() deep-copies model_options
        return swap(q, k, v, extra_options)

    for name, number in self_attention_blocks(model):
        m.set_model_attn1_replace(attn1, name, number)
    return m


def sigma_of_timestep(model):
    ms = model.get_model_object("model_sampling")
    return lambda t: float(ms.sigma(torch.tensor(float(t))))


class PositiveGuider(comfy.samplers.CFGGuider):
    """The positive prompt alone (CFG 1), as RegionDrag's DDPM inversion and denoising use it."""

    def set_conds(self, positive):
        self.inner_set_conds({"positive": positive})

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        return comfy.samplers.sampling_function(self.inner_model, x, timestep, None,
                                                self.conds.get("positive", None), 1.0,
                                                model_options=model_options, seed=seed)


def run_sampler(model, positive, latent_samples, sigmas, sampler_function, options, seed):
    """Run ``sampler_function`` through ComfyUI's guider/KSAMPLER machinery; returns the LATENT samples."""
    guider = PositiveGuider(model)
    guider.set_conds(positive)
    sampler = comfy.samplers.KSAMPLER(sampler_function, extra_options=options)
    callback = latent_preview.prepare_callback(model, len(sigmas) - 1)
    noise = torch.zeros(latent_samples.shape, dtype=torch.float32, device="cpu")
    samples = guider.sample(noise, latent_samples, sampler, sigmas, denoise_mask=None, callback=callback,
                            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    return samples.to(comfy.model_management.intermediate_device())
