"""The model families RegionDrag runs on: their names, native sizes, random-weight checkpoint files
(and where those are cached), and a checkpoint's family read from its keys.

    family  checkpoint                              native size   random-weight file (fp16)
    sd15    Stable Diffusion 1.5                    512           random_sd15.safetensors      2.1 GB
    sd2     SD2.x, eps (v2-1_512 layout)            512           random_sd2_512.safetensors   2.6 GB
    sd2v    SD2.x 768, v-prediction (v2-1_768)      768           random_sd2_768v.safetensors  2.6 GB
    sdxl    SDXL base (sd_xl_base_1.0 layout)       1024          random_sdxl.safetensors      6.9 GB

The random-weight files live in the cache folder (``comfy_finder.cache_dir()``: ``$REGIONDRAG_CACHE``,
else ``~/.cache/comfyui-regiondrag``); ``random_checkpoints.py`` writes them. Needs no ComfyUI.
"""
from __future__ import annotations

import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from comfy_finder import cache_dir  # noqa: E402

log = logging.getLogger("RegionDrag.families")

FAMILIES = ("sd15", "sd2", "sd2v", "sdxl")
DEFAULT_FAMILY = "sd15"
NATIVE_SIZE = {"sd15": 512, "sd2": 512, "sd2v": 768, "sdxl": 1024}
RANDOM_CHECKPOINT = {"sd15": "random_sd15.safetensors", "sd2": "random_sd2_512.safetensors",
                     "sd2v": "random_sd2_768v.safetensors", "sdxl": "random_sdxl.safetensors"}
RANDOM_CHECKPOINT_GB = {"sd15": 2.1, "sd2": 2.6, "sd2v": 2.6, "sdxl": 6.9}   # disk space, GB = 10^9 bytes


class FamilyError(ValueError):
    """A checkpoint whose family cannot be told; the message says what to pass instead."""


def check_family(family: str) -> str:
    if family not in NATIVE_SIZE:
        raise ValueError(f"unknown family {family!r}; one of {', '.join(FAMILIES)}")
    return family


def checkpoint_name(family: str) -> str:
    """File name of ``family``'s random-weight checkpoint (in the cache folder)."""
    return RANDOM_CHECKPOINT[check_family(family)]


def random_checkpoint_path(family: str) -> str:
    """Where ``family``'s random-weight checkpoint is cached (the file may not be written yet)."""
    return os.path.join(cache_dir(), checkpoint_name(family))


def family_of_checkpoint(path: str) -> str:
    """Guess sd15 / sd2 / sd2v / sdxl from a single-file checkpoint's keys (header only; SD2's v
    flag reads one small tensor, as ComfyUI does)."""
    import torch
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        keys = set(f.keys())
        if "conditioner.embedders.1.model.ln_final.weight" in keys or any(
                k.startswith("model.diffusion_model.label_emb.") for k in keys):
            return "sdxl"
        if any(k.startswith("cond_stage_model.model.") for k in keys):
            bias = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"
            if bias in keys and torch.std(f.get_tensor(bias).float(), unbiased=False) > 0.09:
                return "sd2v"
            return "sd2"
        if any(k.startswith("cond_stage_model.transformer.") for k in keys):
            return "sd15"
    raise ValueError(f"{path}: not an SD1.5, SD2.x or SDXL single-file checkpoint")


def resolve_family(ckpt: str | None, family: str | None = None) -> str:
    """The family a run uses: ``family`` when given (with a warning when ``ckpt``'s keys say another),
    else the one ``ckpt``'s keys show, else :data:`DEFAULT_FAMILY` without a checkpoint.
    Raises :class:`FamilyError` when ``ckpt``'s family cannot be told and none is given."""
    if family is not None:
        check_family(family)
    if ckpt is None:
        return family or DEFAULT_FAMILY
    try:
        found = family_of_checkpoint(ckpt)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError on a non-safetensors file
        if family is None:
            raise FamilyError(f"--ckpt {ckpt}: cannot tell its family ({e}); pass --family") from None
        return family
    if family is not None and family != found:
        log.warning("--family %s, but %s looks like %s from its keys; using %s.", family, ckpt, found, family)
    return family or found
