"""DragBench scoring on ComfyUI: DIFT features from a ComfyUI-loaded SD2.x model, and LPIPS, both run
under ComfyUI's model management (loaded for the call, freed like any model when memory is needed).

The matching and the distance are the released evaluator's (regiondrag_core.dragbench); this module
only computes what needs the host: the features and the LPIPS network."""
from __future__ import annotations

import logging
import math
import urllib.error
import warnings

import numpy as np
import torch
import torch.nn.functional as F

import comfy.model_management
import comfy.model_patcher

from ..regiondrag_core.dragbench import dift_input
from ..regiondrag_core.errors import RegionDragInputError
from .model_patch import check_model

log = logging.getLogger("RegionDrag")

# DIFT reads the output of the UNet's second up-block (diffusers' up_blocks[1], whose upsampler ends it).
# In ComfyUI's UNet the output blocks are flat, three per level, so that is output_blocks[5]: the input
# of output block 6, which an output_block_patch sees as ``h``.
DIFT_BLOCK = ("output", 6)
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
PRETRAINED, RANDOM = "AlexNet (pretrained)", "random (testing only)"
LPIPS_BACKBONES = (PRETRAINED, RANDOM)


class _Captured(Exception):
    """Raised by the feature patch once it holds the features: the rest of the UNet is not needed."""


def _output_blocks(model) -> int:
    unet = getattr(model.model, "diffusion_model", None)
    return len(getattr(unet, "output_blocks", ()))


def check_dift_model(model, input_name: str = "dift_model") -> None:
    """DIFT needs an SD1/SD2-shaped UNet (12 output blocks); the paper's figures use SD2.1."""
    try:
        check_model(model)
    except RegionDragInputError as e:
        raise RegionDragInputError(input_name, e.problem, "Load the SD2.1 checkpoint (v2-1_768-ema-pruned) "
                                   "with Load Checkpoint and connect its MODEL, CLIP and VAE.") from None
    if _output_blocks(model) != 12:
        raise RegionDragInputError(
            input_name, f"has a UNet with {_output_blocks(model)} output blocks; DIFT features are the second "
                        "up-block of an SD2.x (or SD1.x) UNet (12 output blocks).",
            "Load the SD2.1 checkpoint (v2-1_768-ema-pruned) and connect its MODEL, CLIP and VAE.")
    name = type(getattr(model.model, "model_config", None)).__name__
    if not name.startswith("SD2"):
        log.warning("RegionDrag: DIFT features from a %s model; the paper's MD uses SD2.1, so figures differ "
                    "from the paper's", name)


@torch.no_grad()
def dift_features(model, clip, vae, image_u8: np.ndarray, prompt: str, size: int = 768, timestep: int = 261,
                  ensemble: int = 8, seed: int = 0) -> torch.Tensor:
    """DIFT features ``[1, C, size/16, size/16]`` (float32, CPU) of an RGB uint8 image, as the released
    evaluator's SDFeaturizer computes them: the image at ``size``² (nearest), VAE mode latent, noised to
    ``timestep`` with ``ensemble`` noise draws (DDPM forward process), one UNet call with the prompt, the
    second up-block's output averaged over the ensemble."""
    x = dift_input(image_u8, size)                                   # [1, 3, S, S] in [-1, 1]
    latent = vae.encode(((x + 1) / 2).permute(0, 2, 3, 1))           # ComfyUI: [B, H, W, C] in [0, 1]
    m = model.clone()
    z0 = m.model.process_latent_in(latent.float().cpu())
    ms = m.get_model_object("model_sampling")
    sigma = float(ms.sigma(torch.tensor(float(timestep))))
    acp = 1.0 / (1.0 + sigma * sigma)                                # alphas_cumprod[timestep]
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn((ensemble,) + tuple(z0.shape[1:]), generator=gen, dtype=torch.float32)
    noisy = math.sqrt(acp) * z0 + math.sqrt(1 - acp) * noise         # scheduler.add_noise
    x_in = noisy * math.sqrt(sigma * sigma + 1)                      # ComfyUI's model scales by 1/sqrt(σ²+1)
    tokens = clip.tokenize(prompt or "")
    context = clip.encode_from_tokens(tokens).float()
    captured = {}

    def grab(h, hsp, transformer_options):
        if transformer_options.get("block") == DIFT_BLOCK:
            captured["h"] = h
            raise _Captured
        return h, hsp

    m.set_model_output_block_patch(grab)
    comfy.model_management.load_models_gpu(
        [m], memory_required=m.memory_required([ensemble] + list(z0.shape[1:])))
    dev = m.load_device
    opts = dict(m.model_options.get("transformer_options", {}))
    opts.update(cond_or_uncond=[0] * ensemble, sigmas=torch.full((ensemble,), sigma, device=dev))
    try:
        m.model.apply_model(x_in.to(dev), torch.full((ensemble,), sigma, device=dev),
                            c_crossattn=context.expand(ensemble, -1, -1).to(dev), transformer_options=opts)
    except _Captured:
        pass
    if "h" not in captured:
        raise RegionDragInputError("dift_model", "did not run its second up-block (a patch on it may skip "
                                   "output blocks).", "Connect the plain SD2.1 model from Load Checkpoint.")
    return captured["h"].float().mean(dim=0, keepdim=True).cpu()


_lpips_nets: dict = {}


def _alexnet_missing() -> RegionDragInputError:
    hub = torch.hub.get_dir()
    return RegionDragInputError(
        "lpips_backbone", f"'{PRETRAINED}' needs torchvision's AlexNet weights, which could not be downloaded "
                          "(no network?).",
        f"Put {ALEXNET_FILE} in {hub}/checkpoints (torchvision downloads it there on a networked machine), "
        f"or choose '{RANDOM}' to test the pipeline (its LPIPS figures mean nothing).")


def lpips_model(backbone: str):
    """The LPIPS (AlexNet, v0.1) network from the ``lpips`` package, in a ModelPatcher so ComfyUI's model
    management loads and frees it; built once per backbone choice. ``RANDOM`` keeps LPIPS's own linear
    layers (shipped with the package) on a randomly initialised AlexNet (seeded), for tests."""
    if backbone not in LPIPS_BACKBONES:
        raise RegionDragInputError("lpips_backbone", f"{backbone!r} is not one of {list(LPIPS_BACKBONES)}.",
                                   "Pick one of the listed choices.")
    if backbone in _lpips_nets:
        return _lpips_nets[backbone]
    try:
        import lpips
    except ImportError:
        raise RegionDragInputError("lpips_backbone", "needs the lpips package, which is not installed in "
                                   "ComfyUI's Python.", "Run custom_nodes/ComfyUI-RegionDrag/install.py with that "
                                   "Python (or: pip install --no-deps lpips), then restart ComfyUI.") from None
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")      # torchvision's deprecation notice for lpips' pretrained= call
        torch.manual_seed(0)
        try:
            net = lpips.LPIPS(net="alex", pnet_rand=backbone == RANDOM, verbose=False).eval()
        except (urllib.error.URLError, OSError) as e:
            log.debug("LPIPS AlexNet: %s", e)
            raise _alexnet_missing() from None
    patcher = comfy.model_patcher.ModelPatcher(
        net, load_device=comfy.model_management.get_torch_device(),
        offload_device=comfy.model_management.unet_offload_device())
    _lpips_nets[backbone] = patcher
    return patcher


@torch.no_grad()
def lpips_distance(patcher, a_u8: np.ndarray, b_u8: np.ndarray) -> float:
    """LPIPS of two RGB uint8 images as the released evaluator computes it: [-1, 1], both resized to
    224² (bilinear), AlexNet; float32 here (the evaluator runs fp16 on CUDA)."""
    comfy.model_management.load_models_gpu([patcher])
    dev = patcher.load_device

    def prep(u8):
        t = torch.from_numpy(np.ascontiguousarray(u8)).float() / 127.5 - 1
        return F.interpolate(t.permute(2, 0, 1)[None].to(dev), (224, 224), mode="bilinear")

    return float(patcher.model(prep(a_u8), prep(b_u8)).item())
