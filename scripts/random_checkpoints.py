"""Random-weight checkpoints of every family RegionDrag supports, in their exact single-file layouts.

Real weights cannot be shipped or downloaded here, so tests, the smoke run of ``run_edit.py`` and the
benchmark use checkpoints of the exact shapes and key layouts of the real files, filled with seeded
random values. Random weights make every property of the pipeline testable (exact reconstruction,
isolation, shapes, speed) except image quality.

    family     what CheckpointLoaderSimple sees     file (fp16)
    sd15       SD15, eps                            2.0 GiB
    sd2        SD20, eps  (v2-1_512 layout)         2.4 GiB
    sd2v       SD20, v-prediction (v2-1_768)        2.4 GiB
    sdxl       SDXL, eps  (sd_xl_base_1.0 layout)   6.5 GiB

    python scripts/random_checkpoints.py --family sdxl [OUT.safetensors]

writes the family's file to OUT, by default to the cache folder under the name the other scripts and
the tests look for (see ``families.py``); a file already there from this generator is kept.

The components are built with ComfyUI's own classes on the ``meta`` device (shapes only, no memory),
converted to the checkpoint layout by ComfyUI's own ``process_*_for_saving``, and the file is then
written tensor by tensor: each tensor is drawn from a generator seeded by (seed, key), so writing
needs memory for one tensor, not for the model, and the values do not depend on the writing order.
Values: N(0, 1/fan_in) weights, N(0, 0.02) embeddings, unit norm weights, zero biases. SD2's
v-prediction is recognised by ComfyUI from the statistics of a UNet norm bias (trained v models
have non-zero ones, see ``comfy.supported_models.SD20.model_type``), so the v file gives every UNet
norm bias N(0, 0.2) values, as a real v2-1_768 file has, and the eps file keeps them at zero.

The tests' in-memory models (:func:`random_family_model`, :func:`random_family_patcher`, with the
small UNet configurations below) are seeded the same way per module. Writing or building a model
needs ComfyUI importable (see ``comfy_host.py``); finding a checkpoint does not.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import struct
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from families import FAMILIES, check_family, checkpoint_name, random_checkpoint_path  # noqa: E402,F401

log = logging.getLogger("RegionDrag.random_checkpoints")

GENERATOR_VERSION = "1"   # bump when the values change: cached files of another version are rewritten

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
SD2_UNET = dict(SD15_UNET, context_dim=1024, use_linear_in_transformer=True, num_heads=-1, num_head_channels=64)
# As ComfyUI's model_detection lists SDXL base. transformer_depth_output is popped from the end while
# ComfyUI builds output blocks 0..8: blocks 0-2 hold 10 transformer blocks each, 3-5 hold 2, 6-8 none.
SDXL_UNET = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2],
    channel_mult=[1, 2, 4], transformer_depth=[0, 0, 2, 2, 10, 10], transformer_depth_middle=10,
    transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10], num_heads=-1, num_head_channels=64,
    use_spatial_transformer=True, legacy=False, context_dim=2048, use_linear_in_transformer=True,
    num_classes="sequential", adm_in_channels=2816, use_temporal_attention=False, use_temporal_resblock=False,
    use_checkpoint=False,
)

SPECS = {
    # family: (ComfyUI model config class, UNet config, v-prediction)
    "sd15": ("SD15", SD15_UNET, False),
    "sd2": ("SD20", SD2_UNET, False),
    "sd2v": ("SD20", SD2_UNET, True),
    "sdxl": ("SDXL", SDXL_UNET, False),
}
assert tuple(SPECS) == FAMILIES

# self-attention layers (transformer blocks) a UNet of each family has
SELF_ATTENTION_LAYERS = {"sd15": 16, "sd2": 16, "sd2v": 16, "sdxl": 70}

_ST_DTYPES = {torch.float16: "F16", torch.float32: "F32", torch.bfloat16: "BF16", torch.int64: "I64",
              torch.int32: "I32"}


def import_comfy():
    """Import ComfyUI on first use (writing a checkpoint needs it; finding an existing one does not)."""
    import comfy_host
    comfy_host.import_comfy()


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


def model_config(family: str, unet: dict | None = None):
    """ComfyUI's model config (supported_models class) of ``family`` for ``unet`` (default: full size)."""
    import_comfy()
    import comfy.supported_models
    cls, full, _ = SPECS[check_family(family)]
    return getattr(comfy.supported_models, cls)(dict(full if unet is None else unet))


def small_unet_config(family: str) -> dict:
    """The family's UNet with few channels: same blocks, same self-attention layers, fast on a CPU."""
    if family == "sdxl":   # 64 channels per head: the first attention level (64 channels) has one
        return dict(SDXL_UNET, model_channels=32)
    if family in ("sd2", "sd2v"):   # ComfyUI's SD20 config fixes 64 channels per head
        return dict(SD2_UNET, model_channels=64)
    return dict(SD15_UNET, model_channels=32, num_heads=2)


def tiny_unet_config(context_dim: int = 64) -> dict:
    """An SD1.5-style UNet with few channels and two levels: self-attention at two resolutions and in
    the middle (the fastest UNet that still has every kind of block the edit touches)."""
    return dict(SD15_UNET, model_channels=32, num_res_blocks=[1, 1], channel_mult=[1, 2],
                transformer_depth=[1, 1], transformer_depth_middle=1, transformer_depth_output=[1, 1, 1, 1],
                num_heads=2, context_dim=context_dim)


def random_family_model(family: str, unet: dict | None = None, seed: int = 0, dtype=torch.float32):
    """A ComfyUI BaseModel of ``family`` (its own model type: eps, or v for sd2v) with random weights."""
    cfg = model_config(family, unet)
    import comfy.model_base
    cfg.set_inference_dtype(dtype, None)
    if SPECS[family][2]:
        model = comfy.model_base.BaseModel(cfg, model_type=comfy.model_base.ModelType.V_PREDICTION)
    else:
        model = cfg.get_model({})
    randomize_(model.diffusion_model, seed)
    return model.to(dtype)


def random_family_patcher(family: str, unet: dict | None = None, seed: int = 0):
    """A ModelPatcher on the CPU around :func:`random_family_model`, as CheckpointLoader would give."""
    m = random_family_model(family, unet, seed)
    import comfy.model_patcher
    return comfy.model_patcher.ModelPatcher(m, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


# ------------------------------------------------------------------ the checkpoint layout, shapes only

def _clip_model(family: str, dtype):
    import comfy.sd1_clip
    import comfy.sdxl_clip
    import comfy.text_encoders.sd2_clip
    if family == "sd15":
        return comfy.sd1_clip.SD1ClipModel(device="meta", dtype=dtype)
    if family in ("sd2", "sd2v"):
        return comfy.text_encoders.sd2_clip.SD2ClipModel(device="meta", dtype=dtype)
    return comfy.sdxl_clip.SDXLClipModel(device="meta", dtype=dtype)


def layout(family: str, dtype=torch.float16) -> dict:
    """{key: tensor} of the whole checkpoint as ComfyUI would save it; float tensors are on ``meta``."""
    import_comfy()
    import comfy.ldm.models.autoencoder
    cfg = model_config(family)
    cfg.set_inference_dtype(dtype, None)
    with torch.device("meta"):
        unet = cfg.get_model({}, device="meta").diffusion_model
        vae = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=SD15_VAE, embed_dim=4)
        clip = _clip_model(family, dtype)
    sd = dict(cfg.process_unet_state_dict_for_saving(unet.state_dict()))
    sd.update(cfg.process_vae_state_dict_for_saving(vae.state_dict()))
    sd.update(cfg.process_clip_state_dict_for_saving(clip.state_dict()))
    out = {}
    for k, v in sd.items():
        if v.is_floating_point() and v.dtype != dtype:
            v = v.to(dtype) if not v.is_meta else torch.empty(v.shape, dtype=dtype, device="meta")
        out[k] = v
    return out


def _key_generator(seed: int, key: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}/{key}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _value(key: str, t: torch.Tensor, sd: dict, seed: int, v_pred: bool) -> torch.Tensor:
    """Seeded values for one tensor of the layout (tensors that are not on ``meta`` keep theirs)."""
    if not t.is_meta:
        return t.contiguous()
    name = key.rsplit(".", 1)[-1]
    stem = key[: -len(name)]
    shape, dtype = tuple(t.shape), t.dtype
    if name == "logit_scale":
        return torch.full(shape, math.log(100.0), dtype=dtype)
    g = _key_generator(seed, key)
    if len(shape) >= 2:
        embedding = any("embedding" in part for part in key.split(".")[-2:])
        scale = 0.02 if embedding else 1.0 / math.sqrt(math.prod(shape[1:]))
        return torch.randn(shape, generator=g, dtype=dtype).mul_(scale)
    weight = sd.get(stem + "weight")
    is_norm = weight is not None and weight.ndim == 1
    if name == "weight":            # norm layers (every other weight has 2 or more dimensions)
        return torch.ones(shape, dtype=dtype)
    if v_pred and is_norm and key.startswith("model.diffusion_model."):
        return torch.randn(shape, generator=g, dtype=dtype).mul_(0.2)
    return torch.zeros(shape, dtype=dtype)


def _write_safetensors(path: str, sd: dict, fill, metadata: dict) -> None:
    """Write the safetensors format tensor by tensor: ``fill(key, tensor)`` gives each tensor's values."""
    header, offset = {}, 0
    for k, t in sd.items():
        n = t.numel() * t.element_size()
        header[k] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = metadata
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for k, t in sd.items():
            v = fill(k, t)
            if tuple(v.shape) != tuple(t.shape) or v.dtype != t.dtype:
                raise ValueError(f"{k}: made {tuple(v.shape)} {v.dtype}, the layout has {tuple(t.shape)} {t.dtype}")
            f.write(v.contiguous().reshape(-1).view(torch.uint8).numpy().data)


def _stamp(family: str, seed: int) -> str:
    return f"random {family} seed {seed} v{GENERATOR_VERSION}"


def is_written(family: str, path: str, seed: int = 0) -> bool:
    """Whether ``path`` holds ``family``'s checkpoint as this generator writes it for ``seed``."""
    return os.path.exists(path) and _file_stamp(path) == _stamp(family, seed)


def write_random_checkpoint(family: str, path: str | None = None, seed: int = 0) -> str:
    """Write ``family``'s random checkpoint to ``path`` (default: its file in the cache folder), atomically,
    unless this generator already wrote it there; returns the path.

    A file at ``path`` that another version of this generator (or another seed) wrote is rewritten."""
    check_family(family)
    if path is None:
        path = random_checkpoint_path(family)
    if is_written(family, path, seed):
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    start = time.perf_counter()
    sd = layout(family)
    v_pred = SPECS[family][2]
    tmp = path + ".partial"
    _write_safetensors(tmp, sd, lambda k, t: _value(k, t, sd, seed, v_pred), {"regiondrag": _stamp(family, seed)})
    os.replace(tmp, path)
    log.info("RegionDrag: wrote random %s checkpoint %s (%.2f GiB) in %.0f s", family, path,
             os.path.getsize(path) / 2**30, time.perf_counter() - start)
    return path


def _file_stamp(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            return json.loads(f.read(n)).get("__metadata__", {}).get("regiondrag")
    except (OSError, ValueError, struct.error):
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", choices=FAMILIES, default="sd15", help="which checkpoint (default: sd15)")
    p.add_argument("out", nargs="?", default=None,
                   help="where to write the .safetensors file (default: the family's file in the cache folder)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = write_random_checkpoint(a.family, a.out, a.seed)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
