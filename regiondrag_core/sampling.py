"""The two halves of RegionDrag (Algorithm 2) as k-diffusion style sampler functions.

Both take ``(model, x, sigmas, extra_args, callback, disable)`` like every sampler in
``k_diffusion.sampling`` and are run by the host's own sampling machinery, so model loading,
conditioning, previews and interruption behave as in any sampler. ``model(x, sigma)`` returns
the denoised estimate D; latents are handled in the variance-preserving form z = x / sqrt(1+sigma^2)
(see :mod:`.schedule`).

Inversion (``sample_ddpm_invert``), for k = 0 .. n-1:
    z_{k+1} = sqrt(abar_{k+1}/abar_k) z_k + sqrt(1 - abar_{k+1}/abar_k) n      (forward draw)
    D, eps  = model(z_{k+1})                                                    (K/V captured)
    r_{k+1} = z_k - (sqrt(abar_k) D + sqrt(1 - abar_k - c^2) eps)               (cached noise term)
r is c*w of the DDPM posterior step (w the noise that lands exactly on z_k). On the last step
to sigma = 0, c = 0 and r is the residual that keeps the reconstruction exact.

Denoising (``sample_regiondrag``), from z'_n = r_alpha(z_n, H) (Eq. 5), for k = n .. 1:
    if t_k >= t'':  z'_k[target] = z_k[handle]                                  (copy-paste, Eq. 3)
    outside the edit area: z'_k = z_k
    D, eps  = model(z'_k) with self-attention K/V <- cached K/V of level k
    z'_{k-1} = sqrt(abar_{k-1}) D + sqrt(1 - abar_{k-1} - c^2) eps + r_k
With no region pairs the edit reproduces the inversion's latents exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from .kvbank import AttentionSwap, KVBank
from .schedule import DragSchedule, StepCoefficients, schedule_coefficients


@dataclass
class Inversion:
    """What DDPM Invert-and-Cache hands to the sampler. Never mutated after it is built."""

    schedule: DragSchedule
    latents: list            # z_0 .. z_n, VP form, in the model's latent space (process_latent_in applied)
    noise_terms: list        # r_1 .. r_n (index k-1 holds r_k)
    bank: KVBank
    seed: int
    latent_shape: tuple      # shape of the LATENT the user passed in (B, C, h, w)
    layers: frozenset = field(default_factory=frozenset)  # (block name, number) patched at inversion

    @property
    def levels(self) -> int:
        return self.schedule.levels

    def cache_nbytes(self) -> dict:
        lat = sum(t.numel() * t.element_size() for t in self.latents + self.noise_terms)
        return {"kv": self.bank.nbytes(), "latents": lat}


def _noise(seed: int, count: int, shape, like: torch.Tensor) -> torch.Tensor:
    """``count`` Gaussian draws of ``shape``, made on the CPU (device-independent), moved once."""
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    n = torch.randn((count,) + tuple(shape), generator=g, dtype=torch.float32, device="cpu")
    return n.to(device=like.device, dtype=like.dtype)


def _call(model, z, coef: StepCoefficients, s_in, extra_args, swap: AttentionSwap, level: int):
    """One model call on z_level (sigma_s), the attention patch told the level: returns (denoised x0, eps)."""
    x = z * coef.scale_in
    swap.begin(level, x.device)
    completed = False
    try:
        denoised = model(x, coef.sigma_s * s_in, **extra_args)
        completed = True
    finally:
        swap.end(completed)
    eps = (x - denoised) / coef.sigma_s
    return denoised, eps


def _report(callback, x, i: int, coef: StepCoefficients, denoised) -> None:
    """k-diffusion callback: drives ComfyUI's progress bar, previews and the Stop button."""
    if callback is not None:
        callback({"x": x, "i": i, "sigma": coef.sigma_s, "sigma_hat": coef.sigma_s, "denoised": denoised})


def _coefficients(schedule: DragSchedule, sigmas) -> list:
    """The schedule's per-step coefficients; the host must pass exactly the schedule's sigmas."""
    if len(sigmas) != schedule.levels + 1:
        raise ValueError(f"expected {schedule.levels + 1} sigmas, got {len(sigmas)}")
    return schedule_coefficients(schedule.sigmas)


def _posterior_mean(denoised, eps, coef: StepCoefficients):
    """sqrt(abar_t) x0 + sqrt(1 - abar_t - c^2) eps: the DDPM posterior step without its noise."""
    return denoised * coef.coef_x0 + eps * coef.coef_eps


@dataclass
class InversionRecorder:
    """Per-run inputs of :func:`sample_ddpm_invert`; ``result`` holds the Inversion afterwards."""

    schedule: DragSchedule
    seed: int
    swap: AttentionSwap
    latent_shape: tuple
    layers: frozenset = frozenset()   # the self-attention layers the patch was registered on
    result: Optional[Inversion] = None


@torch.no_grad()
def sample_ddpm_invert(model, x, sigmas, extra_args=None, callback=None, disable=None, recorder=None):
    """DDPM inversion z_0 -> z_{t'} with per-step noise and self-attention K/V cached (SDE-Drag Eq. 8)."""
    extra_args = {} if extra_args is None else extra_args
    sched = recorder.schedule
    n = sched.levels
    coefs = _coefficients(sched, sigmas)
    s_in = x.new_ones([x.shape[0]])
    z = x  # sigma_0 = 0: x is the clean latent z_0
    draws = _noise(recorder.seed, n, x.shape, x)
    latents, terms = [z], []
    for k in range(n):
        coef = coefs[k]  # links z_k (lower) and z_{k+1}
        z_up = z * coef.fwd_keep + draws[k] * coef.fwd_noise
        denoised, eps = _call(model, z_up, coef, s_in, extra_args, recorder.swap, k + 1)
        terms.append(z - _posterior_mean(denoised, eps, coef))
        latents.append(z_up)
        z = z_up
        _report(callback, z * coef.scale_in, k, coef, denoised)
    recorder.result = Inversion(schedule=sched, latents=latents, noise_terms=terms,
                                bank=recorder.swap.bank, seed=recorder.seed,
                                latent_shape=tuple(recorder.latent_shape),
                                layers=recorder.layers)
    return z * coefs[-1].scale_in


@dataclass
class DragPlan:
    """Per-run inputs of :func:`sample_regiondrag`, already on the latents' device."""

    inversion: Inversion
    swap: AttentionSwap
    handle_index: Optional[torch.Tensor]   # flat (y*w+x) int64 indices, or None for no pairs
    target_index: Optional[torch.Tensor]
    handle_union: Optional[torch.Tensor]   # [1, 1, h, w] in {0, 1}
    edit_mask: Optional[torch.Tensor]      # [1, 1, h, w] in [0, 1]; 1 = may change
    alpha: float
    seed: int
    paste: list                            # paste[k-1]: copy-paste on the step leaving z_k
    on_level: Optional[Callable[[int, torch.Tensor], None]] = None  # test/debug hook, after paste


def blend_handle(z: torch.Tensor, handle: Optional[torch.Tensor], alpha: float, noise: torch.Tensor):
    """r_alpha(z, H) = (1 - H) z + H (sqrt(1 - alpha^2) z + alpha eps)  (Eq. 5)."""
    if handle is None or alpha == 0.0:
        return z
    mixed = z * (1.0 - alpha * alpha) ** 0.5 + noise * alpha
    return torch.where(handle > 0.5, mixed, z)


def copy_paste(dst: torch.Tensor, src: torch.Tensor, handle_index, target_index) -> torch.Tensor:
    """dst[..., target] = src[..., handle] on flattened spatial indices (Eq. 3); returns dst."""
    b, c = dst.shape[:2]
    flat = dst.reshape(b, c, -1)
    flat.index_copy_(2, target_index, src.reshape(b, c, -1).index_select(2, handle_index))
    return flat.view(dst.shape)


def keep_outside(z: torch.Tensor, cached: torch.Tensor, mask: Optional[torch.Tensor]):
    """Edit-area mask: m z + (1 - m) cached; exactly ``cached`` where m = 0."""
    if mask is None:
        return z
    return z * mask + cached * (1.0 - mask)


@torch.no_grad()
def sample_regiondrag(model, x, sigmas, extra_args=None, callback=None, disable=None, plan=None):
    """RegionDrag denoising z'_{t'} -> z'_0 with copy-paste and mutual self-attention (Algorithm 2)."""
    extra_args = {} if extra_args is None else extra_args
    inv = plan.inversion
    n = inv.levels
    coefs = _coefficients(inv.schedule, sigmas)
    dev = x.device
    top = inv.latents[n].to(dev)
    z = top.clone()
    s_in = z.new_ones([z.shape[0]])
    if plan.handle_union is not None and plan.alpha > 0:
        z = blend_handle(z, plan.handle_union, plan.alpha, _noise(plan.seed, 1, z.shape, z)[0])
    z = keep_outside(z, top, plan.edit_mask)
    for i, k in enumerate(range(n, 0, -1)):
        coef = coefs[k - 1]
        cached = inv.latents[k].to(dev)
        if plan.paste[k - 1] and plan.target_index is not None:
            z = copy_paste(z, cached, plan.handle_index, plan.target_index)
            z = keep_outside(z, cached, plan.edit_mask)
        if plan.on_level is not None:
            plan.on_level(k, z)
        denoised, eps = _call(model, z, coef, s_in, extra_args, plan.swap, k)
        z = _posterior_mean(denoised, eps, coef) + inv.noise_terms[k - 1].to(dev)
        z = keep_outside(z, inv.latents[k - 1].to(dev), plan.edit_mask)
        _report(callback, z * coef.scale_out, i, coef, denoised)
    return z * coefs[0].scale_out
