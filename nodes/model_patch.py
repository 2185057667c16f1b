"""The UNet as RegionDrag sees it: model checks, self-attention layers, the clone patched with the K/V swap."""
from __future__ import annotations

import torch

import comfy.model_sampling
import comfy.patcher_extension
from comfy.ldm.modules import attention as comfy_attention

from ..regiondrag_core.errors import RegionDragInputError
from ..regiondrag_core.kvbank import AttentionLayer, AttentionSwap
from . import torch_compile

SUPPORTED = ("Supported: SD1.5, SD2.x (512 eps and 768 v-prediction) and SDXL checkpoints, and models "
             "fine-tuned from them")


def attention(q, k, v, heads, attn_precision=None, transformer_options=None):
    """ComfyUI's attention for this machine, looked up at call time (the host may swap it).

    ``transformer_options`` goes on to it, so an override another pack installed there (SageAttention,
    FlashAttention switches: ``optimized_attention_override``) runs inside RegionDrag's layers too."""
    if transformer_options is None:
        return comfy_attention.optimized_attention(q, k, v, heads, attn_precision=attn_precision)
    return comfy_attention.optimized_attention(q, k, v, heads, attn_precision=attn_precision,
                                               transformer_options=transformer_options)


def _host_attention(q, k, v, extra_options):
    return attention(q, k, v, extra_options["n_heads"], attn_precision=extra_options.get("attn_precision"),
                     transformer_options=extra_options)


# ------------------------------------------------------------------ what the model is

def check_model(model) -> None:
    """RegionDrag's DDPM math needs a discrete variance-preserving (eps or v) model with a UNet."""
    ms = model.get_model_object("model_sampling")
    vp = (isinstance(ms, comfy.model_sampling.ModelSamplingDiscrete)
          and isinstance(ms, comfy.model_sampling.EPS)
          and not isinstance(ms, (comfy.model_sampling.EDM, comfy.model_sampling.X0)))
    if not vp:
        raise RegionDragInputError(
            "model",
            f"is {_model_kind(model, ms)}, which RegionDrag does not support: its DDPM inversion needs a "
            f"discrete-time eps- or v-prediction model. {SUPPORTED}.",
            "Load an SD1.5, SD2.x or SDXL checkpoint, and leave out ModelSampling* nodes that switch it to "
            "another sampling type.")
    if not self_attention_blocks(model):
        raise RegionDragInputError(
            "model", f"is {_model_kind(model, ms)} with no UNet self-attention layers to share keys/values "
            f"through. {SUPPORTED}.", "Load an SD1.5, SD2.x or SDXL checkpoint.")


def _model_kind(model, ms) -> str:
    """The model class, sampling, prediction and model type, e.g. for SD3:
    "a SD3 model (flow matching sampling: ModelSamplingDiscreteFlow, CONST prediction, model type FLOW)"."""
    inner = getattr(model, "model", None)
    mtype = getattr(getattr(inner, "model_type", None), "name", None)
    ours = [c.__name__ for c in type(ms).__mro__ if c.__module__ == comfy.model_sampling.__name__]
    schedule = next((n for n in ours if n.startswith("ModelSampling")), type(ms).__name__)
    prediction = next((n for n in ours if not n.startswith("ModelSampling")), "unknown")
    kind = "flow matching" if isinstance(ms, comfy.model_sampling.CONST) else (mtype or prediction)
    return (f"a {type(inner).__name__} model ({kind} sampling: {schedule}, {prediction} prediction"
            + (f", model type {mtype}" if mtype else "") + ")")


def model_signature(model) -> tuple:
    """What the denoising model must share with the one that made the INVERSION: the prediction
    type (eps or v) and the compute dtype (the cached keys/values are in it)."""
    ms = model.get_model_object("model_sampling")
    pred = "v-prediction" if isinstance(ms, comfy.model_sampling.V_PREDICTION) else "eps-prediction"
    return pred, str(compute_dtype(model)).replace("torch.", "")


def compute_dtype(model) -> torch.dtype:
    """The dtype the UNet computes (and the cached keys/values are) in."""
    return model.get_model_object("manual_cast_dtype") or model.model_dtype()


def sigma_of_timestep(model):
    ms = model.get_model_object("model_sampling")
    return lambda t: float(ms.sigma(torch.tensor(float(t))))


def self_attention_blocks(model) -> list[tuple[str, int]]:
    """(block name, number) of every UNet block that holds self-attention, as the host names them."""
    return list(dict.fromkeys(tuple(layer.key[:2]) for layer in attention_layers(model)))


def attention_layers(model) -> list[AttentionLayer]:
    """Every self-attention (attn1) layer of the UNet with its token-grid divisor and key + value width,
    read from the modules: the latent side halves at every Downsample and doubles at every Upsample."""
    unet = model.get_model_object("diffusion_model")
    found = []
    divisor = 1
    for name, blocks in (("input", getattr(unet, "input_blocks", None)),
                         ("middle", [getattr(unet, "middle_block", None)]),
                         ("output", getattr(unet, "output_blocks", None))):
        for number, block in enumerate(blocks or []):
            if block is None:
                continue
            if any(type(m).__name__ == "Downsample" for m in block.modules()):
                divisor *= 2
            attn = [m.attn1 for m in block.modules() if isinstance(m, comfy_attention.BasicTransformerBlock)]
            for index, a in enumerate(attn):
                found.append(AttentionLayer((name, number, index), divisor,
                                            int(a.to_k.out_features) + int(a.to_v.out_features)))
            if any(type(m).__name__ == "Upsample" for m in block.modules()):
                divisor //= 2
    return found


# ------------------------------------------------------------------ the patched clone

def patched_clone(model, swap: AttentionSwap, kv_owner=None, layers=None):
    """A clone of ``model`` whose self-attention goes through ``swap``; ``model`` is untouched.
    ``kv_owner`` (the K/V cache's ModelPatcher) is loaded with the UNet whenever the clone samples.
    ``layers``: the (block name, number) to patch (the inversion's layer choice; None = all); the
    others keep the model's own self-attention."""
    m = model.clone()
    if kv_owner is not None:
        m.set_additional_models("regiondrag_kv", [kv_owner])
    # attn1 replaces another pack put on the model keep running: RegionDrag's patch swaps the keys/values
    # and hands them on to it (the host picks a (block, number, index) replace over a (block, number) one,
    # so each of those gets a chained patch of its own).
    existing = m.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn1", {})
    blocks = [b for b in self_attention_blocks(model) if layers is None or b in layers]
    for name, number in blocks:
        m.set_model_attn1_replace(_chained(swap, existing.get((name, number))), name, number)
    for key, other in list(existing.items()):
        if len(key) == 3 and tuple(key[:2]) in blocks:
            m.set_model_attn1_replace(_chained(swap, other), key[0], key[1], key[2])

    def name_entries(executor, *args, **kwargs):  # around apply_model, outside a compiled UNet
        options = args[5] if len(args) > 5 else kwargs.get("transformer_options", {})
        swap.enter_call(options.get("uuids"), options.get("cond_or_uncond"))
        return executor(*args, **kwargs)

    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "regiondrag_entries", name_entries)
    if torch_compile.recompile_for_patches(m):
        swap.on_buffer = torch_compile.mark_static
    return m


def _chained(swap: AttentionSwap, other=None):
    """The attn1 replace: ``swap`` captures or replaces keys/values, then ``other`` (a replace already on
    the model) or ComfyUI's attention computes the output. A plain closure: clone() deep-copies
    model_options."""
    inner = other or _host_attention

    def attn1(q, k, v, extra_options):
        return swap(q, k, v, extra_options, inner=inner)
    return attn1
