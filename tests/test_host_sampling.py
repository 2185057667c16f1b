"""DDPM Invert-and-Cache and RegionDrag KSampler inside a real ComfyUI (in-process, CPU, small sizes)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from support import tiny_positive, tiny_unet

pytestmark = [pytest.mark.host, pytest.mark.compat]

STEPS, START_T = 20, 0.5


@pytest.fixture(scope="module")
def tiny():
    """A tiny SD-style UNet (SD15 model config, random weights) and a matching conditioning."""
    return tiny_unet(seed=1), tiny_positive()


def latent(h=16, w=16, seed=5):
    return {"samples": torch.randn(1, 4, h, w, generator=torch.Generator().manual_seed(seed))}


def rect(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def drag_map(core, pairs, h=16, w=16):
    RegionPair = core.masks.RegionPair
    rp = [RegionPair(handle=a, target=b, handle_polygon=None, target_polygon=None) for a, b in pairs]
    return core.mapping.build_drag_map(rp, (h * 8, w * 8), (h, w))


def invert(sn, model, positive, lat, **kw):
    return sn.run_inversion(model, positive, lat, kw.pop("steps", STEPS), kw.pop("start_t", START_T),
                            kw.pop("seed", 7), **kw)


# ------------------------------------------------------------------ exact reconstruction (random SD1.5)
# One inversion level per UNet call (inversion_batch=1): the denoising repeats every inversion call
# bit for bit, so the output LATENT is the input LATENT exactly (batched inversion: see
# test_host_inversion_batch.py).

def test_no_pairs_reconstructs_input_with_kv_swap_active(api, sd15_inputs):
    hc, sn, core = api
    model, positive, lat = sd15_inputs
    inv = invert(sn, model, positive, lat, inversion_batch=1)
    out, swap = sn.run_drag(model, inv, drag_map(core, []), positive, 0.2, 1.0, 11)
    assert sum(swap.calls.values()) == 16 * inv.levels  # SD1.5: 16 self-attention layers, every step
    assert torch.equal(out, lat["samples"]), (out - lat["samples"]).abs().max().item()


def test_alpha0_identity_pair_reconstructs_input(api, sd15_inputs):
    hc, sn, core = api
    model, positive, lat = sd15_inputs
    inv = invert(sn, model, positive, lat, inversion_batch=1)
    m = rect(128, 128, 16, 24, 80, 72)
    out, _ = sn.run_drag(model, inv, drag_map(core, [(m, m)]), positive, 0.2, 0.0, 11)
    assert torch.equal(out, lat["samples"]), (out - lat["samples"]).abs().max().item()


def test_identity_pair_is_exact_for_any_alpha_but_a_drag_is_not(api, sd15_inputs):
    """Handle = target: the paste at the top level restores the blended region before any UNet call
    (exact for any alpha). The control: a real drag (shifted target) does move the latent, so these
    checks can fail."""
    hc, sn, core = api
    model, positive, lat = sd15_inputs
    inv = invert(sn, model, positive, lat, inversion_batch=1)
    m = rect(128, 128, 16, 24, 80, 72)
    out, _ = sn.run_drag(model, inv, drag_map(core, [(m, m)]), positive, 0.2, 1.0, 11)
    assert torch.equal(out, lat["samples"]), (out - lat["samples"]).abs().max().item()
    moved = rect(128, 128, 40, 40, 104, 88)
    out, _ = sn.run_drag(model, inv, drag_map(core, [(m, moved)]), positive, 0.2, 1.0, 11)
    assert (out - lat["samples"]).abs().max().item() > 1e-2


def test_outside_edit_mask_equals_input(api, sd15_inputs):
    hc, sn, core = api
    model, positive, lat = sd15_inputs
    inv = invert(sn, model, positive, lat)
    dm = drag_map(core, [(rect(128, 128, 8, 8, 40, 40), rect(128, 128, 56, 56, 88, 88))])
    area = torch.zeros(1, 128, 128)
    area[:, :, :96] = 1.0  # left three quarters may change
    out, _ = sn.run_drag(model, inv, dm, positive, 0.2, 1.0, 11, edit_mask=area)
    diff = (out - lat["samples"]).abs()[0].amax(0)
    assert diff[:, 12:].max().item() == 0.0
    assert diff[:, :12].max().item() > 1e-2


# ------------------------------------------------------------------ copy-paste and attention (tiny model)

def test_copy_paste_puts_handle_content_on_target(api, tiny):
    hc, sn, core = api
    model, positive = tiny
    m = model.clone()
    seen = {}

    def identity_denoiser(apply_model, args):  # D(x) = x: eps = 0, a prediction known in closed form
        apply_model(args["input"], args["timestep"], **args["c"])  # the UNet still runs: K/V are cached
        return args["input"]

    m.set_model_unet_function_wrapper(identity_denoiser)
    lat = latent()
    inv = invert(sn, m, positive, lat)
    dm = drag_map(core, [(rect(128, 128, 8, 8, 40, 40), rect(128, 128, 72, 64, 104, 96))])
    sn.run_drag(m, inv, dm, positive, 0.2, 1.0, 3, on_level=lambda k, z: seen.__setitem__(k, z.clone()))
    paste = inv.schedule.paste_levels(0.2)
    last = min(k for k in range(1, inv.levels + 1) if paste[k - 1])  # denoising runs k = n .. 1
    assert inv.schedule.timesteps[last] == pytest.approx(200)
    hi, ti = dm.handle_index(), dm.target_index()
    src = inv.latents[last].flatten(2)[:, :, hi]
    assert torch.equal(seen[last].flatten(2)[:, :, ti], src)
    # one level lower nothing is pasted any more: the target has moved on from the handle content
    assert not torch.allclose(seen[last - 1].flatten(2)[:, :, ti], inv.latents[last - 1].flatten(2)[:, :, hi])
    # and the handle content did not stay in place: the handle region was blended with noise
    top = inv.levels
    assert not torch.allclose(seen[top].flatten(2)[:, :, hi[~torch.isin(hi, ti)]],
                              inv.latents[top].flatten(2)[:, :, hi[~torch.isin(hi, ti)]])


def test_kv_replaced_on_every_layer_every_step_and_matters(api, tiny):
    hc, sn, core = api
    import comfy_host  # noqa: F401
    model, positive = tiny
    layers = hc.pack.nodes.model_patch.self_attention_blocks(model)
    assert len(layers) == 7  # input 1, 3; middle 0; output 0-3 of the tiny UNet hold attention
    lat = latent()
    inv = invert(sn, model, positive, lat)
    dm = drag_map(core, [(rect(128, 128, 8, 8, 40, 40), rect(128, 128, 72, 64, 104, 96))])
    on, swap_on = sn.run_drag(model, inv, dm, positive, 0.2, 1.0, 3)
    expected = {(k, (b, n, 0)) for k in range(1, inv.levels + 1) for b, n in layers}
    assert set(swap_on.calls) == expected and set(swap_on.calls.values()) == {1}
    off, swap_off = sn.run_drag(model, inv, dm, positive, 0.2, 1.0, 3, mutual_self_attention=False)
    assert not swap_off.calls
    assert (on - off).abs().max().item() > 1e-3


# ------------------------------------------------------------------ isolation of the user's MODEL

def _plain_ksampler(hc, model, positive):
    lat = latent(seed=9)
    return hc.nodes.KSampler().sample(model, 42, 4, 1.0, "euler", "normal", positive, positive, lat)[0]["samples"]


def test_plain_ksampler_unchanged_by_regiondrag_runs(api, tiny):
    hc, sn, core = api
    import comfy.model_management
    model, positive = tiny
    before = _plain_ksampler(hc, model, positive)
    patches_before = repr(model.model_options)
    lat = latent()
    inv = invert(sn, model, positive, lat)
    dm = drag_map(core, [(rect(128, 128, 8, 8, 40, 40), rect(128, 128, 72, 64, 104, 96))])
    sn.run_drag(model, inv, dm, positive, 0.2, 1.0, 3)
    assert torch.equal(_plain_ksampler(hc, model, positive), before)

    # a run stopped midway (the Stop button raises InterruptProcessingException inside sampling)
    stopper = model.clone()
    calls = []

    def stop_at_third_call(apply_model, args):
        calls.append(1)
        if len(calls) == 3:
            raise comfy.model_management.InterruptProcessingException()
        return apply_model(args["input"], args["timestep"], **args["c"])

    stopper.set_model_unet_function_wrapper(stop_at_third_call)
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        sn.run_drag(stopper, inv, dm, positive, 0.2, 1.0, 3)
    assert torch.equal(_plain_ksampler(hc, model, positive), before)
    assert repr(model.model_options) == patches_before


# ------------------------------------------------------------------ TorchCompileModel upstream

def _torch_compiled(model):
    """ComfyUI's own TorchCompileModel node applied to ``model``. Backend "eager": dynamo traces, guards
    and caches graphs exactly as with "inductor" (which is what decides which code runs), without
    the minutes inductor spends generating kernels on this CPU."""
    import comfy_host
    return comfy_host.torch_compiled(model, "eager")


def test_torch_compile_model_upstream_edits_like_the_plain_model(api, tiny):
    """ComfyUI 0.8's TorchCompileModel tells torch.compile to ignore transformer_options, so a graph
    the user's own KSampler traced (no patch) would also run RegionDrag's calls, with no keys/values
    captured or shared. RegionDrag gives its patched clone a compile of its own."""
    import torch._dynamo
    hc, sn, core = api
    model, positive = tiny
    torch._dynamo.reset()
    lat = latent()
    dm = drag_map(core, [(rect(128, 128, 8, 8, 40, 40), rect(128, 128, 72, 64, 104, 96))])
    ref, _ = sn.run_drag(model, invert(sn, model, positive, lat, steps=10), dm, positive, 0.2, 1.0, 3)
    plain = _plain_ksampler(hc, model, positive)

    compiled = _torch_compiled(model)
    assert torch.equal(_plain_ksampler(hc, compiled, positive), plain)  # traced first, without any patch
    inv = invert(sn, compiled, positive, lat, steps=10)
    out, swap = sn.run_drag(compiled, inv, dm, positive, 0.2, 1.0, 3)
    assert (out - ref).abs().max().item() < 1e-4
    assert len(swap.calls) == 7 * inv.levels
    assert torch.equal(_plain_ksampler(hc, compiled, positive), plain)  # and the user's graphs are left alone
    assert "patches_replace" not in compiled.model_options.get("transformer_options", {})


def test_compiled_unet_is_traced_once_per_half_not_per_step(api, tiny, monkeypatch):
    """Keys/values reach the patch through staging buffers, not through the step number: the compiled
    UNet is one graph for all inversion steps and one for all denoising steps, re-used by later edits."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    from comfy.ldm.modules import attention as comfy_attention
    hc, sn, core = api
    model, positive = tiny
    # The attention --use-pytorch-cross-attention selects (the CUDA default). The CPU default asks
    # psutil for free memory inside the UNet, which splits any compiled UNet into pieces.
    monkeypatch.setattr(comfy_attention, "optimized_attention", comfy_attention.attention_pytorch)
    torch._dynamo.reset()
    compiled = _torch_compiled(model)
    lat = latent()
    dm = drag_map(core, [(rect(128, 128, 8, 8, 40, 40), rect(128, 128, 72, 64, 104, 96))])
    start = counters["stats"]["unique_graphs"]
    inv = invert(sn, compiled, positive, lat, steps=10)
    sn.run_drag(compiled, inv, dm, positive, 0.2, 1.0, 3)
    assert counters["stats"]["unique_graphs"] - start == 2
    sn.run_drag(compiled, inv, dm, positive, 0.2, 0.5, 4)
    sn.run_drag(compiled, invert(sn, compiled, positive, lat, steps=10, seed=8), dm, positive, 0.2, 1.0, 3)
    assert counters["stats"]["unique_graphs"] - start == 2


def test_a_unet_that_skips_attention_patches_is_refused(api, tiny):
    """Whatever skips ComfyUI's attention patches (here a wrapper that drops them) gets a clear error,
    not an edit made without the inversion's keys/values."""
    import comfy.patcher_extension
    hc, sn, core = api
    model, positive = tiny
    m = model.clone()

    def drop_patches(executor, x, timesteps, context, y, control, transformer_options, **kw):
        opts = {k: v for k, v in transformer_options.items() if k != "patches_replace"}
        return executor(x, timesteps, context, y, control, opts, **kw)

    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "test", drop_patches)
    msg = _err(invert, sn, m, positive, latent(), steps=4)
    assert msg.startswith("DDPMInvertAndCache / model:") and "patch" in msg


# ------------------------------------------------------------------ bad input: clear errors

def _err(fn, *a, **kw):
    import regiondrag_core.errors  # noqa: F401  (pure copy; the pack's class is checked by name)
    with pytest.raises(ValueError) as e:
        fn(*a, **kw)
    assert type(e.value).__name__ == "RegionDragInputError"
    return str(e.value)


def test_errors_name_node_input_and_fix(api, tiny):
    hc, sn, core = api
    model, positive = tiny
    lat = latent()
    msg = _err(invert, sn, model, positive, lat, start_t=0.0)
    assert msg.startswith("DDPMInvertAndCache / start_t:")
    assert _err(invert, sn, model, positive, lat, start_t=1.5).startswith("DDPMInvertAndCache / start_t:")
    assert _err(invert, sn, model, positive, lat, steps=1).startswith("DDPMInvertAndCache / steps:")
    batch = {"samples": torch.zeros(2, 4, 16, 16)}
    assert "Latent From Batch" in _err(invert, sn, model, positive, batch)
    video = {"samples": torch.zeros(1, 4, 2, 16, 16)}
    assert _err(invert, sn, model, positive, video).startswith("DDPMInvertAndCache / latent:")

    inv = invert(sn, model, positive, lat, steps=4)
    dm = drag_map(core, [(rect(128, 128, 8, 8, 40, 40), rect(128, 128, 72, 64, 104, 96))])
    msg = _err(sn.run_drag, model, inv, dm, positive, 0.8, 1.0, 3)
    assert msg.startswith("RegionDragKSampler / end_t:") and "start_t" in msg
    assert _err(sn.run_drag, model, inv, dm, positive, 0.2, 1.5, 3).startswith("RegionDragKSampler / noise_weight:")
    assert _err(sn.run_drag, model, inv, dm, positive, 0.2, -0.1, 3).startswith("RegionDragKSampler / noise_weight:")
    small = drag_map(core, [(rect(64, 64, 8, 8, 24, 24), rect(64, 64, 32, 32, 48, 48))], 8, 8)
    msg = _err(sn.run_drag, model, inv, small, positive, 0.2, 1.0, 3)
    assert msg.startswith("RegionDragKSampler / drag_map:") and "64x64" in msg and "128x128" in msg
    msg = _err(sn.run_drag, model, inv, dm, positive, 0.2, 1.0, 3, edit_mask=torch.ones(1, 100, 100))
    assert msg.startswith("RegionDragKSampler / edit_mask:")
    assert _err(sn.run_drag, model, "nope", dm, positive, 0.2, 1.0, 3).startswith("RegionDragKSampler / inversion:")


def test_inversion_from_other_step_count_is_rejected_by_schedule_check(api, tiny):
    """An INVERSION is self-describing: the sampler follows its steps; a different model schedule is refused."""
    hc, sn, core = api
    model, positive = tiny
    lat = latent()
    inv = invert(sn, model, positive, lat, steps=10, start_t=0.5)
    assert inv.levels == 5 and inv.schedule.timesteps[-1] == 500
    other = model.clone()
    import comfy.model_sampling

    class ZeroTerminalSNR(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.EPS):
        pass

    other.add_object_patch("model_sampling", ZeroTerminalSNR(other.model.model_config, zsnr=True))
    dm = drag_map(core, [])
    msg = _err(sn.run_drag, other, inv, dm, positive, 0.2, 1.0, 3)
    assert msg.startswith("RegionDragKSampler / inversion:") and "schedule" in msg


def test_random_checkpoint_is_sd15_shaped(api, sd15, sd15_checkpoint):
    """The test checkpoint has SD1.5's exact tensors, and CheckpointLoaderSimple detects it as SD15."""
    from safetensors import safe_open
    hc, sn, core = api
    model, clip, vae = sd15
    assert type(model.model.model_config).__name__ == "SD15"
    assert hc.pack.nodes.model_patch.self_attention_blocks(model) == (
        [("input", i) for i in (1, 2, 4, 5, 7, 8)] + [("middle", 0)] + [("output", i) for i in range(3, 12)])
    totals = {}
    with safe_open(sd15_checkpoint, "pt") as f:
        for key in f.keys():
            part = ".".join(key.split(".")[:2]) if key.startswith("model.") else key.split(".")[0]
            shape = f.get_slice(key).get_shape()
            totals[part] = totals.get(part, 0) + int(np.prod(shape))
    assert totals == {"model.diffusion_model": 859_520_964, "first_stage_model": 83_653_863,
                      "cond_stage_model": 123_060_480}
