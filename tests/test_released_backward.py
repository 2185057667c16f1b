"""``sample_cp_then_encode`` against the authors' released "CP then Encode" denoising, step by step.

``tests/golden/released_backward.json`` (written by ``tools/make_released_golden.py``, which runs the
released ``region_utils.drag.backward`` with ``sde=False`` and the released ``cycle_sde.Sampler``; see
that file's "about") holds, per case: the inputs the released code was given (the preview's latents
p_0 .. p_10, the start latent z_10, the mask, the latent-scale source and target points, the noise its
``blur_source`` drew), every ``Sampler.sample`` call's input latent, the steps ``copy_and_paste`` ran
on, and the output. Here the same inputs go through our ``sample_cp_then_encode`` with a toy model
that answers what the released fake UNet answers: the released ``Sampler`` asks for eps(z, t) at the
VP latent z and timestep t; our model interface is ``model(x, sigma) -> D`` with x = z sqrt(1 + sigma^2),
so the toy model returns D = x - sigma eps(z, t), t the timestep of that sigma (500, 450, ..., 50).
With eps equal, DDIM (eta 0) on either side is the same step, and the last step to timestep 0 lands
on the clean level on both (the golden's scheduler has ``alphas_cumprod[0] = 1``; our sigma_0 = 0).

Noise: ``sample_cp_then_encode``'s only randomness is ``_noise(seed, "handle", 1, shape, z)``, the
eps of the blend (Eq. 5). The test monkeypatches ``regiondrag_core.sampling._noise`` to return the
released draw laid out on the latent (the golden's ``noise``: the draw at the blur points, zero
elsewhere; where a blur point repeats, the draw the released indexing kept). So ``blend_handle`` and
everything after it run as in production, with ``alpha`` = the released ``noise_scale``; the blend mask
is ours (``DragMap.cp_blend_mask()``: the handle points and ``points.border_points(target)``) and is
checked to be the released blur points' set.

What matches (float64, every case): the latent before each of the 10 model calls (after the blend,
the copy of the preview's latents onto the targets and the preview outside the mask, in the released
order) and the output inside the mask, within 1e-8 of the golden (the golden's latents are rounded to
8 decimals; against the released output before rounding the difference is at most 6.2e-15). The same
run in float32 agrees within 1e-5 (measured: at most 2.1e-6). What the per-step latents pin: the blend
once, on the start latent, before the first step; the preview level each step copies from (p_k before
the call at level k); which steps copy. The order of the copy and the mask within a step is not
observable here: copy and paste points are both the target and the mask's fallback is the same p_k, so
either order writes the same values.

What differs by design, and how it is tested:

* ``end_t``. The released ``backward`` does ``end_t = int(end_t * steps)`` (4 for 0.2 at 20 steps) and
  copies when ``t >= end_t`` with t a *timestep* (500 .. 50): the copy runs on every step for any
  end_t in [0, 1] (the golden's ``pasted`` lists all 10 steps for end_t 0.2 too). Ours
  (``DragSchedule.paste_levels``) follows the paper: copy while t >= end_t * 1000, so at end_t 0.2 it
  stops before t = 150, 100, 50. The parity runs take the released rule for the copy steps
  (:func:`released_paste_levels`); for end_t 0 it is ``paste_levels(0)``, what the node passes.
* The final mask. The released ``backward`` returns the last step's latent as is: its mask acts only
  through ``where(mask == 1, latent, p_k)`` before each step, and the original comes back outside the
  mask in pixel space after decoding (``postprocess``: ``np.where(mask, image, ori_image)``, only when
  the mask is not all ones). Ours restores the original's clean latent z_0 outside the edit mask in
  latent space (``keep_outside(z, z_0, mask)``). So the output is compared inside the mask, and outside
  it ours must be z_0 bit for bit (z_0 is not an input of the released ``backward``; here a constant).
* The inversion's other latents z_1 .. z_9 are not used by "CP then Encode" (its copy source is the
  preview's latents): here they are NaN, so any use of them would show.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

from regiondrag_core import sampling
from regiondrag_core.kvbank import AttentionSwap, KVBank
from regiondrag_core.mapping import DragMap
from regiondrag_core.sampling import CP_THEN_ENCODE, DragPlan, Inversion, sample_cp_then_encode
from regiondrag_core.schedule import TRAIN_TIMESTEPS, make_schedule

GOLDEN_PATH = os.path.join(os.path.dirname(__file__), "golden", "released_backward.json")
with open(GOLDEN_PATH) as f:
    GOLDEN = json.load(f)
SETUP = GOLDEN["setup"]
SHAPE = tuple(SETUP["latent_shape"])
STEPS, START_T = SETUP["steps"], SETUP["start_t"]
CASES = GOLDEN["cases"]
TOL = {torch.float64: 1e-8, torch.float32: 1e-5}


def sd_sigma(t: float) -> float:
    """SD1.5's scaled-linear beta schedule: sigma(t) = sqrt((1 - abar_t) / abar_t)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, 0)[int(round(t))]
    return float(((1 - abar) / abar).sqrt())


def toy_eps(z: torch.Tensor, t: float) -> torch.Tensor:
    """The golden's fake UNet (``setup.eps.formula``): tanh(w[c] z + neighbour * channel mean of the pixel
    to the left, wrapping, + t / 1000)."""
    w = torch.tensor(SETUP["eps"]["w"], dtype=z.dtype).view(1, -1, 1, 1)
    left = torch.roll(z, shifts=1, dims=-1).mean(dim=1, keepdim=True)
    return torch.tanh(w * z + SETUP["eps"]["neighbour"] * left + float(t) / 1000)


class ReleasedEpsModel:
    """``model(x, sigma) -> D`` whose eps = (x - D) / sigma is :func:`toy_eps` at z = x / sqrt(1 + sigma^2)
    and the timestep of sigma (the schedule's level nearest to it: float32 sigmas are rounded)."""

    def __init__(self, schedule):
        self.sigmas = torch.tensor(schedule.sigmas[1:], dtype=torch.float64)
        self.timesteps = schedule.timesteps[1:]
        self.calls = []

    def __call__(self, x, sigma, **extra):
        s = float(sigma[0])
        k = int(torch.argmin((self.sigmas - s).abs()))
        assert abs(float(self.sigmas[k]) - s) <= 1e-6 * s
        t = self.timesteps[k]
        self.calls.append(t)
        return x - s * toy_eps(x / math.sqrt(1.0 + s * s), t)


def attention(q, k, v, heads, attn_precision=None):   # never called: the toy model has no attention
    raise AssertionError("no attention in the toy model")


def latent(values, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).view(SHAPE).to(dtype)


def released_paste_levels(schedule, end_t: float) -> list:
    """The released copy rule, per level k = 1 .. n: ``t >= int(end_t * steps)`` with t the timestep."""
    return [t >= int(end_t * STEPS) for t in schedule.timesteps[1:]]


def drag_map(case) -> DragMap:
    src, trg = np.array(case["source"], np.int64), np.array(case["target"], np.int64)
    hu, tu = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    hu[src[:, 1], src[:, 0]] = True
    tu[trg[:, 1], trg[:, 0]] = True
    return DragMap(handle_xy=src, target_xy=trg, handle_union=hu, target_union=tu, latent_size=(8, 8),
                   image_size=(64, 64), num_pairs=1)


Z0 = 7.0   # the original's clean latent, a constant: restored outside the edit mask


def run_ours(case, monkeypatch, dtype=torch.float64, mask_none_if_full=False):
    """Our ``sample_cp_then_encode`` on the case's inputs: (output, {level k: latent before its model call},
    schedule, model)."""
    sched = make_schedule(STEPS, START_T, sd_sigma)
    n = sched.levels
    preview = tuple(latent(p, dtype) for p in GOLDEN["hook_latents"])
    start = latent(GOLDEN["start_latent"], dtype)
    unused = torch.full(SHAPE, float("nan"), dtype=dtype)
    inv = Inversion(schedule=sched, latents=(torch.full(SHAPE, Z0, dtype=dtype),) + (unused,) * (n - 1) + (start,),
                    posterior_means=(), bank=KVBank(), seed=0, latent_shape=SHAPE, method=CP_THEN_ENCODE)
    dm = drag_map(case)
    mask = torch.tensor(case["mask"], dtype=dtype)[None, None]
    edit_mask = None if mask_none_if_full and bool((mask == 1).all()) else mask
    noise = latent(case["noise"], dtype)

    def released_noise(seed, purpose, count, shape, like):
        assert purpose == "handle" and count == 1 and tuple(shape) == SHAPE
        return noise[None].to(device=like.device, dtype=like.dtype)

    monkeypatch.setattr(sampling, "_noise", released_noise)
    seen = {}
    plan = DragPlan(inversion=inv, swap=AttentionSwap(KVBank(), "replace", attention, enabled=False),
                    handle_index=dm.handle_index(), target_index=dm.target_index(),
                    handle_union=torch.from_numpy(dm.cp_blend_mask()).to(dtype)[None, None],
                    edit_mask=edit_mask, alpha=float(case["noise_scale"]), seed=0,
                    paste=released_paste_levels(sched, case["end_t"]),
                    on_level=lambda k, z: seen.__setitem__(k, z.clone()), preview=preview)
    model = ReleasedEpsModel(sched)
    out = sample_cp_then_encode(model, torch.zeros(SHAPE, dtype=dtype),
                                torch.tensor(sched.sigmas[::-1], dtype=dtype), plan=plan)
    return out, seen, sched, model


def test_golden_setup_is_our_schedule():
    """The released loop's timesteps 500 .. 50 are our levels 10 .. 1, and the golden's scheduler is SD1.5's
    scaled-linear one (the one our sigmas come from)."""
    sched = make_schedule(STEPS, START_T, sd_sigma)
    assert sched.timesteps == tuple(float(t) for t in range(0, 501, 50))
    assert len(GOLDEN["hook_latents"]) == sched.levels + 1
    assert "0.00085 ** 0.5, 0.012 ** 0.5, 1000" in SETUP["scheduler"] and "alphas_cumprod[0] = 1" in SETUP["scheduler"]
    for case in CASES:
        assert [s["t"] for s in case["steps"]] == [int(t) for t in sched.timesteps[:0:-1]]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_blend_points_are_the_released_blur_points(case):
    """``DragMap.cp_blend_mask()`` (handle points + ``points.border_points(target)``) is the set of the released
    ``cat(get_border_points(target), source)``."""
    blend = drag_map(case).cp_blend_mask()
    assert {(int(x), int(y)) for y, x in zip(*np.nonzero(blend))} == {tuple(p) for p in case["blur"]}
    noise = np.array(case["noise"]).reshape(SHAPE)
    assert (noise[0, :, ~blend] == 0).all()   # the golden's noise lies on the blur points only


def test_copy_steps_released_rule_and_ours():
    """The released copy runs on every step, whatever end_t (see the module docstring); ours follows t''."""
    sched = make_schedule(STEPS, START_T, sd_sigma)
    all_steps = list(range(500, 0, -50))
    for case in CASES:
        assert case["pasted"] == all_steps
        rule = released_paste_levels(sched, case["end_t"])
        assert [int(t) for t, p in zip(sched.timesteps[1:], rule) if p][::-1] == all_steps
        if case["end_t"] == 0.0:
            assert sched.paste_levels(case["end_t"]) == rule
    ours = sched.paste_levels(0.2)
    assert [int(t) for t, p in zip(sched.timesteps[1:], ours) if not p] == [50, 100, 150]   # t < t'' = 200
    assert int(0.2 * STEPS) == 4 and TRAIN_TIMESTEPS * 0.2 == 200


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_each_step_and_the_output_match_the_released_backward(case, dtype, monkeypatch):
    out, seen, sched, model = run_ours(case, monkeypatch, dtype)
    tol = TOL[dtype]
    assert model.calls == list(sched.timesteps[:0:-1])   # one call per level, 500 .. 50
    assert sorted(seen) == list(range(1, sched.levels + 1))
    for step in case["steps"]:
        k = sched.timesteps.index(float(step["t"]))
        diff = (seen[k].double() - latent(step["latent"])).abs().max().item()
        assert diff < tol, f"t = {step['t']}: the latent before the model call differs by {diff:.3g}"
    inside = torch.tensor(case["mask"], dtype=torch.bool)[None, None].expand(SHAPE)
    diff = (out.double() - latent(case["output"]))[inside].abs().max().item()
    assert diff < tol, f"the output differs inside the mask by {diff:.3g}"
    assert (out[~inside] == Z0).all()   # ours: the original's z_0 outside the mask (the released: in pixel space)


@pytest.mark.parametrize("case", [c for c in CASES if all(all(r) for r in c["mask"])],
                         ids=[c["name"] for c in CASES if all(all(r) for r in c["mask"])])
def test_an_all_ones_mask_is_no_mask(case, monkeypatch):
    """The released code passes an all-ones mask when none is drawn; the node passes None. Same result."""
    a, _, _, _ = run_ours(case, monkeypatch)
    b, _, _, _ = run_ours(case, monkeypatch, mask_none_if_full=True)
    assert torch.equal(a, b)
