"""Memory on ComfyUI: the K/V cache's size and place under model management, and the inversion's batch size."""
from __future__ import annotations

import logging
import weakref

import torch

import comfy.model_management
import comfy.model_patcher

from ..regiondrag_core.kvbank import KVBank, kv_cache_bytes
from .model_patch import attention_layers, compute_dtype

log = logging.getLogger("RegionDrag")


def gib(n: float) -> str:
    """Bytes for the log: GiB with two decimals, MiB below 1 GiB."""
    return f"{n / 2**30:.2f} GiB" if abs(n) >= 2**30 else f"{n / 2**20:.1f} MiB"


def kv_cache_estimate(model, latent_shape, levels: int, blocks=None, entries: int = 1, itemsize=None,
                      passes: int = 1):
    """(bytes, layers) the K/V cache of an inversion of ``latent_shape`` (B, C, h, w) over ``levels``
    steps will hold, for the self-attention layers in ``blocks`` ((name, number); None = all), in the
    model's compute dtype unless ``itemsize`` is given, ``entries`` conditioning entries each seen by at
    most ``passes`` UNet passes per step (guidance patches that call the UNet again)."""
    layers = [a for a in attention_layers(model) if blocks is None or tuple(a.key[:2]) in blocks]
    if itemsize is None:
        itemsize = torch.empty((), dtype=compute_dtype(model)).element_size()
    batch = int(latent_shape[0]) if len(latent_shape) == 4 else 1
    return kv_cache_bytes(layers, tuple(latent_shape[-2:]), levels, itemsize, entries * batch, passes), len(layers)


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
