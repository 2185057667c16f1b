"""The RegionDrag timestep grid and DDPM step math, in ComfyUI's sigma space.

ComfyUI samples in k-diffusion form: ``x = z * sqrt(1 + sigma^2)`` where ``z`` is the
variance-preserving (DDPM) latent and ``sigma = sqrt((1 - abar) / abar)``, so
``abar = 1 / (1 + sigma^2)``. The wrapped model returns the denoised estimate
``D(x, sigma)``; the noise estimate is ``eps = (x - D) / sigma``.

Paper symbols (RegionDrag Sec. 3.3, Algorithm 2; DDPM inversion as in SDE-Drag [28]):
  t', start_t   timestep the image is inverted to (paper: 500 of 1000, start_t = 0.5)
  t'', end_t    copy-paste runs at every denoising timestep t >= t'' (paper: 200)
  abar_t        cumulative alpha at t (``alphas_cumprod``)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from .errors import RegionDragInputError

TRAIN_TIMESTEPS = 1000


@dataclass(frozen=True)
class DragSchedule:
    """Timesteps and sigmas of one inversion/denoising cycle.

    ``timesteps`` ascend from 0 (the clean latent) to t'; ``sigmas[k]`` belongs to
    ``timesteps[k]`` and ``sigmas[0] == 0``. Level k is the latent z_k at timestep k.
    """

    steps: int
    start_t: float
    timesteps: tuple[float, ...]
    sigmas: tuple[float, ...]

    @property
    def levels(self) -> int:
        """Number of inversion (= denoising) steps."""
        return len(self.timesteps) - 1

    def paste_levels(self, end_t: float) -> list[bool]:
        """For each level k (1..n, index k-1): does the step leaving z_k copy-paste (t_k >= t'')?"""
        t_end = end_t * TRAIN_TIMESTEPS
        return [t >= t_end - 1e-6 for t in self.timesteps[1:]]


def make_schedule(
    steps: int,
    start_t: float,
    sigma_of_timestep: Callable[[float], float],
) -> DragSchedule:
    """``steps`` evenly spaced timesteps over the 1000 training steps; invert up to t' = start_t*1000.

    With steps = 20 and start_t = 0.5 (the paper's defaults) the timesteps are 0, 50, ..., 500:
    10 inversion and 10 denoising steps. The last denoising step lands on sigma = 0.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise RegionDragInputError("steps", f"must be an integer >= 2, got {steps!r}.",
                                   "Use 20 (the paper's value) or more.")
    if not (isinstance(start_t, (int, float)) and math.isfinite(start_t) and 0.0 < start_t <= 1.0):
        raise RegionDragInputError("start_t", f"must lie in (0, 1], got {start_t!r}.",
                                   "0.5 (invert to t = 500) is the paper's value.")
    n = int(round(start_t * steps))
    if n < 1:
        raise RegionDragInputError(
            "start_t",
            f"start_t = {start_t} with steps = {steps} gives no inversion step.",
            f"Raise start_t to at least {1.0 / steps:.3g} or raise steps.")
    stride = TRAIN_TIMESTEPS / steps
    # The top level of a full inversion (start_t = 1) is the last training timestep, 999.
    timesteps = tuple(min(k * stride, TRAIN_TIMESTEPS - 1) for k in range(n + 1))
    sigmas = (0.0,) + tuple(float(sigma_of_timestep(t)) for t in timesteps[1:])
    return DragSchedule(steps=steps, start_t=float(start_t), timesteps=timesteps, sigmas=sigmas)


def abar(sigma: float) -> float:
    """abar = 1 / (1 + sigma^2): sigma = 0 is the clean latent (abar = 1)."""
    return 1.0 / (1.0 + sigma * sigma)


@dataclass(frozen=True)
class StepCoefficients:
    """Coefficients of one DDPM posterior step z_s -> z_t (s noisier than t), with eta = 1.

    z_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t - c^2) * eps + c * w      (DDIM Eq. 12, eta = 1)
    c   = sqrt((1 - abar_t) / (1 - abar_s)) * sqrt(1 - abar_s / abar_t)
    Forward (inversion) draw: z_s = sqrt(abar_s / abar_t) * z_t + sqrt(1 - abar_s / abar_t) * n.
    """

    scale_in: float     # x = z * scale_in at the model call (sqrt(1 + sigma_s^2))
    sigma_s: float
    coef_x0: float      # sqrt(abar_t)
    coef_eps: float     # sqrt(1 - abar_t - c^2)
    c: float            # posterior std; 0 on the last step to sigma = 0
    fwd_keep: float     # sqrt(abar_s / abar_t)
    fwd_noise: float    # sqrt(1 - abar_s / abar_t)
    scale_out: float    # x = z * scale_out at the lower level (sqrt(1 + sigma_t^2))


def step_coefficients(sigma_t: float, sigma_s: float) -> StepCoefficients:
    """Plain-float coefficients, computed once per run (no device syncs inside the loop)."""
    a_t, a_s = abar(sigma_t), abar(sigma_s)
    ratio = a_s / a_t
    c = math.sqrt((1.0 - a_t) / (1.0 - a_s)) * math.sqrt(max(0.0, 1.0 - ratio))
    return StepCoefficients(
        scale_in=math.sqrt(1.0 + sigma_s * sigma_s),
        sigma_s=sigma_s,
        coef_x0=math.sqrt(a_t),
        coef_eps=math.sqrt(max(0.0, 1.0 - a_t - c * c)),
        c=c,
        fwd_keep=math.sqrt(ratio),
        fwd_noise=math.sqrt(max(0.0, 1.0 - ratio)),
        scale_out=math.sqrt(1.0 + sigma_t * sigma_t),
    )


def schedule_coefficients(sigmas: Sequence[float]) -> list[StepCoefficients]:
    """Coefficients for the steps between consecutive levels: entry k-1 links z_k and z_{k-1}."""
    return [step_coefficients(sigmas[k - 1], sigmas[k]) for k in range(1, len(sigmas))]
