"""The thin layer between the RegionDrag core and ComfyUI's model patchers and samplers."""
from __future__ import annotations

import logging
import weakref

import torch

import comfy.model_management
import comfy.model_patcher
import comfy.model_sampling
import comfy.patcher_extension
import comfy.samplers
import comfy.utils
import latent_preview
from comfy.ldm.modules import attention as comfy_attention
from comfy_api.torch_helpers.torch_compile import (COMPILE_KEY, TORCH_COMPILE_KWARGS as COMPILE_KWARGS,
                                                   apply_torch_compile_factory)

from ..regiondrag_core.errors import RegionDragInputError
from ..regiondrag_core.kvbank import AttentionLayer, AttentionSwap, KVBank, kv_cache_bytes

log = logging.getLogger("RegionDrag")


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


def check_model(model, node: str) -> None:
    """RegionDrag's DDPM math needs a discrete variance-preserving (eps or v) model with a UNet."""
    ms = model.get_model_object("model_sampling")
    vp = (isinstance(ms, comfy.model_sampling.ModelSamplingDiscrete)
          and isinstance(ms, comfy.model_sampling.EPS)
          and not isinstance(ms, (comfy.model_sampling.EDM, comfy.model_sampling.X0)))
    if not vp:
        raise RegionDragInputError(
            node, "model",
            f"is {_model_kind(model, ms)}, which RegionDrag does not support: its DDPM inversion needs a "
            f"discrete-time eps- or v-prediction model. {SUPPORTED}.",
            "Load an SD1.5, SD2.x or SDXL checkpoint, and leave out ModelSampling* nodes that switch it to "
            "another sampling type.")
    if not self_attention_blocks(model):
        raise RegionDragInputError(
            node, "model", f"is {_model_kind(model, ms)} with no UNet self-attention layers to share keys/values "
            f"through. {SUPPORTED}.", "Load an SD1.5, SD2.x or SDXL checkpoint.")


SUPPORTED = ("Supported: SD1.5, SD2.x (512 eps and 768 v-prediction) and SDXL checkpoints, and models "
             "fine-tuned from them")


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


def compute_dtype(model) -> torch.dtype:
    """The dtype the UNet computes (and the cached keys/values are) in."""
    return model.get_model_object("manual_cast_dtype") or model.model_dtype()


def kv_cache_estimate(model, latent_shape, levels: int, blocks=None, entries: int = 1, itemsize=None):
    """(bytes, layers) the K/V cache of an inversion of ``latent_shape`` (B, C, h, w) over ``levels``
    steps will hold, for the self-attention layers in ``blocks`` ((name, number); None = all), in the
    model's compute dtype unless ``itemsize`` is given."""
    layers = [a for a in attention_layers(model) if blocks is None or tuple(a.key[:2]) in blocks]
    if itemsize is None:
        itemsize = torch.empty((), dtype=compute_dtype(model)).element_size()
    batch = int(latent_shape[0]) if len(latent_shape) == 4 else 1
    return kv_cache_bytes(layers, tuple(latent_shape[-2:]), levels, itemsize, entries * batch), len(layers)


def gib(n: float) -> str:
    """Bytes for the log: GiB with two decimals, MiB below 1 GiB."""
    return f"{n / 2**30:.2f} GiB" if abs(n) >= 2**30 else f"{n / 2**20:.1f} MiB"


def kv_placement(kv_cache: str, kv_bytes: int, device, call_bytes: float):
    """Where the K/V cache goes: (storage device for KVBank, None = the model's device; the reason).

    "auto": on the model's device when the whole cache fits in ComfyUI's free-memory figure for that
    device beside one batch-1 inversion call of the UNet (``call_bytes``: ComfyUI's memory_required
    estimate with the 1.5x margin of its own cond batching) and ComfyUI's minimum inference reserve
    (``minimum_inference_memory``); otherwise in host memory, pinned. When the model runs on the CPU
    itself both places are host memory: the model's device."""
    device = torch.device(device)
    if kv_cache == "cpu":
        return torch.device("cpu"), "kv_cache = cpu"
    if kv_cache == "model device":
        return None, "kv_cache = model device"
    if device == torch.device("cpu"):
        return None, "the model runs on the CPU"
    free = comfy.model_management.get_free_memory(device)
    reserve = comfy.model_management.minimum_inference_memory()
    need = kv_bytes + call_bytes + reserve
    why = (f"{gib(free)} free on {device} {'>=' if need <= free else '<'} {gib(kv_bytes)} cache + "
           f"{gib(call_bytes)} UNet call + {gib(reserve)} reserve")
    return (None, why) if need <= free else (torch.device("cpu"), why)


def inversion_plan(model, bank: KVBank, kv_cache: str, requested: int, levels: int, entries: int,
                   kv_bytes: int, n_layers: int):
    """What the sampler asks with its first latent, once ComfyUI has loaded the UNet: places the K/V
    cache (:func:`kv_placement`, one log line) and returns the levels per inversion call
    (:func:`inversion_chunk`; auto batches in the memory the cache leaves free on the device)."""
    chunk = inversion_chunk(model, requested, levels, entries)

    def plan(x: torch.Tensor) -> int:
        device = torch.device(model.load_device)
        call = model.model.memory_required([entries] + list(x.shape[1:])) * 1.5
        where, why = kv_placement(kv_cache, kv_bytes, device, call)
        bank.place(where)
        shown = f"{where} (pinned)" if where is not None and x.device.type == "cuda" else str(where or device)
        log.info("RegionDrag: K/V cache %s (%d layers x %d steps) on %s: %s", gib(kv_bytes), n_layers, levels,
                 shown, why)
        if not callable(chunk):
            return chunk
        on_device = where is None and not comfy.model_management.is_device_cpu(x.device)
        return chunk(x, reserve=kv_bytes if on_device else 0)
    return plan


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
        swap.enter_call(options.get("uuids"))
        return executor(*args, **kwargs)

    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "regiondrag_entries", name_entries)
    if recompile_for_patches(m):
        swap.on_buffer = _mark_static
    return m


def _chained(swap: AttentionSwap, other=None):
    """The attn1 replace: ``swap`` captures or replaces keys/values, then ``other`` (a replace already on
    the model) or ComfyUI's attention computes the output. A plain closure: clone() deep-copies
    model_options."""
    inner = other or _host_attention

    def attn1(q, k, v, extra_options):
        return swap(q, k, v, extra_options, inner=inner)
    return attn1


# ------------------------------------------------------------------ torch.compile (TorchCompileModel)

_backends: dict = {}   # one backend object per configuration (ComfyUI runs one prompt at a time)


def recompile_for_patches(m) -> bool:
    """Give the patched clone ``m`` a torch.compile of its own when the user's MODEL is compiled.

    TorchCompileModel compiles the UNet once for every sampler that uses the MODEL. ComfyUI 0.8
    also tells torch.compile to ignore ``transformer_options`` when it checks whether a compiled
    graph still fits a call, and torch shares compiled graphs between compiles of the same module
    with an equal backend. A graph first traced without RegionDrag's attention patch would then
    run the edit without it: no keys/values captured, none swapped in. So the clone gets the same
    compile through a backend object of RegionDrag's own: its graphs are traced with the patch,
    are checked against it, and are shared by every RegionDrag run (one warm-up, not one per edit).
    Returns True when ``m`` is compiled.
    """
    kwargs = m.model_options.get(COMPILE_KWARGS)
    if not kwargs or not m.get_wrappers(comfy.patcher_extension.WrappersMP.APPLY_MODEL, COMPILE_KEY):
        return False
    m.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, COMPILE_KEY)
    try:
        backend = _own_backend(kwargs.get("backend", "inductor"), kwargs.get("mode"),
                               kwargs.get("options"), kwargs.get("dynamic"))
        compiled = torch.compile(m.get_model_object("diffusion_model"), backend=backend,
                                 fullgraph=bool(kwargs.get("fullgraph", False)), dynamic=kwargs.get("dynamic"))
    except (ImportError, AttributeError, RuntimeError, ValueError, TypeError) as e:
        log.warning("RegionDrag: cannot compile the UNet the way the MODEL asks (%s: %s); "
                    "this edit runs it uncompiled.", type(e).__name__, e)
        return False
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, COMPILE_KEY,
                           apply_torch_compile_factory({"diffusion_model": compiled}))
    return True


def _own_backend(name, mode=None, options=None, dynamic=None):
    """A torch.compile backend that behaves as ``name`` (with ``mode``/``options``) but is RegionDrag's.

    One object per configuration for the whole process, so compiled graphs are reused across edits.
    ``guard_filter_fn`` is dropped: it is what lets a graph run with patches it was not traced with.
    """
    options = {k: v for k, v in (options or {}).items() if k != "guard_filter_fn"}
    key = (str(name), mode, dynamic, repr(sorted(options.items())))
    if key in _backends:
        return _backends[key]
    if name == "inductor":
        from torch._inductor import list_mode_options
        from torch._inductor.compile_fx import compile_fx
        config = dict(list_mode_options(mode, dynamic)) if mode and mode != "default" else {}
        config.update(options)

        def backend(gm, example_inputs):
            return compile_fx(gm, example_inputs, config_patches=config)
    else:
        inner = torch._dynamo.lookup_backend(name) if isinstance(name, str) else name

        def backend(gm, example_inputs):
            return inner(gm, example_inputs)
    backend.__name__ = f"regiondrag_{getattr(name, '__name__', name)}"
    _backends[key] = backend
    return backend


def _mark_static(t: torch.Tensor) -> None:
    """Staging buffers keep their address across steps: CUDA graphs need not copy them in."""
    if t.is_cuda:
        torch._dynamo.mark_static_address(t, guard=False)


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


def run_sampler(model, positive, latent_samples, sigmas, sampler_function, options, seed, swap=None):
    """Run ``sampler_function`` through ComfyUI's guider/KSAMPLER machinery; returns the LATENT samples.

    ``latent_samples`` is the image LATENT (both halves pass the inverted one, so models that read
    the latent image, such as inpainting checkpoints, see the same input in both); the noise is zero."""
    guider = PositiveGuider(model)
    guider.set_conds(positive)
    if swap is not None:  # which conditioning entry is which, by the ids ComfyUI gave them (prompt order)
        swap.set_entries([c.get("uuid") for c in guider.original_conds.get("positive", [])])
    sampler = comfy.samplers.KSAMPLER(sampler_function, extra_options=options)
    callback = latent_preview.prepare_callback(model, len(sigmas) - 1)
    noise = torch.zeros(latent_samples.shape, dtype=torch.float32, device="cpu")
    samples = guider.sample(noise, latent_samples, sampler, sigmas, denoise_mask=None, callback=callback,
                            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    return samples.to(comfy.model_management.intermediate_device())


def latent_out(model, z0: torch.Tensor) -> torch.Tensor:
    """z_0 (model latent space) as the sampler's output LATENT, computed as the host computes it."""
    return model.model.process_latent_out(z0.to(torch.float32)).to(comfy.model_management.intermediate_device())


# ------------------------------------------------------------------ batched inversion

def inversion_chunk(model, requested: int, levels: int, entries: int = 1):
    """Levels per inversion model call: ``requested`` (>= 1), or for 0 (auto) a callable the sampler
    asks with its first latent, once the model is loaded.

    Auto: one level per call on the CPU (a batch costs as much as its calls there, and one level
    per call keeps no-region reconstruction bit-exact); elsewhere the largest batch whose UNet
    memory estimate fits ComfyUI's free-memory figure with the margin ComfyUI's own cond batching
    keeps (``memory_required * 1.5 < free``). ``entries``: conditioning entries ComfyUI may batch
    together with each latent. ``reserve`` (bytes, asked with the latent): memory the call may not use,
    e.g. a K/V cache that will fill the device while the inversion runs."""
    if requested >= 1:
        return min(int(requested), levels)

    def auto(x: torch.Tensor, reserve: float = 0) -> int:
        if comfy.model_management.is_device_cpu(x.device):
            return 1
        free = comfy.model_management.get_free_memory(x.device) - reserve
        best = 1
        for n in range(1, levels + 1):
            shape = [n * entries] + list(x.shape[1:])
            if model.model.memory_required(shape) * 1.5 < free:
                best = n
            else:
                break
        log.debug("RegionDrag: inversion in chunks of %d levels (%.0f MB free)", best, free / 2**20)
        return best
    return auto


def conditioning_split_key(model, positive, schedule):
    """For each level, which conditioning entries (and their ControlNets) are active at its sigma.

    ComfyUI decides timestep ranges (Conditioning Set Timestep Range, ControlNet start/end percent)
    and hook keyframes from the first sigma of a batch, so a batched inversion call may only hold
    levels that agree on all of them. Returns ``key(level)``; hooks split every level."""
    ms = model.get_model_object("model_sampling")
    ranges = []
    hooked = False
    for entry in positive or []:
        opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
        hooked = hooked or opts.get("hooks") is not None
        if "start_percent" in opts or "end_percent" in opts:
            ranges.append((float(ms.percent_to_sigma(opts.get("start_percent", 0.0))),
                           float(ms.percent_to_sigma(opts.get("end_percent", 1.0)))))
        control = opts.get("control")
        seen = set()
        while control is not None and id(control) not in seen:
            seen.add(id(control))
            pr = getattr(control, "timestep_percent_range", None)
            if pr is not None and tuple(pr) != (0.0, 1.0):
                ranges.append((float(ms.percent_to_sigma(pr[0])), float(ms.percent_to_sigma(pr[1]))))
            control = getattr(control, "previous_controlnet", None)
    if hooked:
        return lambda level: level
    if not ranges:
        return None
    sig = [float(torch.tensor(s, dtype=torch.float32)) for s in schedule.sigmas]
    return lambda level: tuple(not (sig[level] > a or sig[level] < b) for a, b in ranges)


# ------------------------------------------------------------------ the K/V cache under model management

def kv_owner(bank: KVBank, load_device):
    """A ModelPatcher that owns ``bank`` for ComfyUI's memory management, registered as loaded.

    ComfyUI then counts the cached keys/values among its loaded models: loading a bigger model
    offloads them (whole levels, as it offloads a UNet's layers) to the offload device instead of
    running out of memory, and RegionDrag KSampler loads them back as an additional model of its
    UNet. The bank is read through ``KVBank.get`` at every step, wherever they are then."""
    device = bank.storage_device or load_device
    offload = comfy.model_management.unet_offload_device()
    bank.device = device   # where the tensors are now (ModelPatcher's bookkeeping)
    owner = comfy.model_patcher.ModelPatcher(bank, load_device=device, offload_device=offload, size=bank.nbytes())
    comfy.model_management.load_models_gpu([owner])
    return owner


_staging: "weakref.WeakKeyDictionary[KVBank, dict]" = weakref.WeakKeyDictionary()


def staging_for(bank: KVBank) -> dict:
    """Staging buffers shared by the edits of one inversion (outside the cached INVERSION; freed with
    its bank), so a compiled UNet sees the same addresses in every re-edit."""
    return _staging.setdefault(bank, {})
