"""The K/V cache of a cached INVERSION under ComfyUI's model management (in-process, CPU).

ComfyUI keeps an INVERSION in its output cache for re-edits. Its keys/values (0.42 GB for SD1.5 at
512x512, fp16) are owned by a ModelPatcher that ComfyUI lists among its loaded models, so loading a
bigger model offloads them instead of running out of memory, and RegionDrag KSampler loads them back.

A CPU has no device memory to run short of, and ComfyUI's ``load_models_gpu`` frees memory only on
devices other than ``cpu``. So the device here is ``cpu:0`` (ComfyUI treats it as a device of its
own, as it would ``cuda:0``) with ``cpu`` as the offload device, and the *free-memory figure* is
simulated: a fixed budget minus what is resident there. Everything else is ComfyUI's real code:
``load_models_gpu``, ``free_memory``, ``LoadedModel``, ``ModelPatcher`` load/unload.
"""
from __future__ import annotations

import gc

import pytest
import torch

from support import tiny_positive, tiny_unet

pytestmark = [pytest.mark.host, pytest.mark.compat]

DEVICE = torch.device("cpu", 0)   # != torch.device("cpu"): ComfyUI manages its memory


def tiny(seed=1, channels=32):
    return tiny_unet(seed=seed, load_device=DEVICE, model_channels=channels)


def inputs():
    positive = tiny_positive()
    latent = {"samples": torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(5))}
    return positive, latent


def drag_map(core):
    import numpy as np
    h = np.zeros((256, 256), bool)
    h[40:120, 40:120] = True
    t = np.roll(h, 48, axis=1)
    pair = core.masks.RegionPair(handle=h, target=t, handle_polygon=None, target_polygon=None)
    return core.mapping.build_drag_map([pair], (256, 256), (32, 32))


class SimulatedDevice:
    """get_free_memory for DEVICE: a budget minus what is resident there. ComfyUI's loaded models count
    with the memory ComfyUI says they hold; a K/V bank counts in full unless ComfyUI moved it off
    (its ModelPatcher bookkeeping, ``bank.device``), so a cache ComfyUI cannot see is always resident."""

    def __init__(self, mm, budget, banks):
        self.mm, self.budget, self.banks = mm, budget, banks

    def used(self):
        loaded = [lm for lm in self.mm.current_loaded_models   # real_model None: unloaded, about to be dropped
                  if lm.device == DEVICE and lm.real_model is not None and lm.model is not None]
        owned = {id(lm.model.model) for lm in loaded if lm.model is not None}
        used = sum(lm.model_loaded_memory() for lm in loaded)
        for bank in self.banks:
            if id(bank) not in owned and getattr(bank, "device", DEVICE) == DEVICE:
                used += bank.nbytes()
        return used

    def __call__(self, dev=None, torch_free_too=False):
        if dev is not None and dev != DEVICE:
            return self.real(dev, torch_free_too)
        free = max(0, self.budget - self.used())
        return (free, free) if torch_free_too else free


def test_cached_inversion_gives_way_to_a_bigger_model(api, monkeypatch):
    import comfy.model_management as mm
    hc, sn, core = api
    mm.free_memory(1e30, DEVICE)
    model = tiny()
    positive, lat = inputs()
    inv = sn.run_inversion(model, positive, lat, 20, 0.5, 7, inversion_batch=1)
    dm = drag_map(core)
    before, _ = sn.run_drag(model, inv, dm, positive, 0.2, 1.0, 3)

    owners = [lm for lm in mm.current_loaded_models if lm.model is inv.owner]
    assert len(owners) == 1 and owners[0].device == DEVICE                     # ComfyUI sees the cache
    assert owners[0].model_memory() == inv.bank.nbytes() == owners[0].model_loaded_memory() > 0

    bigger = tiny(seed=3, channels=64)
    need = bigger.model_size() * 1.1 + max(mm.minimum_inference_memory(), mm.extra_reserved_memory())
    device = SimulatedDevice(mm, budget=int(need + inv.bank.nbytes() // 2), banks=[inv.bank])
    device.real = mm.get_free_memory
    assert device.used() + need > device.budget   # the K/V and the new model do not fit together
    monkeypatch.setattr(mm, "get_free_memory", device)

    mm.load_models_gpu([bigger])                                               # ComfyUI's own loading path
    assert any(lm.model is bigger for lm in mm.current_loaded_models)
    assert device.used() <= device.budget, (device.used(), device.budget)      # nothing over the budget
    kv = [lm for lm in mm.current_loaded_models if lm.model is inv.owner]
    assert not kv or kv[0].model_loaded_memory() < inv.bank.nbytes()        # K/V offloaded, whole or in part

    after, _ = sn.run_drag(model, inv, dm, positive, 0.2, 1.0, 3)             # loaded back with the UNet
    kv = [lm for lm in mm.current_loaded_models if lm.model is inv.owner]
    assert kv and kv[0].model_loaded_memory() == inv.bank.nbytes()
    assert torch.equal(after, before)
    mm.free_memory(1e30, DEVICE)


def test_unload_models_and_dropping_the_inversion_free_the_cache(api):
    """ComfyUI's "Unload models" (unload_all_models: free_memory(1e30, device)) offloads the cache; a later
    edit is unchanged.
    When ComfyUI drops the INVERSION from its cache, nothing of it stays listed as loaded."""
    import weakref

    import comfy.model_management as mm
    hc, sn, core = api
    model = tiny()
    positive, lat = inputs()
    inv = sn.run_inversion(model, positive, lat, 20, 0.5, 7, inversion_batch=1)
    dm = drag_map(core)
    before = sn.run_drag(model, inv, dm, positive, 0.2, 1.0, 3)[0]
    mm.free_memory(1e30, DEVICE)
    assert not any(lm.model is inv.owner for lm in mm.current_loaded_models)
    after = sn.run_drag(model, inv, dm, positive, 0.2, 1.0, 3)[0]
    assert torch.equal(after, before)
    bank = weakref.ref(inv.bank)
    del inv
    gc.collect()
    mm.cleanup_models_gc()
    assert bank() is None
    assert all(lm.model is None or lm.model.model is not None for lm in mm.current_loaded_models)
    mm.free_memory(1e30, DEVICE)
