"""The two halves of RegionDrag (Algorithm 2) as k-diffusion style sampler functions.

Both take ``(model, x, sigmas, extra_args, callback, disable)`` like every sampler in
``k_diffusion.sampling`` and are run by the host's own sampling machinery, so model loading,
conditioning, previews and interruption behave as in any sampler. ``model(x, sigma)`` returns
the denoised estimate D for a batch of x with one sigma per sample; latents are handled in the
variance-preserving form z = x / sqrt(1+sigma^2) (see :mod:`.schedule`).

Inversion (``sample_ddpm_invert``), for k = 0 .. n-1:
    z_{k+1} = sqrt(abar_{k+1}/abar_k) z_k + sqrt(1 - abar_{k+1}/abar_k) n      (forward draw)
    D, eps  = model(z_{k+1})                                                    (K/V captured)
    m_{k+1} = sqrt(abar_k) D + sqrt(1 - abar_k - c^2) eps                       (cached posterior mean)
z_k - m_{k+1} is c*w of the DDPM posterior step (w the noise that lands exactly on z_k). No forward
draw needs the model, so the n model calls are independent: they run in chunks of ``chunk`` levels,
one batched call per chunk (every latent with its own sigma); chunk 1 is one level per call.

Denoising (``sample_regiondrag``), from z'_n = r_alpha(z_n, H) (Eq. 5), for k = n .. 1:
    if t_k >= t'':  z'_k[target] = z_k[handle]                                  (copy-paste, Eq. 3)
    outside the edit area: z'_k = z_k
    D', eps' = model(z'_k) with self-attention K/V <- cached K/V of level k
    z'_{k-1} = z_{k-1} + (m'_k - m_k),   m'_k = sqrt(abar_{k-1}) D' + sqrt(1 - abar_{k-1} - c^2) eps'
which is the DDPM step m'_k + c*w with the cached w, written so that equal model outputs give the
cached latent bit for bit (m'_k - m_k = 0 exactly), also on the last step to sigma = 0 (c = 0).
So with no region pairs the edit reproduces the inversion's latents exactly whenever the model
call at z'_k = z_k repeats the inversion's call: always with chunk 1 and deterministic kernels;
within kernel noise of batched-vs-single calls when the inversion ran batched.

Noise: the inversion's forward draws and the handle blend's eps come from separate streams
(:func:`noise_stream`), so they are independent even when both nodes get the same seed.

"CP then Encode" (the authors' released tool's second method): the copy-paste happens first, in pixel
space (the mapping's preview), and both the original and the VAE-encoded preview are inverted
deterministically (``sample_ode_invert``, DDIM with eta 0), for k = 1 .. n:
    eps    = eps(z_{k-1} at sigma_k)                                            (K/V captured, level k)
    x0     = (z_{k-1} - sqrt(1 - abar_{k-1}) eps) / sqrt(abar_{k-1})
    z_k    = sqrt(abar_k) x0 + sqrt(1 - abar_k) eps
The step's noise is predicted at the latent it starts from, at the noise level it goes to (the usual
DDIM-inversion approximation, eps(z_{k-1}) ~ eps(z_k)), so its keys/values are filed under level k, the
level the denoising calls at; the released code predicts it at t_{k-1} instead. Denoising (``sample_cp_then_encode``) starts from the original's z_n,
blends the handle points and the target's border points with noise (Eq. 5), and for k = n .. 1:
    if t_k >= t'':  z'_k[target] = p_k[target]                                  (the preview's latent)
    outside the edit area: z'_k = p_k
    D', eps' = model(z'_k) with self-attention K/V <- the original's K/V of level k
    z'_{k-1} = sqrt(abar_{k-1}) D' + sqrt(1 - abar_{k-1}) eps'                  (DDIM, eta 0)
in the order of the released ``backward``; outside the edit area the result is the original's z_0.
ODE inversion is not exact: with no regions the edit returns the input within the inversion's error.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Callable, Hashable, Optional, Sequence

import torch

from .kvbank import AttentionSwap, KVBank
from .schedule import DragSchedule, StepCoefficients, schedule_coefficients


@dataclass(frozen=True)
class Inversion:
    """What DDPM Invert-and-Cache hands to the sampler: read-only (frozen, tuples, a frozen bank).

    ComfyUI keeps it in its output cache and feeds it to every re-edit; nothing of a run (staging
    buffers, counters) lives here."""

    schedule: DragSchedule
    latents: tuple           # z_0 .. z_n, VP form, in the model's latent space (process_latent_in applied)
    posterior_means: tuple   # m_1 .. m_n (index k-1 holds m_k), float32 like the latents
    bank: KVBank
    seed: int
    latent_shape: tuple      # shape of the LATENT the user passed in (B, C, h, w)
    layers: frozenset = frozenset()   # (block name, number) whose keys/values were cached (the layer choice)
    chunk: int = 1           # levels per inversion model call (1: exact reconstruction)
    latent_image: Optional[torch.Tensor] = None  # the LATENT samples as the user passed them (host: float32, CPU)
    owner: object = None     # the host's memory-management handle of ``bank`` (ComfyUI: a ModelPatcher)
    layer_choice: str = "all"  # the name of the layer choice (kvbank.KV_LAYER_CHOICES) that gave ``layers``
    model_signature: object = None  # opaque here: the host's description of the model that made it (None: unknown)
    method: str = "Encode then CP"   # METHODS: DDPM inversion (the paper) or deterministic (CP then Encode)
    cfg: float = 1.0         # the guidance scale the inversion ran at
    negative_entries: int = 0  # negative-prompt entries whose keys/values were cached (0: none ran)

    @property
    def levels(self) -> int:
        return self.schedule.levels

    @property
    def noise_terms(self) -> tuple:
        """r_k = z_{k-1} - m_k = c_k w_k: the posterior step's noise (index k-1 holds r_k)."""
        return tuple(z - m for z, m in zip(self.latents[:-1], self.posterior_means))

    def cache_nbytes(self) -> dict:
        lat = sum(t.numel() * t.element_size() for t in self.latents + self.posterior_means)
        return {"kv": self.bank.nbytes(), "latents": lat}


ENCODE_THEN_CP = "Encode then CP"
CP_THEN_ENCODE = "CP then Encode"
METHODS = (ENCODE_THEN_CP, CP_THEN_ENCODE)


def noise_stream(seed: int, purpose: str) -> torch.Generator:
    """A CPU generator for one purpose ("inversion", "handle"); streams of one seed are independent."""
    digest = hashlib.sha256(f"regiondrag/{purpose}/{int(seed)}".encode()).digest()
    return torch.Generator(device="cpu").manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _noise(seed: int, purpose: str, count: int, shape, like: torch.Tensor) -> torch.Tensor:
    """``count`` Gaussian draws of ``shape``, made on the CPU (device-independent), moved once."""
    n = torch.randn((count,) + tuple(shape), generator=noise_stream(seed, purpose), dtype=torch.float32,
                    device="cpu")
    return n.to(device=like.device, dtype=like.dtype)


def _denoised(model, xs: Sequence[torch.Tensor], coefs: Sequence[StepCoefficients], levels: Sequence[int],
              extra_args, swap: AttentionSwap) -> list:
    """One model call on the inputs ``xs`` (each at its level's sigma), the attention patch told the
    levels: the denoised estimate D of each."""
    x = xs[0] if len(xs) == 1 else torch.cat(xs)
    sigma = torch.tensor([c.sigma_s for c in coefs for _ in range(xs[0].shape[0])],
                         dtype=x.dtype, device=x.device)
    swap.begin(levels, x.device)
    completed = False
    try:
        denoised = model(x, sigma, **extra_args)
        completed = True
    finally:
        swap.end(completed)
    return [denoised] if len(xs) == 1 else list(denoised.chunk(len(xs)))


def _call(model, zs: Sequence[torch.Tensor], coefs: Sequence[StepCoefficients], levels: Sequence[int],
          extra_args, swap: AttentionSwap):
    """One model call on the latents ``zs`` (z_level each, at its own sigma), the attention patch told
    the levels: returns the posterior mean m and the denoised estimate D of each level."""
    xs = [z * c.scale_in for z, c in zip(zs, coefs)]
    ds = _denoised(model, xs, coefs, levels, extra_args, swap)
    # eps = (x - D) / sigma and m: the same per-level arithmetic at every batch size and in both halves
    return [_posterior_mean(d, (xi - d) / c.sigma_s, c) for xi, d, c in zip(xs, ds, coefs)], ds


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


def inversion_chunks(levels: int, chunk: int, key: Optional[Callable[[int], Hashable]] = None) -> list:
    """Levels 1..n in ascending runs of at most ``chunk`` levels; a run also ends where ``key(level)``
    changes (the host's way to keep levels with different conditioning out of one batch)."""
    chunk = max(1, int(chunk))
    runs, cur, cur_key = [], [], None
    for level in range(1, levels + 1):
        k = key(level) if key is not None else None
        if cur and (len(cur) == chunk or k != cur_key):
            runs.append(tuple(cur))
            cur = []
        cur.append(level)
        cur_key = k
    if cur:
        runs.append(tuple(cur))
    return runs


@dataclass
class InversionRecorder:
    """Per-run inputs of :func:`sample_ddpm_invert`; ``result`` holds the Inversion afterwards.

    ``chunk``: levels per model call (1 = sequential, exact reconstruction), or a callable that
    the sampler asks with the clean latent once the model is loaded; ``split_key(level)`` (optional)
    keeps levels whose keys differ out of one call."""

    schedule: DragSchedule
    seed: int
    swap: AttentionSwap
    latent_shape: tuple
    layers: frozenset = frozenset()   # the self-attention layers the patch was registered on
    layer_choice: str = "all"
    chunk: object = 1                 # int, or Callable[[torch.Tensor], int]
    split_key: Optional[Callable[[int], Hashable]] = None
    latent_image: Optional[torch.Tensor] = None
    result: Optional[Inversion] = None


@torch.no_grad()
def sample_ddpm_invert(model, x, sigmas, extra_args=None, callback=None, disable=None, recorder=None):
    """DDPM inversion z_0 -> z_{t'} with per-step posterior means and self-attention K/V cached (SDE-Drag Eq. 8)."""
    extra_args = {} if extra_args is None else extra_args
    sched = recorder.schedule
    n = sched.levels
    coefs = _coefficients(sched, sigmas)
    draws = _noise(recorder.seed, "inversion", n, x.shape, x)
    latents = [x]  # sigma_0 = 0: x is the clean latent z_0
    for k in range(n):  # coefs[k] links z_k (lower) and z_{k+1}
        latents.append(latents[k] * coefs[k].fwd_keep + draws[k] * coefs[k].fwd_noise)
    chunk = max(1, int(recorder.chunk(x) if callable(recorder.chunk) else recorder.chunk))
    means: list = [None] * n
    for run in inversion_chunks(n, chunk, recorder.split_key):
        cs = [coefs[level - 1] for level in run]
        ms, ds = _call(model, [latents[level] for level in run], cs, run, extra_args, recorder.swap)
        for level, m, d, c in zip(run, ms, ds, cs):
            means[level - 1] = m
            _report(callback, latents[level] * c.scale_in, level - 1, c, d)
    recorder.result = Inversion(schedule=sched, latents=tuple(latents), posterior_means=tuple(means),
                                bank=recorder.swap.bank.freeze(), seed=recorder.seed,
                                latent_shape=tuple(recorder.latent_shape), layers=frozenset(recorder.layers),
                                chunk=chunk, latent_image=recorder.latent_image,
                                layer_choice=recorder.layer_choice)
    return latents[n] * coefs[-1].scale_in


def _vp(coef: StepCoefficients) -> tuple[float, float]:
    """(sqrt(abar), sqrt(1 - abar)) of the step's upper level (sigma_s)."""
    return 1.0 / coef.scale_in, coef.sigma_s / coef.scale_in


def _ddim_lower(coef: StepCoefficients) -> tuple[float, float]:
    """(sqrt(abar), sqrt(1 - abar)) of the step's lower level: the deterministic (eta 0) step's weights."""
    return coef.coef_x0, math.sqrt(max(0.0, 1.0 - coef.coef_x0 * coef.coef_x0))


@torch.no_grad()
def sample_ode_invert(model, x, sigmas, extra_args=None, callback=None, disable=None, recorder=None):
    """Deterministic (DDIM, eta 0) inversion z_0 -> z_n caching the latents and, through the recorder's
    swap, the self-attention K/V (the "CP then Encode" method). One level per model call: each step
    starts from the one before."""
    extra_args = {} if extra_args is None else extra_args
    sched = recorder.schedule
    n = sched.levels
    coefs = _coefficients(sched, sigmas)
    latents = [x]
    for k in range(1, n + 1):
        c = coefs[k - 1]   # links z_{k-1} and z_k: the model runs at z_k's sigma
        z = latents[k - 1]
        x_in = z * c.scale_in
        (d,) = _denoised(model, [x_in], [c], (k,), extra_args, recorder.swap)
        eps = (x_in - d) / c.sigma_s
        low_keep, low_noise = _ddim_lower(c)          # sqrt(abar_{k-1}), sqrt(1 - abar_{k-1})
        x0 = (z - eps * low_noise) / low_keep         # the clean latent z_{k-1} and eps point to
        keep, noise = _vp(c)                          # sqrt(abar_k), sqrt(1 - abar_k)
        latents.append(x0 * keep + eps * noise)
        _report(callback, latents[k] * c.scale_in, k - 1, c, x0)
    recorder.result = Inversion(schedule=sched, latents=tuple(latents), posterior_means=(),
                                bank=recorder.swap.bank.freeze(), seed=recorder.seed,
                                latent_shape=tuple(recorder.latent_shape), layers=frozenset(recorder.layers),
                                chunk=1, latent_image=recorder.latent_image, layer_choice=recorder.layer_choice,
                                method=CP_THEN_ENCODE)
    return latents[n] * coefs[-1].scale_in


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
    preview: Optional[tuple] = None        # CP then Encode: the preview's ODE latents p_0 .. p_n (copy source)


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
    """Edit-area mask: m z + (1 - m) cached; exactly ``cached`` where m = 0 or z = cached, exactly z where m = 1."""
    if mask is None:
        return z
    return torch.lerp(cached, z, mask.to(z.dtype))


@torch.no_grad()
def sample_regiondrag(model, x, sigmas, extra_args=None, callback=None, disable=None, plan=None):
    """RegionDrag denoising z'_{t'} -> z'_0 with copy-paste and mutual self-attention (Algorithm 2)."""
    extra_args = {} if extra_args is None else extra_args
    inv = plan.inversion
    n = inv.levels
    coefs = _coefficients(inv.schedule, sigmas)
    dev = x.device
    top = inv.latents[n].to(dev)
    z = top.clone()  # copy_paste writes into z
    if plan.handle_union is not None and plan.alpha > 0:
        z = blend_handle(z, plan.handle_union, plan.alpha, _noise(plan.seed, "handle", 1, z.shape, z)[0])
    z = keep_outside(z, top, plan.edit_mask)
    for i, k in enumerate(range(n, 0, -1)):
        coef = coefs[k - 1]
        cached = inv.latents[k].to(dev)
        if plan.paste[k - 1] and plan.target_index is not None:
            z = copy_paste(z, cached, plan.handle_index, plan.target_index)
            z = keep_outside(z, cached, plan.edit_mask)
        if plan.on_level is not None:
            plan.on_level(k, z)
        (mean,), (denoised,) = _call(model, [z], [coef], (k,), extra_args, plan.swap)
        # z_{k-1} + (m'_k - m_k): exactly the cached z_{k-1} when the call repeats the inversion's
        z = inv.latents[k - 1].to(dev) + (mean - inv.posterior_means[k - 1].to(dev))
        z = keep_outside(z, inv.latents[k - 1].to(dev), plan.edit_mask)
        _report(callback, z * coef.scale_out, i, coef, denoised)
    return z * coefs[0].scale_out


@torch.no_grad()
def sample_cp_then_encode(model, x, sigmas, extra_args=None, callback=None, disable=None, plan=None):
    """"CP then Encode" denoising: the original's z_n, its K/V, the preview's latents at the targets
    (the released ``backward`` with ``sde=False``; see the module docstring). ``plan.handle_union`` is
    the blend mask (handle points and the target's border points), ``plan.target_index`` where the
    preview's latents are copied, ``plan.preview`` the preview's ODE inversion latents."""
    extra_args = {} if extra_args is None else extra_args
    inv = plan.inversion
    n = inv.levels
    coefs = _coefficients(inv.schedule, sigmas)
    dev = x.device
    z = inv.latents[n].to(dev).clone()
    if plan.handle_union is not None and plan.alpha > 0:
        z = blend_handle(z, plan.handle_union, plan.alpha, _noise(plan.seed, "handle", 1, z.shape, z)[0])
    for i, k in enumerate(range(n, 0, -1)):
        c = coefs[k - 1]
        p_k = plan.preview[k].to(dev)
        if plan.paste[k - 1] and plan.target_index is not None:
            z = copy_paste(z, p_k, plan.target_index, plan.target_index)
        z = keep_outside(z, p_k, plan.edit_mask)
        if plan.on_level is not None:
            plan.on_level(k, z)
        x_in = z * c.scale_in
        (d,) = _denoised(model, [x_in], [c], (k,), extra_args, plan.swap)
        keep, noise = _ddim_lower(c)
        z = d * keep + ((x_in - d) / c.sigma_s) * noise
        _report(callback, z * c.scale_out, i, c, d)
    z = keep_outside(z, inv.latents[0].to(dev), plan.edit_mask)   # the original outside the edit area
    return z * coefs[0].scale_out
