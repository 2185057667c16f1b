"""What the test modules share that is not a fixture: where the pack and ComfyUI are, a log collector,
small inputs, and how a test starts a ComfyUI server of its own. (Fixtures live in conftest.py; no test
module imports another.)"""
from __future__ import annotations

import logging
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _folder in ("tools", "scripts"):   # the pack's scripts (and the developer tools above them)
    _path = os.path.join(REPO, _folder)
    if _path not in sys.path:
        sys.path.insert(0, _path)
if REPO not in sys.path:
    sys.path.append(REPO)  # `import regiondrag_core`; appended so ComfyUI's own `nodes` module wins

from comfy_finder import cache_dir, find_comfyui  # noqa: E402,F401  (cache_dir: for the tests)

COMFYUI = find_comfyui()


class LogLines(logging.Handler):
    """Collects the messages of the log records it sees (attach it to a logger in a test)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def sd15_prompt_and_latent(sd15, comfyui, side: int = 16):
    """(MODEL, positive "a photo of a cat", a seeded random LATENT of ``side`` x ``side`` latent pixels)."""
    import torch
    model, clip, _ = sd15
    positive = comfyui.nodes.CLIPTextEncode().encode(clip, "a photo of a cat")[0]
    latent = {"samples": torch.randn(1, 4, side, side, generator=torch.Generator().manual_seed(3))}
    return model, positive, latent


def run_node(nodes, name, **inputs):
    """Call a ComfyUI node by id, classic (FUNCTION) or V3 (execute, awaited when async), returning its
    outputs as a tuple."""
    import asyncio
    import inspect
    cls = nodes[name]
    if hasattr(cls, "FUNCTION"):
        out = getattr(cls(), cls.FUNCTION)(**inputs)
    else:
        out = cls.execute(**inputs)
    if inspect.isawaitable(out):
        out = asyncio.run(out)
    return tuple(out.args) if hasattr(out, "args") else tuple(out)


def start_server(request, checkpoints, **kwargs):
    """A real ComfyUI server (``main.py``, CPU where no GPU) with only this pack, closed when the
    requesting fixture's scope ends; a server that does not come up fails the test with its log."""
    from comfy_server import ComfyServer
    server = ComfyServer(checkpoints=list(checkpoints), comfyui=COMFYUI, **kwargs)
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e))
    request.addfinalizer(server.close)
    return server


def tiny_unet(seed: int = 1, dtype=None, load_device="cpu", offload_device="cpu", **config):
    """A ModelPatcher around a tiny SD1.5-config UNet with random weights (``config`` overrides the tiny
    UNet configuration), computing in ``dtype`` (float32 by default; no cast), loaded on ``load_device``."""
    import comfy.model_patcher
    import random_checkpoints as rc
    import torch
    unet = rc.random_family_model("sd15", dict(rc.tiny_unet_config(context_dim=64), **config), seed=seed,
                                  dtype=dtype or torch.float32)
    return comfy.model_patcher.ModelPatcher(unet, load_device=torch.device(load_device),
                                            offload_device=torch.device(offload_device))


def tiny_positive(seed: int = 2):
    """A random conditioning for :func:`tiny_unet` (context width 64)."""
    import torch
    return [[torch.randn(1, 77, 64, generator=torch.Generator().manual_seed(seed)), {}]]


def spoil_sample(folder, how: str, marker=None) -> None:
    """A DragBench sample gone bad: ``how`` "missing" (no meta_data.pkl), "broken" (a truncated pickle) or
    "hostile" (a pickle whose code would create ``marker``)."""
    import pickle
    from pathlib import Path
    folder = Path(folder)
    if how == "missing":
        (folder / "meta_data.pkl").unlink()
    elif how == "broken":
        (folder / "meta_data_region.pkl").write_bytes(b"\x80\x04\x95 broken")
    else:
        class Hostile:
            def __reduce__(self):
                return exec, (f"open({str(marker)!r}, 'w').close()",)
        (folder / "meta_data_region.pkl").write_bytes(pickle.dumps({"prompt": "x", "mask": Hostile(), "points": []}))
