"""Batched DDPM inversion (DDPM Invert-and-Cache's ``inversion_batch``) inside a real ComfyUI, on the CPU.

The inversion's forward draws need no model, so its UNet calls can share one batched call (every
latent with its own sigma). Batched and one-level-per-call inversions must agree: the same latents
bit for bit, posterior means and keys/values within kernel rounding. One level per call keeps the
no-region edit bit-exact in every dtype (fp16 and bf16 computed as such, not cast to fp32).
"""
from __future__ import annotations

import pytest
import torch

from support import tiny_positive, tiny_unet

pytestmark = pytest.mark.host

STEPS, START_T = 20, 0.5
# No-region reconstruction after a batched inversion, max |out - in| in the latent, by the dtype the
# UNet computes in. Measured on the CPU (2-core x86, torch 2.13, ComfyUI 0.8.0): random SD1.5 128x128
# fp32, chunks 3 / 10: 2.3e-5 / 2.0e-5; tiny random UNet, chunk 10: fp32 4.9e-5, fp16 0.090, bf16 0.
# Batch and batch-1 kernels round differently and random weights amplify it through the 10 levels;
# one level per call is exact.
BATCHED_BOUND = {torch.float32: 1e-3, torch.float16: 0.25, torch.bfloat16: 0.25}


def compute_dtype(model):
    unet = model.model
    return unet.manual_cast_dtype or unet.get_dtype()


@pytest.fixture(scope="module")
def sequential(api, sd15_inputs):
    hc, sn, core = api
    model, positive, lat = sd15_inputs
    return sn.run_inversion(model, positive, lat, STEPS, START_T, 7, inversion_batch=1)


def tiny_model(dtype, device="cpu"):
    """A tiny SD-style UNet computing in ``dtype`` (no fp32 cast), as ComfyUI runs a fp16 UNet on a GPU."""
    m = tiny_unet(dtype=dtype, load_device=device)
    assert m.model.get_dtype() == dtype and m.model.manual_cast_dtype is None
    return m


def tiny_inputs():
    positive = tiny_positive()
    latent = {"samples": torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5))}
    return positive, latent


def no_pairs(core, h=16, w=16):
    return core.mapping.build_drag_map([], (h * 8, w * 8), (h, w))


@pytest.mark.parametrize("chunk", [1, pytest.param(3, marks=pytest.mark.compat), 10])
def test_batched_inversion_equals_sequential_sd15(api, sd15_inputs, sequential, chunk):
    hc, sn, core = api
    model, positive, lat = sd15_inputs
    inv = sn.run_inversion(model, positive, lat, STEPS, START_T, 7, inversion_batch=chunk)
    assert inv.chunk == chunk and inv.levels == 10
    assert all(torch.equal(a, b) for a, b in zip(inv.latents, sequential.latents))   # draws need no model
    mean_err = max((a - b).abs().max().item() for a, b in zip(inv.posterior_means, sequential.posterior_means))
    noise_err = max((a - b).abs().max().item() for a, b in zip(inv.noise_terms, sequential.noise_terms))
    assert set(inv.bank.keys()) == set(sequential.bank.keys()) and len(inv.bank.keys()) == 16 * 10
    kv_err = 0.0
    for key, (k, v) in sequential.bank.entries.items():
        kb, vb = inv.bank.get(*key)
        assert kb.shape == k.shape and vb.shape == v.shape and kb.dtype == k.dtype
        kv_err = max(kv_err, (kb - k).abs().max().item(), (vb - v).abs().max().item())
    out, _ = sn.run_drag(model, inv, no_pairs(core), positive, 0.2, 1.0, 11)
    recon = (out - lat["samples"]).abs().max().item()
    print(f"\nchunk {chunk}: posterior means {mean_err:.3g}, noise terms {noise_err:.3g}, K/V {kv_err:.3g}, "
          f"no-region reconstruction {recon:.3g}")
    if chunk == 1:
        assert mean_err == noise_err == kv_err == recon == 0.0
    else:
        bound = BATCHED_BOUND[compute_dtype(model)]
        assert mean_err < bound and noise_err < bound and kv_err < 10 * bound and recon < bound


@pytest.mark.compat
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
def test_sequential_inversion_reconstructs_bit_exactly_in_every_dtype(api, dtype):
    """Inside ComfyUI's sampling the latents are float32 whatever the UNet computes in (its wrapper
    casts x to the UNet's dtype and the output back); the exact step holds for a fp16/bf16 UNet."""
    hc, sn, core = api
    model = tiny_model(dtype)
    positive, lat = tiny_inputs()
    inv = sn.run_inversion(model, positive, lat, STEPS, START_T, 7, inversion_batch=1)
    assert inv.latents[1].dtype == torch.float32 and inv.bank.get(1, ("input", 1, 0), 0)[0].dtype == dtype
    out, _ = sn.run_drag(model, inv, no_pairs(core), positive, 0.2, 1.0, 11)
    assert torch.equal(out, lat["samples"]), (out - lat["samples"]).abs().max().item()
    batched = sn.run_inversion(model, positive, lat, STEPS, START_T, 7, inversion_batch=10)
    out, _ = sn.run_drag(model, batched, no_pairs(core), positive, 0.2, 1.0, 11)
    err = (out - lat["samples"]).abs().max().item()
    print(f"\n{dtype}: batched inversion, no-region reconstruction {err:.3g}")
    assert err < BATCHED_BOUND[dtype]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_sequential_inversion_is_bit_exact_on_cuda(api, dtype):
    """The same on a GPU: CUDA kernels repeat a call bit for bit, so one level per call is exact there too."""
    hc, sn, core = api
    model = tiny_model(dtype, "cuda")
    positive, lat = tiny_inputs()
    inv = sn.run_inversion(model, positive, lat, STEPS, START_T, 7, inversion_batch=1)
    assert inv.latents[1].is_cuda
    out, _ = sn.run_drag(model, inv, no_pairs(core), positive, 0.2, 1.0, 11)
    assert torch.equal(out.cpu(), lat["samples"]), (out.cpu() - lat["samples"]).abs().max().item()
    batched = sn.run_inversion(model, positive, lat, STEPS, START_T, 7, inversion_batch=10)
    out, _ = sn.run_drag(model, batched, no_pairs(core), positive, 0.2, 1.0, 11)
    err = (out.cpu() - lat["samples"]).abs().max().item()
    print(f"\nCUDA {dtype}: batched inversion, no-region reconstruction {err:.3g}")
    assert err < BATCHED_BOUND[dtype]


@pytest.mark.compat
def test_batched_inversion_reports_progress_and_stops(api):
    """One batched call for all levels: the progress bar still reaches every step, and ComfyUI's
    Stop (the progress hook raising on interrupt, as main.py installs it) ends the run cleanly."""
    import comfy.model_management
    import comfy.utils
    hc, sn, core = api
    model = tiny_model(torch.float32)
    positive, lat = tiny_inputs()
    seen = []

    def hook(value, total, preview, prompt_id=None, node_id=None):
        seen.append((value, total))
        if value == 2 and stop:
            comfy.model_management.interrupt_current_processing(True)
        comfy.model_management.throw_exception_if_processing_interrupted()

    old = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        stop = False
        inv = sn.run_inversion(model, positive, lat, STEPS, START_T, 7, inversion_batch=10)
        assert inv.chunk == 10 and [v for v, _ in seen] == list(range(1, 11)) and {t for _, t in seen} == {10}
        seen.clear()
        stop = True
        options = repr(model.model_options)
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            sn.run_inversion(model, positive, lat, STEPS, START_T, 8, inversion_batch=10)
        assert [v for v, _ in seen] == [1, 2] and repr(model.model_options) == options
    finally:
        comfy.utils.set_progress_bar_global_hook(old)
        comfy.model_management.interrupt_current_processing(False)


@pytest.mark.compat
def test_auto_batch_is_one_level_per_call_on_the_cpu(api):
    hc, sn, core = api
    model = tiny_model(torch.float32)
    positive, lat = tiny_inputs()
    assert sn.run_inversion(model, positive, lat, STEPS, START_T, 7).chunk == 1   # default: auto
    assert sn.run_inversion(model, positive, lat, STEPS, START_T, 7, inversion_batch=99).chunk == 10


@pytest.mark.compat
def test_timestep_ranged_conditioning_is_batched_by_range(api):
    """ComfyUI applies a conditioning's timestep range from the first sigma of a batch, so a batch
    only holds levels on the same side of every range: batched equals sequential."""
    hc, sn, core = api
    model = tiny_model(torch.float32)
    positive, lat = tiny_inputs()
    other = torch.randn(1, 77, 64, generator=torch.Generator().manual_seed(9))
    ranged = [[positive[0][0], {"start_percent": 0.0, "end_percent": 0.8}],   # high noise
              [other, {"start_percent": 0.8, "end_percent": 1.0}]]             # low noise
    seq = sn.run_inversion(model, ranged, lat, STEPS, START_T, 7, inversion_batch=1)
    bat = sn.run_inversion(model, ranged, lat, STEPS, START_T, 7, inversion_batch=10)
    assert bat.chunk == 10
    err = max((a - b).abs().max().item() for a, b in zip(seq.posterior_means, bat.posterior_means))
    assert err < 1e-4, err
    # the ranges matter: the first prompt alone gives the same means at high noise only
    plain = sn.run_inversion(model, positive, lat, STEPS, START_T, 7, inversion_batch=1)
    same = [torch.allclose(a, b, atol=1e-5) for a, b in zip(plain.posterior_means, seq.posterior_means)]
    assert any(same) and not all(same) and same[-1] and not same[0], same


def test_inversion_batch_must_be_a_non_negative_integer(api):
    hc, sn, core = api
    model = tiny_model(torch.float32)
    positive, lat = tiny_inputs()
    with pytest.raises(ValueError) as e:
        sn.run_inversion(model, positive, lat, STEPS, START_T, 7, inversion_batch=-1)
    assert type(e.value).__name__ == "RegionDragInputError"
    assert str(e.value).startswith("DDPMInvertAndCache / inversion_batch:")
