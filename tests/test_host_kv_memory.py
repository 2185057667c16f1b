"""The K/V cache's placement (kv_cache auto / model device / cpu) and layer choice (kv_layers), in a real
ComfyUI (in-process, CPU, small sizes).

Auto placement reads ComfyUI's free-memory figure for the model's device. A CPU has no device memory to
run short of, so as in tests/test_host_memory.py the model's device here is ``cpu:0`` (ComfyUI manages
it as a device of its own) and only ``comfy.model_management.get_free_memory`` is simulated.
"""
from __future__ import annotations

import logging

import pytest
import torch

from support import LogLines, sd15_prompt_and_latent

pytestmark = [pytest.mark.host, pytest.mark.compat]

DEVICE = torch.device("cpu", 0)   # != torch.device("cpu"): a device auto must decide for
STEPS, START_T = 8, 0.5   # 4 inversion + 4 denoising steps: a shared 2-core CPU
LEVELS = STEPS // 2
SD15_LAYERS = {"all": 16, "decoder only": 9, "encoder + middle": 7}


@pytest.fixture(scope="module")
def sd15_small(sd15, comfyui):
    """The random SD1.5 checkpoint, its conditioning and a 64x64-pixel latent."""
    return sd15_prompt_and_latent(sd15, comfyui, 8)


@pytest.fixture
def records():
    log = logging.getLogger("RegionDrag")
    h = LogLines()
    old = log.level
    log.addHandler(h)
    log.setLevel(logging.INFO)
    yield h.lines
    log.removeHandler(h)
    log.setLevel(old)


def on_device(model):
    """A clone of ``model`` that ComfyUI loads on DEVICE (the weights stay in host memory)."""
    m = model.clone()
    m.load_device = DEVICE
    return m


def simulate_free(monkeypatch, free: int):
    """get_free_memory says ``free`` bytes for DEVICE; other devices keep the real figure."""
    import comfy.model_management as mm
    real = mm.get_free_memory

    def fake(dev=None, torch_free_too=False):
        if dev is not None and torch.device(dev) == DEVICE:
            return (free, free) if torch_free_too else free
        return real(dev, torch_free_too)
    monkeypatch.setattr(mm, "get_free_memory", fake)


def no_pairs(core, latent):
    h, w = latent["samples"].shape[2:]
    return core.mapping.build_drag_map([], (h * 8, w * 8), (h, w))


def layer_keys(inv):
    return {key[1] for key in inv.bank.keys()}


def budget(host, model, latent, kv_bytes, fits: bool) -> int:
    """A free-memory figure just above (or below) what auto needs to keep the cache on the device."""
    import comfy.model_management as mm
    call = model.model.memory_required([1] + list(latent["samples"].shape[1:])) * 1.5
    need = kv_bytes + call + mm.minimum_inference_memory()
    return int(need + 1) if fits else int(need - kv_bytes // 2)


# ------------------------------------------------------------------ auto placement

@pytest.mark.parametrize("fits", [True, False])
def test_auto_places_the_cache_from_comfyuis_free_memory(api, sd15_small, monkeypatch, records, fits):
    """kv_cache auto: on the model's device when the cache fits beside a UNet call and ComfyUI's reserve,
    else in host memory; one log line with the size, layers x steps, placement and the figures. Either
    way a no-region edit gives the input back bit for bit."""
    import comfy.model_management as mm
    hc, sn, core = api
    host = hc.pack.nodes.memory
    base, positive, latent = sd15_small
    model = on_device(base)
    kv_bytes, n_layers = host.kv_cache_estimate(model, (1, 4, 8, 8), LEVELS)
    free = budget(host, model, latent, kv_bytes, fits)
    simulate_free(monkeypatch, free)
    try:
        inv = sn.run_inversion(model, positive, latent, STEPS, START_T, 7)   # kv_cache default: auto
        assert inv.bank.storage_device == (None if fits else torch.device("cpu"))
        assert inv.bank.nbytes() == kv_bytes and n_layers == 16
        line = [s for s in records if s.startswith("RegionDrag: K/V cache")]
        assert len(line) == 1, records
        where = "cpu:0" if fits else "cpu"   # the model's device, or host memory
        assert line[0].startswith(f"RegionDrag: K/V cache {host.gib(kv_bytes)} (16 layers x {LEVELS} steps) "
                                  f"on {where}: {host.gib(free)} free on cpu:0 {'>=' if fits else '<'} "), line
        assert host.gib(kv_bytes).endswith(" MiB") and host.gib(4194304000) == "3.91 GiB"
        assert inv.chunk == 1   # auto batching: one level per call on a CPU device
        out, swap = sn.run_drag(model, inv, no_pairs(core, latent), positive, 0.2, 1.0, 11)
        assert torch.equal(out, latent["samples"])
        assert set(swap.calls.values()) == {1} and len(swap.calls) == LEVELS * 16
    finally:
        mm.free_memory(1e30, DEVICE)


def test_auto_on_the_cpu_keeps_the_model_device_and_old_values_still_work(api, sd15_small, records):
    """On the CPU itself auto = model device (both are host memory). The saved-workflow values
    "model device" and "cpu" still load and run; the node's default is auto."""
    hc, sn, core = api
    model, positive, latent = sd15_small
    ref = None
    for kv_cache, where in (("auto", None), ("model device", None), ("cpu", torch.device("cpu"))):
        inv = sn.run_inversion(model, positive, latent, STEPS, START_T, 7, kv_cache, 1)
        assert inv.bank.storage_device == where, kv_cache
        out, _ = sn.run_drag(model, inv, no_pairs(core, latent), positive, 0.2, 1.0, 11)
        assert torch.equal(out, latent["samples"]), kv_cache
        ref = inv.posterior_means if ref is None else ref
        assert all(torch.equal(a, b) for a, b in zip(inv.posterior_means, ref)), kv_cache
    assert any("on cpu: the model runs on the CPU" in s for s in records), records
    assert any("on cpu: kv_cache = cpu" in s for s in records), records
    schema = sn.DDPMInvertAndCache.define_schema()
    kv = next(i for i in schema.inputs if i.id == "kv_cache")
    assert kv.default == "auto" and {"auto", "model device", "cpu"} <= set(kv.options)
    layers = next(i for i in schema.inputs if i.id == "kv_layers")
    assert layers.default == "all" and layers.optional


def test_auto_batching_and_placement_share_the_device(api, sd15_small, monkeypatch):
    """Auto with inversion_batch auto on a non-CPU device (a meta latent: shapes only): the cache on the
    device leaves the batched call the memory left after it; in host memory the call may use it all."""
    import comfy.model_management as mm
    hc, sn, core = api
    host = hc.pack.nodes.memory
    base, _, latent = sd15_small
    model = on_device(base)
    shape = [1, 4, 64, 64]
    x = torch.empty(shape, device="meta")
    per_level = model.model.memory_required(shape) * 1.5
    kv_bytes = 3 * int(per_level)
    reserve = mm.minimum_inference_memory()

    def plan_with(free):
        monkeypatch.setattr(mm, "get_free_memory", lambda dev=None, torch_free_too=False: free)
        bank = host.KVBank()
        chunk = host.inversion_plan(model, bank, "auto", 0, 10, 1, kv_bytes, 16)(x)
        return bank.storage_device, chunk

    # plenty: cache on the device, and the batch gets what the cache leaves
    free = kv_bytes + reserve + 20 * per_level
    where, chunk = plan_with(free)
    assert where is None
    assert chunk == max(n for n in range(1, 11) if model.model.memory_required([n] + shape[1:]) * 1.5 < free - kv_bytes)
    # too little for the cache beside a call and the reserve: host memory, and the batch may use all of it
    free = kv_bytes + reserve
    where, chunk = plan_with(free)
    assert where == torch.device("cpu")
    assert chunk == max(n for n in range(1, 11) if model.model.memory_required([n] + shape[1:]) * 1.5 < free)
    # a fixed inversion_batch is kept whatever the placement
    monkeypatch.setattr(mm, "get_free_memory", lambda dev=None, torch_free_too=False: 0)
    bank = host.KVBank()
    assert host.inversion_plan(model, bank, "auto", 4, 10, 1, kv_bytes, 16)(x) == 4
    assert bank.storage_device == torch.device("cpu")


# ------------------------------------------------------------------ layer choice

@pytest.mark.parametrize("choice", list(SD15_LAYERS))
def test_each_layer_choice_reconstructs_exactly_and_swaps_only_its_layers(api, sd15_small, choice):
    """kv_layers: only the chosen self-attention layers are cached and swapped (every step, once), the
    others run plain self-attention; the cache is the estimate's size; a no-region edit gives the input
    back bit for bit."""
    hc, sn, core = api
    host = hc.pack.nodes.memory
    model, positive, latent = sd15_small
    inv = sn.run_inversion(model, positive, latent, STEPS, START_T, 7, "auto", 1, choice)
    blocks = set(hc.pack.nodes.model_patch.self_attention_blocks(model))
    names = {"all": ("input", "middle", "output"), "decoder only": ("output",),
             "encoder + middle": ("input", "middle")}[choice]
    assert inv.layers == {b for b in blocks if b[0] in names} and inv.layer_choice == choice
    layers = {a.key for a in hc.pack.nodes.model_patch.attention_layers(model) if a.key[0] in names}
    assert len(layers) == SD15_LAYERS[choice]
    assert layer_keys(inv) == layers
    assert inv.bank.nbytes() == host.kv_cache_estimate(model, (1, 4, 8, 8), LEVELS, inv.layers)[0]
    out, swap = sn.run_drag(model, inv, no_pairs(core, latent), positive, 0.2, 1.0, 11)
    assert set(swap.calls) == {(k, layer) for k in range(1, LEVELS + 1) for layer in layers}
    assert set(swap.calls.values()) == {1}
    assert torch.equal(out, latent["samples"])


def test_fewer_layers_change_a_drag(api, sd15_small):
    """The control: with a real drag, a decoder-only edit differs from the all-layer edit (the encoder's
    self-attention then sees its own keys/values), so the choice takes effect."""
    import numpy as np
    hc, sn, core = api
    model, positive, latent = sd15_small
    a = np.zeros((64, 64), bool)
    a[8:32, 8:32] = True
    dm = core.mapping.build_drag_map([core.masks.RegionPair(handle=a, target=np.roll(a, 24, axis=1),
                                                              handle_polygon=None, target_polygon=None)],
                                     (64, 64), (8, 8))
    outs = [sn.run_drag(model, sn.run_inversion(model, positive, latent, STEPS, START_T, 7, "auto", 1, c), dm,
                        positive, 0.2, 1.0, 11)[0] for c in ("all", "decoder only")]
    assert not torch.equal(outs[0], outs[1])


def test_bad_kv_values_name_node_input_and_fix(api, sd15_small):
    hc, sn, core = api
    model, positive, latent = sd15_small
    with pytest.raises(ValueError, match=r"^DDPMInvertAndCache / kv_cache: .*'gpu'"):
        sn.run_inversion(model, positive, latent, STEPS, START_T, 7, "gpu")
    with pytest.raises(ValueError, match=r"^DDPMInvertAndCache / kv_layers: .*'decoder'"):
        sn.run_inversion(model, positive, latent, STEPS, START_T, 7, "auto", 0, "decoder")
