"""Where is ComfyUI? The pack sits in ``ComfyUI/custom_nodes/<pack>``, or ``COMFYUI_PATH`` names it."""
from __future__ import annotations

import os

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cache_dir() -> str:
    """The folder of the pack's random-weight checkpoints: ``$REGIONDRAG_CACHE``, else
    ``~/.cache/comfyui-regiondrag`` (created when missing)."""
    d = os.environ.get("REGIONDRAG_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "comfyui-regiondrag"))
    os.makedirs(d, exist_ok=True)
    return d


def find_comfyui() -> str | None:
    """COMFYUI_PATH, else the ComfyUI folder this pack is installed in; None when neither is found."""
    env = os.environ.get("COMFYUI_PATH")
    candidates = [env] if env else []
    candidates.append(os.path.dirname(os.path.dirname(PACK_DIR)))
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "main.py")) and os.path.isdir(os.path.join(c, "comfy")):
            return os.path.abspath(c)
    return None
