"""The patches a user chained onto the MODEL, as RegionDrag sees them: what they are called, what they need.

Model-patching nodes (Self-Attention Guidance, Perturbed-Attention Guidance, FreeU, RescaleCFG, ...)
put functions into the ModelPatcher's ``model_options``. RegionDrag runs the patched model in both
halves, so every deterministic patch composes with the edit; this module names the patches for the
messages, refuses the combinations that cannot run before anything samples, and turns a patch that
fails inside the edit into a message that names it instead of a raw Python error.
"""
from __future__ import annotations

import contextlib
import logging
import math
import sys

import torch

import comfy.model_management

from ..regiondrag_core.errors import RegionDragInputError
from ..regiondrag_core.kvbank import KVMismatch

log = logging.getLogger("RegionDrag")

_PACK = __name__.rsplit(".", 2)[0]   # this pack's top-level module (ComfyUI names it by its folder)

# Patches whose calls are random by design: the edit then cannot retrace the inversion exactly.
RANDOM_BY_DESIGN = {"TomePatchModel": "Token Merging draws a new random token partition at every UNet call"}


def _callables(obj, depth: int = 0):
    """Every callable inside ``obj`` (dicts, lists and tuples of patches, as model_options nests them)."""
    if depth > 6:
        return
    if isinstance(obj, dict):
        for value in obj.values():
            yield from _callables(value, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _callables(value, depth + 1)
    elif callable(obj) and not isinstance(obj, type):
        yield obj


def _module_of(fn) -> str:
    target = getattr(fn, "__func__", fn)
    module = getattr(target, "__module__", None)
    if module is None and hasattr(target, "__class__"):
        module = type(target).__module__
    return module or ""


def _nodes_by_module() -> dict:
    """{module name: [(node id, display name)]} of the nodes ComfyUI registered."""
    nodes = sys.modules.get("nodes")
    mapping = getattr(nodes, "NODE_CLASS_MAPPINGS", {}) or {}
    display = getattr(nodes, "NODE_DISPLAY_NAME_MAPPINGS", {}) or {}
    found: dict = {}
    for node_id, cls in mapping.items():
        found.setdefault(getattr(cls, "__module__", ""), []).append((node_id, display.get(node_id) or node_id))
    return found


def patch_functions(model) -> list:
    """The functions other nodes put on ``model`` (sampler and attention patches, wrappers, callbacks),
    RegionDrag's own left out."""
    options = getattr(model, "model_options", {}) or {}
    found = []
    for key, value in options.items():
        if key == "transformer_options":
            for sub_key, sub in (value or {}).items():
                if sub_key in ("patches", "patches_replace", "wrappers", "callbacks") or callable(sub):
                    found.extend(_callables(sub))
        elif key.startswith(("sampler_", "model_function_wrapper", "denoise_mask_function")):
            found.extend(_callables(value))
    return [fn for fn in found if not _module_of(fn).startswith(_PACK)]


def patch_names(model) -> list:
    """Display names of the nodes whose patches are on ``model`` ("Self-Attention Guidance"); a patch of no
    known node by its module and name."""
    by_module = _nodes_by_module()
    names = []
    for fn in patch_functions(model):
        module = _module_of(fn)
        owners = by_module.get(module)
        if owners and len(owners) <= 3:
            label = " / ".join(d for _, d in owners)
        else:
            label = f"{module}.{getattr(fn, '__qualname__', type(fn).__name__)}".strip(".")
        if label not in names:
            names.append(label)
    return names


def _patch_node_ids(model) -> set:
    by_module = _nodes_by_module()
    return {node_id for fn in patch_functions(model) for node_id, _ in by_module.get(_module_of(fn), [])}


def check_guidance(model, negative, cfg) -> None:
    """Before sampling: the CFG scale, the negative prompt and the patches on ``model`` fit together.

    A patch that needs the unconditional prediction (it disables ComfyUI's CFG-1 shortcut, as
    Self-Attention Guidance does) gets it only with a negative prompt; CFG above 1 needs one too."""
    if isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not math.isfinite(cfg) or cfg < 0:
        raise RegionDragInputError("cfg", f"must be a number >= 0, got {cfg!r}.",
                                   "Use 1.0 (the paper's value: the positive prompt alone).")
    options = getattr(model, "model_options", {}) or {}
    if negative is None and not math.isclose(float(cfg), 1.0):
        raise RegionDragInputError(
            "negative", f"is not connected, but cfg is {cfg}: classifier-free guidance needs a negative "
            "prompt to guide away from.",
            "Connect a negative prompt (CLIP Text Encode; an empty prompt works), or set cfg to 1.0.")
    if negative is None and options.get("disable_cfg1_optimization", False):
        names = ", ".join(patch_names(model)) or "a patch on the model"
        raise RegionDragInputError(
            "negative",
            f"is not connected, but the model carries {names}, which needs the unconditional (negative) "
            "prediction at every step; RegionDrag computes it only when a negative prompt is given.",
            "Connect a negative prompt (an empty prompt works) to both DDPM Invert-and-Cache and RegionDrag "
            "KSampler, or remove that patch node.")
    for node_id in sorted(_patch_node_ids(model) & set(RANDOM_BY_DESIGN)):
        log.warning("RegionDrag: %s is on the model: %s, so the edit will not retrace the inversion exactly "
                    "(a no-region edit will not give the input back).", node_id, RANDOM_BY_DESIGN[node_id])


def uses_uncond(model, negative, cfg) -> bool:
    """Whether ComfyUI will run the negative prompt's entries (CFG != 1, or a patch that needs them)."""
    if negative is None:
        return False
    options = getattr(model, "model_options", {}) or {}
    return not math.isclose(float(cfg), 1.0) or bool(options.get("disable_cfg1_optimization", False))


def extra_passes(model) -> int:
    """UNet passes per step beyond the first that the model's patches may make (each post-CFG function
    may call the UNet once more: Perturbed-Attention and Self-Attention Guidance do)."""
    options = getattr(model, "model_options", {}) or {}
    return len(options.get("sampler_post_cfg_function", []) or [])


@contextlib.contextmanager
def patch_failures_named(model):
    """Around sampling with ``model``: an error out of it becomes :func:`named_failure`'s, when it has one."""
    try:
        yield
    except Exception as e:
        named = named_failure(model, e)
        if named is None:
            raise
        raise named from e


def named_failure(model, error: Exception):
    """The error to raise for ``error`` out of sampling: a RegionDragInputError naming the model's patches
    when it carries any, else None (re-raise as is). Interruptions, out-of-memory and the pack's own errors
    (a K/V mismatch is the conditioning's, not a patch's) pass unchanged."""
    out_of_memory = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", MemoryError)
    if isinstance(error, (RegionDragInputError, KVMismatch, comfy.model_management.InterruptProcessingException,
                          out_of_memory, MemoryError)):
        return None
    names = patch_names(model)
    if not names:
        return None
    return RegionDragInputError(
        "model", f"carries {', '.join(names)}, and a patch failed inside the edit: "
        f"{type(error).__name__}: {error}",
        "Remove that patch node from the MODEL that feeds DDPM Invert-and-Cache and RegionDrag KSampler, or "
        "check its settings; the edit itself runs without it.")
