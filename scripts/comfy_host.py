"""Find and import a ComfyUI install the way a user's setup has it, for scripts and tests.

The pack sits in ``ComfyUI/custom_nodes/<pack>``, or ``COMFYUI_PATH`` names the ComfyUI folder.
Importing this module puts that folder first on ``sys.path`` and readies ``comfy`` for use as a
library on the CPU when no GPU is present (``--cpu``, as ``main.py`` would be told).
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from comfy_finder import find_comfyui  # noqa: E402


def import_comfy(cpu: bool | None = None, **cli_flags) -> str:
    """Make ``import comfy`` work; returns the ComfyUI folder. Raises RuntimeError when none is found.

    ``cpu`` (default: when CUDA is absent) and ``cli_flags`` (e.g. ``use_pytorch_cross_attention=True``)
    are ComfyUI's launch flags, applied before ``comfy.model_management`` reads them on first import."""
    root = find_comfyui()
    if root is None:
        raise RuntimeError("ComfyUI not found: install this pack into ComfyUI/custom_nodes/ or set COMFYUI_PATH "
                           "to your ComfyUI folder.")
    if root not in sys.path:
        sys.path.insert(0, root)
    if "comfy.model_management" not in sys.modules:
        import comfy.options
        comfy.options.enable_args_parsing(False)
        import utils.extra_config  # noqa: F401  (main.py imports it first)
        from comfy.cli_args import args
        if cpu is None:
            import torch
            cpu = not torch.cuda.is_available()
        args.cpu = bool(cpu)
        for name, value in cli_flags.items():
            setattr(args, name, value)
        import comfy.model_management  # noqa: F401
    return root



def encode_prompt(clip, family: str, text: str, size: int):
    """The positive conditioning as the family's example workflow makes it (after :func:`import_comfy`):
    CLIP Text Encode, or for SDXL CLIP Text Encode SDXL with ``size`` as its size conditioning."""
    if family == "sdxl":
        from comfy_extras.nodes_clip_sdxl import CLIPTextEncodeSDXL
        out = CLIPTextEncodeSDXL.execute(clip, size, size, 0, 0, size, size, text, text)
        return out.args[0] if hasattr(out, "args") else out[0]   # V3 NodeOutput; a tuple on older hosts
    import nodes
    return nodes.CLIPTextEncode().encode(clip, text)[0]


def torch_compiled(model, backend: str):
    """ComfyUI's own TorchCompileModel node applied to ``model`` (after :func:`import_comfy`)."""
    from comfy_extras.nodes_torch_compile import TorchCompileModel
    out = TorchCompileModel.execute(model, backend)
    return out.args[0] if hasattr(out, "args") else out[0]  # V3 NodeOutput; a tuple on older hosts
