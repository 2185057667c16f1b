"""RegionDrag under the model patches users chain (in-process, random SD1.5, CPU, 128x128).

With no region pairs the edit must give the input latent back bit for bit whatever deterministic
patch sits on the MODEL that feeds both nodes: multi-pass guidance (Perturbed-Attention Guidance's
perturbed pass, Self-Attention Guidance's degraded pass) included, and at CFG > 1 with a negative
prompt. A patch that cannot run with the edit is refused, by name, before anything samples.

The sweep at the end runs every MODEL -> MODEL node the host registers, so a new ComfyUI release's
patch node is covered without editing this file.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest
import torch

from support import LogLines, run_node

pytestmark = pytest.mark.host

SIDE = 16                 # latent 16x16 (128x128): the middle block sees 2x2 tokens, enough for PAG and SAG to act
STEPS, START_T = 6, 0.5   # 3 inversion + 3 denoising steps


@pytest.fixture(scope="module")
def env(comfyui, sd15):
    model, clip, _ = sd15
    N = comfyui.NODES
    if "PerturbedAttentionGuidance" not in N:   # ComfyUI's own patch nodes (comfy_extras), as a server loads them
        with _quiet_import_failures():
            failed = asyncio.run(comfyui.nodes.init_builtin_extra_nodes())
        logging.getLogger(__name__).info("comfy_extras that did not import here: %s", failed)

    def encode(text):
        return run_node(N, "CLIPTextEncode", clip=clip, text=text)[0]

    latent = {"samples": torch.randn(1, 4, SIDE, SIDE, generator=torch.Generator().manual_seed(3))}
    return comfyui, N, model, encode("a photo of a cat"), encode("blurry"), latent


class _quiet_import_failures:
    """ComfyUI logs a traceback per extras module whose optional dependency (torchaudio, ...) is missing."""

    def __enter__(self):
        self.level = logging.getLogger().level
        logging.getLogger().setLevel(logging.CRITICAL)

    def __exit__(self, *exc):
        logging.getLogger().setLevel(self.level)


def reconstruct(env, model, negative=None, cfg=1.0, drag_negative="same", drag_cfg=None, latent=None, steps=STEPS):
    """A no-region edit at ``cfg`` (one step per inversion call: the exact path); returns (out, inversion)."""
    hc, N, plain_model, positive, _, own_latent = env
    latent = own_latent if latent is None else latent
    plain = model is plain_model and negative is None and cfg == 1.0 and drag_negative == "same" and drag_cfg is None
    if plain and (id(latent), steps) in _plain_runs:   # the unpatched reference run, shared by the controls
        return _plain_runs[(id(latent), steps)]
    sn = hc.pack.nodes.sampling_nodes
    inv = sn.run_inversion(model, positive, latent, steps, START_T, 7, "auto", 1, "all", negative, cfg)
    side = latent["samples"].shape[-1]
    empty = hc.core.mapping.build_drag_map([], (side * 8, side * 8), (side, side))
    out, _ = sn.run_drag(model, inv, empty, positive, 0.2, 1.0, 11,
                         negative=negative if drag_negative == "same" else drag_negative,
                         cfg=cfg if drag_cfg is None else drag_cfg)
    if plain:
        _plain_runs[(id(latent), steps)] = (out, inv)
    return out, inv


_plain_runs: dict = {}


def _err(out, latent):
    return (out - latent["samples"]).abs().max().item()


@pytest.mark.compat
def test_perturbed_attention_guidance_reconstructs_exactly(env):
    hc, N, model, positive, negative, latent = env
    pag = run_node(N, "PerturbedAttentionGuidance", model=model, scale=3.0)[0]
    out, inv = reconstruct(env, pag)
    assert inv.bank.passes() == 2     # the perturbed pass has keys/values of its own
    assert torch.equal(out, latent["samples"]), _err(out, latent)
    # control: PAG changes the model's prediction, so exactness is not the same run twice
    plain, plain_inv = reconstruct(env, model)
    assert plain_inv.bank.passes() == 1
    assert not torch.equal(inv.posterior_means[0], plain_inv.posterior_means[0])


@pytest.mark.compat
def test_self_attention_guidance_needs_a_negative_and_then_reconstructs_exactly(env):
    hc, N, model, positive, negative, latent = env
    sag = run_node(N, "SelfAttentionGuidance", model=model, scale=0.5, blur_sigma=2.0)[0]
    with pytest.raises(ValueError) as e:
        reconstruct(env, sag)
    text = str(e.value)
    assert text.startswith("DDPMInvertAndCache / negative:") and "Self-Attention Guidance" in text
    assert "Connect a negative prompt" in text
    out, inv = reconstruct(env, sag, negative)
    assert inv.negative_entries == 1 and inv.bank.passes() == 2   # the degraded pass of the negative
    assert torch.equal(out, latent["samples"]), _err(out, latent)


@pytest.mark.compat
def test_negative_prompt_at_cfg_7_5_reconstructs_exactly(env):
    hc, N, model, positive, negative, latent = env
    out, inv = reconstruct(env, model, negative, 7.5)
    assert inv.cfg == 7.5 and inv.negative_entries == 1
    assert {key[2] for key in inv.bank.keys()} == {0, 1}   # keys/values of the positive and the negative
    assert torch.equal(out, latent["samples"]), _err(out, latent)
    # control: CFG 7.5 is another model function than CFG 1
    plain, plain_inv = reconstruct(env, model)
    assert not torch.equal(inv.posterior_means[0], plain_inv.posterior_means[0])


def test_defaults_are_todays_results_bit_for_bit(env):
    """No negative at cfg 1, and a negative at cfg 1 (ComfyUI skips it): the same inversion as before."""
    hc, N, model, positive, negative, latent = env
    a, inv_a = reconstruct(env, model)
    b, inv_b = reconstruct(env, model, negative, 1.0)
    assert inv_b.negative_entries == 0 and set(inv_a.bank.keys()) == set(inv_b.bank.keys())
    assert all(torch.equal(x, y) for x, y in zip(inv_a.posterior_means, inv_b.posterior_means))


def test_guidance_inputs_are_checked_before_sampling(env):
    hc, N, model, positive, negative, latent = env
    with pytest.raises(ValueError) as e:
        reconstruct(env, model, None, 7.5)
    assert str(e.value).startswith("DDPMInvertAndCache / negative: is not connected, but cfg is 7.5")
    with pytest.raises(ValueError) as e:
        reconstruct(env, model, None, float("nan"))
    assert str(e.value).startswith("DDPMInvertAndCache / cfg: must be a number >= 0")
    # the inversion ran without the negative, the sampler runs it: refused before the sampler samples
    with pytest.raises(ValueError) as e:
        reconstruct(env, model, None, 1.0, drag_negative=negative, drag_cfg=7.5)
    assert str(e.value).startswith("RegionDragKSampler / negative: runs at every step here (cfg 7.5), but the "
                                   "inversion ran without a negative prompt")
    # a guidance patch added after the inversion: more UNet passes than were cached
    hc_sn = hc.pack.nodes.sampling_nodes
    _, inv = reconstruct(env, model)
    pag = run_node(N, "PerturbedAttentionGuidance", model=model, scale=3.0)[0]
    empty = hc.core.mapping.build_drag_map([], (SIDE * 8, SIDE * 8), (SIDE, SIDE))
    with pytest.raises(ValueError) as e:
        hc_sn.run_drag(pag, inv, empty, positive, 0.2, 1.0, 11)
    assert str(e.value).startswith("RegionDragKSampler / model: calls the UNet more often per step than the model "
                                   "the inversion ran with")


@pytest.mark.compat
def test_an_ip_adapter_style_cross_attention_patch_reconstructs_exactly(env):
    """An attn2 replace on every cross-attention layer that adds attention over extra image tokens, as
    IP-Adapter packs install it: it runs in both halves (counted), changes the model's prediction, and the
    no-region edit still gives the input back bit for bit."""
    hc, N, model, positive, negative, latent = env
    import comfy.ldm.modules.attention as attention
    m = model.clone()
    calls = []
    tokens = torch.randn(1, 4, 1280, generator=torch.Generator().manual_seed(9))   # "image prompt" keys/values

    def ip_adapter(q, k, v, extra_options):
        calls.append(1)
        heads = extra_options["n_heads"]
        out = attention.optimized_attention(q, k, v, heads)
        ip = tokens.to(q.dtype).repeat(q.shape[0], 1, 1)[..., :k.shape[-1]]
        return out + 0.5 * attention.optimized_attention(q, ip, ip, heads)

    for block, numbers in (("input", (1, 2, 4, 5, 7, 8)), ("middle", (0,)), ("output", range(3, 12))):
        for number in numbers:
            m.set_model_attn2_replace(ip_adapter, block, number)
    out, inv = reconstruct(env, m)
    assert len(calls) == 16 * 2 * inv.levels   # 16 cross-attention layers, every UNet call of both halves
    assert torch.equal(out, latent["samples"]), _err(out, latent)
    _, plain_inv = reconstruct(env, model)
    assert not torch.equal(inv.posterior_means[0], plain_inv.posterior_means[0])   # the patch acts


def test_a_patch_that_fails_inside_the_edit_is_named(env):
    """A post-CFG patch that raises: the message names the patch and the fix, the model is left alone."""
    hc, N, model, positive, negative, latent = env
    m = model.clone()

    def broken_guidance(args):
        raise KeyError("uncond_pred")

    m.set_model_sampler_post_cfg_function(broken_guidance)
    before = dict(model.model_options)
    with pytest.raises(ValueError) as e:
        reconstruct(env, m)
    text = str(e.value)
    assert text.startswith("DDPMInvertAndCache / model: carries ") and "broken_guidance" in text
    assert "KeyError" in text and "Remove that patch node" in text
    assert model.model_options == before


def test_token_merging_is_named_as_random_by_design(env):
    hc, N, model, positive, negative, latent = env
    tome = run_node(N, "TomePatchModel", model=model, ratio=0.3)[0]
    lines = LogLines()
    logging.getLogger("RegionDrag").addHandler(lines)
    try:
        out, _ = reconstruct(env, tome)
    finally:
        logging.getLogger("RegionDrag").removeHandler(lines)
    assert any("TomePatchModel" in line and "random token partition" in line for line in lines.lines)


# --------------------------------------------------------------------------- every MODEL -> MODEL node

# Nodes the sweep leaves out, each with why. Everything else that takes a MODEL and gives one back is run.
SKIP = {
    "TrainLoraNode": "trains a LoRA (needs latents and a dataset; not a patch)",
    "TorchCompileModel": "compiles the UNet (minutes on a CPU); tests/test_host_sampling.py covers it",
    "ChromaRadianceOptions": "Chroma Radiance (a DiT) options",
    "SkipLayerGuidanceDiT": "DiT blocks (SD3, Flux)",
    "SkipLayerGuidanceDiTSimple": "DiT blocks (SD3, Flux)",
    "SkipLayerGuidanceSD3": "SD3 blocks",
    "ScaleROPE": "rotary position embeddings (Flux, Wan, Qwen): SD1.5 has none",
    "wanBlockSwap": "Wan video blocks",
    "WanContextWindowsManual": "Wan video context windows",
    "ContextWindowsManual": "context windows over video frames",
    "VideoLinearCFGGuidance": "SVD: CFG ramped over video frames",
    "VideoTriangleCFGGuidance": "SVD: CFG ramped over video frames",
    "UNetTemporalAttentionMultiply": "SVD's temporal attention",
    "TemporalScoreRescaling": "video models' temporal score rescaling",
    # weight merges patch every weight of the UNet when it loads (5-15 s each on a CPU), all as
    # ModelMergeSimple does; it and ModelMergeSD1 (per-block ratios) stand for them
    "ModelMergeAdd": "a weight merge, as ModelMergeSimple",
    "ModelMergeSubtract": "a weight merge, as ModelMergeSimple",
    "ModelMergeBlocks": "a weight merge, as ModelMergeSD1",
}
# Patches that run but cannot retrace the inversion, by design (README: which patches compose).
NOT_EXACT = {
    "TomePatchModel": "Token Merging draws a new random token partition at every UNet call",
}
SIMPLE = {"INT", "FLOAT", "BOOLEAN", "STRING"}


def _model_to_model_nodes(mapping):
    found = []
    for node_id, cls in sorted(mapping.items()):
        try:
            types = cls.INPUT_TYPES()
        except Exception:   # a node whose inputs cannot be listed here is no patch node we can build
            continue
        required = types.get("required", {})
        kinds = [spec[0] if isinstance(spec[0], str) else "COMBO" for spec in required.values()]
        if "MODEL" in kinds and "MODEL" in tuple(getattr(cls, "RETURN_TYPES", ())):
            found.append(node_id)
    return found


def _inputs(cls, given):
    """Every required input: one of ``given`` (by type: MODEL, CLIP, CONDITIONING), or the widget's
    default; None when one cannot be made up."""
    inputs = {}
    for name, spec in cls.INPUT_TYPES().get("required", {}).items():
        kind = spec[0]
        options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        if isinstance(kind, str) and kind in given:
            inputs[name] = given[kind]
        elif isinstance(kind, (list, tuple)) or kind == "COMBO":
            choices = list(kind) if kind != "COMBO" else list(options.get("options") or [])
            if not choices:
                return None, f"{name}: no choice available (no model files of that kind)"
            files = [c for c in choices if str(c).startswith("random_") and "sd15" in str(c)]  # ours, for SD1.5
            inputs[name] = files[0] if files else options.get("default", choices[0])
        elif kind in SIMPLE:
            inputs[name] = options.get("default", options.get("min", {"STRING": "", "BOOLEAN": False}.get(kind, 0)))
        else:
            return None, f"{name}: needs a {kind}"
    return inputs, None


# latent 16x16 (128x128): at 8x8 the deepest blocks are 1x1 and FreeU_V2 divides by max - min = 0 (NaN with
# or without RegionDrag). One inversion and one denoising step: each patch acts on every UNet call.
SWEEP_SIDE, SWEEP_STEPS = 16, 2


def test_every_model_patch_node_composes_or_is_refused_by_name(env, sd15, addon_files, record_property):
    """Each patch node with its default settings on the MODEL of both halves: the no-region edit gives the
    input back exactly, or the pack refuses the patch by name before sampling; never a raw error."""
    hc, N, model, positive, negative, _ = env
    latent = {"samples": torch.randn(1, 4, SWEEP_SIDE, SWEEP_SIDE, generator=torch.Generator().manual_seed(5))}
    import folder_paths
    folder_paths.add_model_folder_path("loras", os.path.dirname(addon_files["loras"]))   # LoRA loaders get one
    given = {"MODEL": model, "CLIP": sd15[1], "CONDITIONING": negative}
    nodes = _model_to_model_nodes(N)
    assert len(nodes) >= 30, nodes           # the host registers dozens: the listing itself works
    results, failures = {}, []
    for node_id in nodes:
        cls = N[node_id]
        if node_id in SKIP:
            results[node_id] = "skipped: " + SKIP[node_id]
            continue
        if "model_specific" in str(getattr(cls, "CATEGORY", "")) and not node_id.endswith("SD1"):
            results[node_id] = "skipped: another family's node (category model_specific)"
            continue
        inputs, why = _inputs(cls, given)
        if inputs is None:
            results[node_id] = "not built: " + why
            continue
        try:
            patched = next(o for o in run_node(N, node_id, **inputs) if hasattr(o, "model_options"))
        except Exception as e:   # the node itself refuses an SD1.5 model (another family's node)
            results[node_id] = f"node refused SD1.5: {type(e).__name__}"
            continue
        before = dict(patched.model_options)
        started = time.perf_counter()
        try:
            out, _ = reconstruct(env, patched, latent=latent, steps=SWEEP_STEPS)
        except hc.core.errors.RegionDragInputError as e:
            results[node_id] = "refused: " + e.problem[:80]
            continue
        except Exception as e:   # a raw Python error out of the edit is a defect
            failures.append(f"{node_id}: raw {type(e).__name__}: {e}")
            continue
        finally:
            assert patched.model_options.keys() == before.keys(), node_id   # the user's model is left as it was
        err = _err(out, latent)
        results[node_id] = ("exact" if err == 0.0 else f"off by {err:.3g}") + f" ({time.perf_counter() - started:.1f} s)"
        if err != 0.0 and node_id not in NOT_EXACT:
            failures.append(f"{node_id}: no-region edit off by {err}")
    logging.getLogger("RegionDrag").info("patch sweep: %s", results)
    record_property("patch_sweep", results)
    counts = {}
    for r in results.values():
        kind = r.split(" (")[0].split(":")[0].split(" by")[0]
        counts[kind] = counts.get(kind, 0) + 1
    print(f"\npatch sweep over {len(nodes)} MODEL->MODEL nodes: {counts}")
    for node_id, r in results.items():
        print(f"  {node_id}: {r}")
    assert not failures, "\n".join(failures)
    assert results.get("PerturbedAttentionGuidance", "").startswith("exact")
