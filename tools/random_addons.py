"""Random-weight SD1.5 add-ons in the file layouts users download: a ControlNet and a LoRA.

Like ``scripts/random_checkpoints.py``: real weights cannot be shipped or downloaded here, so the tests
that chain RegionDrag with ControlNet and LoRA use files of the exact real layouts filled with seeded
random values. ComfyUI's own loaders (ControlNetLoader, LoraLoader) read them as they read real files.

    python tools/random_addons.py controlnet OUT.safetensors   # SD1.5 ControlNet (0.7 GB, fp16)
    python tools/random_addons.py lora OUT.safetensors         # SD1.5 LoRA, kohya key layout

* ControlNet: ``cldm.ControlNet`` with SD1.5's UNet encoder shapes and a 3-channel hint, saved without
  the ``control_model.`` prefix, as the widely used fp16 ``control_v11*_sd15_*.safetensors`` files are.
* LoRA: kohya/sd-scripts layout (``lora_unet_<diffusers name>.lora_down.weight`` / ``.lora_up.weight`` /
  ``.alpha`` and ``lora_te_text_model_encoder_layers_<i>_…`` for CLIP-L) on every linear layer of the
  UNet's transformer blocks and CLIP's attention and MLP layers.
Needs ComfyUI importable (see ``comfy_host.py``).
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))

import random_checkpoints  # noqa: E402

log = logging.getLogger("RegionDrag.random_addons")


def _save(sd: dict, path: str, what: str) -> str:
    """Write ``sd`` atomically unless ``path`` exists; returns ``path``."""
    import safetensors.torch
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".partial"
    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, tmp, metadata={"regiondrag": what})
    os.replace(tmp, path)
    return path


def random_controlnet_sd15_state_dict(seed: int = 0, dtype=torch.float16) -> dict:
    """An SD1.5 ControlNet (361,279,120 parameters, as the real ones) with random weights."""
    random_checkpoints.import_comfy()
    import comfy.cldm.cldm
    import comfy.ops
    cfg = dict(random_checkpoints.SD15_UNET)
    cfg.pop("out_channels")
    net = comfy.cldm.cldm.ControlNet(**cfg, hint_channels=3, operations=comfy.ops.disable_weight_init,
                                     device="cpu")
    random_checkpoints.randomize_(net, seed)
    with torch.no_grad():  # trained zero convolutions are small: keep the control a perturbation
        for name, p in net.named_parameters():
            if name.startswith(("zero_convs.", "middle_block_out.")):
                p.mul_(0.05)
    return {k: v.to(dtype) for k, v in net.state_dict().items()}


def write_random_controlnet_sd15(path: str, seed: int = 0) -> str:
    return _save(random_controlnet_sd15_state_dict(seed), path, f"random sd15 controlnet seed {seed}")


def _linear_lora(prefix: str, out_f: int, in_f: int, rank: int, g: torch.Generator, dtype) -> dict:
    down = torch.randn(rank, in_f, generator=g) / math.sqrt(in_f)
    up = torch.randn(out_f, rank, generator=g) * (0.05 / math.sqrt(rank))
    return {f"{prefix}.lora_down.weight": down.to(dtype), f"{prefix}.lora_up.weight": up.to(dtype),
            f"{prefix}.alpha": torch.tensor(float(rank)).to(dtype)}


def random_lora_sd15_state_dict(seed: int = 0, rank: int = 4, dtype=torch.float16) -> dict:
    """A kohya-layout SD1.5 LoRA on the UNet's transformer linears and CLIP-L's attention/MLP linears."""
    random_checkpoints.import_comfy()
    import comfy.utils
    g = torch.Generator().manual_seed(seed)
    sd = {}
    unet_cfg = dict(random_checkpoints.SD15_UNET)
    unet = random_checkpoints.random_family_model("sd15", unet_cfg, seed=seed).diffusion_model.state_dict()
    for diffusers_key, unet_key in comfy.utils.unet_to_diffusers(unet_cfg).items():
        if ".transformer_blocks." not in diffusers_key or not diffusers_key.endswith(".weight"):
            continue
        w = unet.get(unet_key)
        if w is None or w.ndim != 2:
            continue
        prefix = "lora_unet_" + diffusers_key[:-len(".weight")].replace(".", "_")
        sd.update(_linear_lora(prefix, w.shape[0], w.shape[1], rank, g, dtype))
    del unet
    for layer in range(12):  # CLIP-L: 12 layers of width 768, MLP 3072
        for name, (out_f, in_f) in (("self_attn_q_proj", (768, 768)), ("self_attn_k_proj", (768, 768)),
                                    ("self_attn_v_proj", (768, 768)), ("self_attn_out_proj", (768, 768)),
                                    ("mlp_fc1", (3072, 768)), ("mlp_fc2", (768, 3072))):
            sd.update(_linear_lora(f"lora_te_text_model_encoder_layers_{layer}_{name}", out_f, in_f, rank, g, dtype))
    return sd


def write_random_lora_sd15(path: str, seed: int = 0, rank: int = 4) -> str:
    return _save(random_lora_sd15_state_dict(seed, rank), path, f"random sd15 lora rank {rank} seed {seed}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=["controlnet", "lora"])
    p.add_argument("out", help="where to write the .safetensors file")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    (write_random_controlnet_sd15 if a.kind == "controlnet" else write_random_lora_sd15)(a.out, a.seed)
    log.info("wrote %s (%.2f GiB)", a.out, os.path.getsize(a.out) / 2**30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
