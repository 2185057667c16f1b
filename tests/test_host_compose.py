"""RegionDrag composed with the rest of ComfyUI (in-process, random SD1.5, CPU, small sizes).

With no region pairs the edit must give back the input latent whatever the positive conditioning
(combined entries, an area, a mask, timestep ranges, a ControlNet), with a LoRA-patched model, and
with an attention override that another pack installs in ``transformer_options``. Each case runs
with ComfyUI's normal batching of conditioning entries and with entries split one per UNet call, as
ComfyUI does when free memory is short. Other attn1 patches on the model keep running.
"""
from __future__ import annotations

import os
import sys

import pytest
import torch

from support import run_node

pytestmark = pytest.mark.host

STEPS, START_T = 6, 0.5    # 3 inversion + 3 denoising steps: every property below holds per step
H = W = 16                 # latent 16x16 (128x128 image)
BOUND = 1e-3               # the plain single-prompt case's bound (tests/test_host_sampling.py)


@pytest.fixture(scope="module")
def env(comfyui, sd15, addon_files):
    import folder_paths
    for kind, path in addon_files.items():
        folder_paths.add_model_folder_path(kind, os.path.dirname(path))
    model, clip, vae = sd15
    N = comfyui.NODES

    def encode(text, c=clip):
        return run_node(N, "CLIPTextEncode", clip=c, text=text)[0]

    latent = {"samples": torch.randn(1, 4, H, W, generator=torch.Generator().manual_seed(3))}
    return comfyui, N, model, clip, vae, encode, latent


def _combined(env):
    hc, N, model, clip, vae, encode, _ = env
    pos = run_node(N, "ConditioningCombine", conditioning_1=encode("a red house"),
                   conditioning_2=encode("a green tree"))[0]
    return model, pos


def _area(env):
    hc, N, model, clip, vae, encode, _ = env
    area = run_node(N, "ConditioningSetArea", conditioning=encode("a green tree"), width=64, height=64, x=64, y=0,
                    strength=1.0)[0]
    return model, run_node(N, "ConditioningCombine", conditioning_1=encode("a red house"), conditioning_2=area)[0]


def _mask(env):
    hc, N, model, clip, vae, encode, _ = env
    m = torch.zeros(1, H * 8, W * 8)
    m[:, 32:96, 16:80] = 1.0
    masked = run_node(N, "ConditioningSetMask", conditioning=encode("a green tree"), mask=m, strength=1.0,
                      set_cond_area="mask bounds")[0]
    return model, run_node(N, "ConditioningCombine", conditioning_1=encode("a red house"), conditioning_2=masked)[0]


def _timestep_ranged(env):
    hc, N, model, clip, vae, encode, _ = env
    early = run_node(N, "ConditioningSetTimestepRange", conditioning=encode("a red house"), start=0.0, end=0.75)[0]
    late = run_node(N, "ConditioningSetTimestepRange", conditioning=encode("a green tree"), start=0.75, end=1.0)[0]
    return model, run_node(N, "ConditioningCombine", conditioning_1=early, conditioning_2=late)[0]


def _controlnet(env):
    hc, N, model, clip, vae, encode, _ = env
    cn = run_node(N, "ControlNetLoader", control_net_name="random_controlnet_sd15.safetensors")[0]
    hint = torch.rand(1, H * 8, W * 8, 3, generator=torch.Generator().manual_seed(4))
    pos, _neg = run_node(N, "ControlNetApplyAdvanced", positive=encode("a red house"), negative=encode(""),
                         control_net=cn, image=hint, strength=1.0, start_percent=0.0, end_percent=1.0)
    return model, pos


def _lora(env):
    hc, N, model, clip, vae, encode, _ = env
    m, c = run_node(N, "LoraLoader", model=model, clip=clip, lora_name="random_lora_sd15.safetensors",
                    strength_model=1.0, strength_clip=1.0)
    return m, encode("a red house", c)


def _attention_override(env):
    hc, N, model, clip, vae, encode, _ = env
    m = model.clone()
    calls = []

    def override(func, *args, **kwargs):  # what SageAttention-style packs install
        calls.append(1)
        return func(*args, **kwargs)

    m.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = override
    m.regiondrag_test_calls = calls
    return m, encode("a red house")


CASES = {"combined": _combined, "area": _area, "mask": _mask, "timestep_ranged": _timestep_ranged,
         "controlnet": _controlnet, "lora": _lora, "attention_override": _attention_override}
COMPAT_CASES = ("combined", "controlnet")   # older hosts (CI): two entries in one call or two, and a ControlNet


@pytest.fixture(params=["batched", "split"])
def split(request, monkeypatch):
    """'split': ComfyUI sees no free memory while batching conditioning entries, so it runs one entry
    per UNet call (its low-memory path); model loading and everything else see the real figures."""
    if request.param == "split":
        import comfy.model_management as mm
        real = mm.get_free_memory

        def short_in_cond_batching(*args, **kwargs):
            if sys._getframe(1).f_code.co_name in ("_calc_cond_batch", "calc_cond_batch"):
                return 0
            return real(*args, **kwargs)

        monkeypatch.setattr(mm, "get_free_memory", short_in_cond_batching)
    return request.param


def reconstruct(env, model, positive):
    hc, N, *_rest, latent = env
    sn = hc.pack.nodes.sampling_nodes
    core = hc.core
    inv = sn.run_inversion(model, positive, latent, STEPS, START_T, 7)
    empty = core.mapping.build_drag_map([], (H * 8, W * 8), (H, W))
    out, swap = sn.run_drag(model, inv, empty, positive, 0.2, 1.0, 11)
    return inv, out, swap


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.compat) if c in COMPAT_CASES else c
                                  for c in CASES])
def test_no_region_edit_reconstructs_with_any_conditioning(env, split, case):
    model, positive = CASES[case](env)
    latent = env[-1]["samples"]
    inv, out, swap = reconstruct(env, model, positive)
    # the K/V swap really ran: 16 self-attention layers at every denoising step
    assert len({key for key in swap.calls if key[0] in range(1, inv.levels + 1)}) >= 16 * inv.levels
    err = (out - latent).abs().max().item()
    assert err < BOUND, f"{case} ({split}): max |out - in| = {err}"
    if case == "attention_override":
        # 16 self- and 16 cross-attention layers per UNet call, inversion and denoising: the override
        # must run inside RegionDrag's self-attention too, not only in cross-attention.
        assert len(model.regiondrag_test_calls) == 32 * 2 * inv.levels


def test_conditioning_matters_so_the_checks_can_fail(env):
    """Control: the cases above differ from a single prompt (their K/V and noise terms change)."""
    hc, N, model, clip, vae, encode, latent = env
    sn = hc.pack.nodes.sampling_nodes
    single = sn.run_inversion(model, encode("a red house"), latent, STEPS, START_T, 7)
    _, combined = _combined(env)
    both = sn.run_inversion(model, combined, latent, STEPS, START_T, 7)
    assert not torch.allclose(single.noise_terms[0], both.noise_terms[0])


@pytest.mark.compat
def test_another_attn1_replace_keeps_running_beside_regiondrag(env):
    """A pack's attn1 replace on the same block is chained, not silently dropped."""
    hc, N, model, clip, vae, encode, latent = env
    import comfy.ldm.modules.attention as attention
    m = model.clone()
    seen = []

    def other_pack(q, k, v, extra_options):
        seen.append(tuple(extra_options["block"]))
        return attention.optimized_attention(q, k, v, extra_options["n_heads"])

    m.set_model_attn1_replace(other_pack, "input", 1)
    inv, out, swap = reconstruct(env, m, encode("a red house"))
    assert seen.count(("input", 1)) == 2 * inv.levels   # once per UNet call, both halves
    assert (out - latent["samples"]).abs().max().item() < BOUND
    assert m.model_options["transformer_options"]["patches_replace"]["attn1"][("input", 1)] is other_pack
