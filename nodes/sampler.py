"""Running RegionDrag's sampler functions through ComfyUI's CFGGuider and KSAMPLER; batching by conditioning."""
from __future__ import annotations

import torch

import comfy.model_management
import comfy.samplers
import comfy.utils
import latent_preview


def run_sampler(model, positive, latent_samples, sigmas, sampler_function, options, seed, swap=None,
                negative=None, cfg=1.0):
    """Run ``sampler_function`` through ComfyUI's guider/KSAMPLER machinery; returns the LATENT samples.

    The guider is ComfyUI's CFGGuider: by default at CFG 1 with the positive prompt alone (the paper);
    with a ``negative`` prompt and ``cfg`` as a KSampler's. ``latent_samples`` is the image LATENT (both
    halves pass the inverted one, so models that read the latent image, such as inpainting checkpoints,
    see the same input in both); the noise is zero."""
    guider = comfy.samplers.CFGGuider(model)
    conds = {"positive": positive}
    if negative is not None:
        conds["negative"] = negative
    guider.inner_set_conds(conds)
    guider.set_cfg(float(cfg))
    if swap is not None:  # which conditioning entry is which, by the ids ComfyUI gave them (prompt order,
        # the negative's entries after the positive's)
        swap.set_entries([c.get("uuid") for name in ("positive", "negative")
                          for c in guider.original_conds.get(name, [])])
    sampler = comfy.samplers.KSAMPLER(sampler_function, extra_options=options)
    callback = latent_preview.prepare_callback(model, len(sigmas) - 1)
    noise = torch.zeros(latent_samples.shape, dtype=torch.float32, device="cpu")
    samples = guider.sample(noise, latent_samples, sampler, sigmas, denoise_mask=None, callback=callback,
                            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    return samples.to(comfy.model_management.intermediate_device())


def latent_out(model, z0: torch.Tensor) -> torch.Tensor:
    """z_0 (model latent space) as the sampler's output LATENT, computed as the host computes it."""
    return model.model.process_latent_out(z0.to(torch.float32)).to(comfy.model_management.intermediate_device())


def conditioning_split_key(model, positive, schedule, negative=None):
    """For each level, which conditioning entries (and their ControlNets) are active at its sigma.

    ComfyUI decides timestep ranges (Conditioning Set Timestep Range, ControlNet start/end percent)
    and hook keyframes from the first sigma of a batch, so a batched inversion call may only hold
    levels that agree on all of them. Returns ``key(level)``; hooks split every level."""
    ms = model.get_model_object("model_sampling")
    ranges = []
    hooked = False
    for entry in list(positive or []) + list(negative or []):
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
