"""Random-weight Stable Diffusion 1.5 models, built with ComfyUI's own classes.

Real SD1.5 weights cannot be shipped or downloaded here, so tests, the demo and the benchmark use
models of the exact SD1.5 shapes filled with seeded random values. Random weights make every
property of the pipeline testable (exact reconstruction, isolation, shapes, speed) except image
quality.

    python scripts/random_sd15.py OUT.safetensors      # the full checkpoint (2.0 GiB, fp16)

writes the single-file SD1.5 layout (``model.diffusion_model.*``, ``first_stage_model.*``,
``cond_stage_model.transformer.*``) that ``CheckpointLoaderSimple`` detects as SD15. Needs ComfyUI
importable (see ``comfy_host.py``).
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

log = logging.getLogger("RegionDrag.random_sd15")

SD15_UNET = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
    channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
    # ComfyUI pops this list from the end while building output blocks 0..11: SD1.5 has
    # self-attention in output blocks 3..11, so the list reads block 11 first.
    transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], num_heads=8, num_head_channels=-1,
    use_spatial_transformer=True, legacy=False, context_dim=768, use_linear_in_transformer=False,
    adm_in_channels=None, use_temporal_attention=False, use_temporal_resblock=False, use_checkpoint=False,
)
SD15_VAE = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128,
                ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0)


def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded init of every tensor (ComfyUI's layers skip init): N(0, 1/fan_in) weights, unit norms."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if p.ndim >= 2 and "embedding" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            elif p.ndim >= 2:
                fan_in = math.prod(p.shape[1:])
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            elif leaf == "weight":      # norm layers
                p.fill_(1.0)
            else:                       # biases
                p.zero_()
    return module


def _comfy():
    """Import ComfyUI on first use (writing the checkpoint needs it; finding an existing one does not)."""
    import comfy_host
    comfy_host.import_comfy()


def sd15_model_config(unet: dict | None = None):
    _comfy()
    import comfy.supported_models
    return comfy.supported_models.SD15(dict(SD15_UNET if unet is None else unet))


def random_unet_model(unet: dict | None = None, seed: int = 0, dtype=torch.float32):
    """A ComfyUI BaseModel (SD15 model config, eps prediction) with random weights."""
    cfg = sd15_model_config(unet)
    cfg.set_inference_dtype(dtype, None)
    model = cfg.get_model({})
    randomize_(model.diffusion_model, seed)
    return model.to(dtype)


def random_model_patcher(unet: dict | None = None, seed: int = 0):
    """A ModelPatcher on the CPU around :func:`random_unet_model`, as CheckpointLoader would give."""
    _comfy()
    import comfy.model_patcher
    m = random_unet_model(unet, seed)
    return comfy.model_patcher.ModelPatcher(m, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def tiny_unet_config(context_dim: int = 64) -> dict:
    """An SD-style UNet with few channels: self-attention at two resolutions and in the middle."""
    return dict(SD15_UNET, model_channels=32, num_res_blocks=[1, 1], channel_mult=[1, 2],
                transformer_depth=[1, 1], transformer_depth_middle=1, transformer_depth_output=[1, 1, 1, 1],
                num_heads=2, context_dim=context_dim)


def random_sd15_state_dict(seed: int = 0, dtype=torch.float16) -> dict:
    """UNet + VAE + CLIP-L of SD1.5 in the original single-file key layout, random values."""
    _comfy()
    import comfy.ldm.models.autoencoder
    import comfy.ops
    import comfy.sd1_clip
    cfg = sd15_model_config()
    sd = {}
    unet = random_unet_model(seed=seed, dtype=dtype).diffusion_model
    sd.update(cfg.process_unet_state_dict_for_saving(unet.state_dict()))
    del unet
    vae = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=SD15_VAE, embed_dim=4)
    randomize_(vae, seed + 1)
    sd.update(cfg.process_vae_state_dict_for_saving({k: v.to(dtype) for k, v in vae.state_dict().items()}))
    clip = comfy.sd1_clip.SD1ClipModel(device="cpu", dtype=torch.float32)
    randomize_(clip, seed + 2)
    sd.update(cfg.process_clip_state_dict_for_saving({k: v.to(dtype) for k, v in clip.state_dict().items()}))
    return {k: v.contiguous() for k, v in sd.items()}


def write_random_sd15(path: str, seed: int = 0) -> str:
    """Write the checkpoint (atomically) unless it exists; returns ``path``."""
    import safetensors.torch
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".partial"
    safetensors.torch.save_file(random_sd15_state_dict(seed), tmp, metadata={"regiondrag": f"random sd15 seed {seed}"})
    os.replace(tmp, path)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="where to write the .safetensors file")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_random_sd15(a.out, a.seed)
    log.info("wrote %s (%.2f GiB)", a.out, os.path.getsize(a.out) / 2**30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
