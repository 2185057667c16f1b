"""Installs what ComfyUI-RegionDrag needs beyond ComfyUI itself: OpenCV, in whatever form is there, and
the ``lpips`` package for DragBench scoring.

ComfyUI-Manager runs this file after installing the pack (by hand: run it with ComfyUI's Python).
OpenCV comes as several PyPI packages that all provide the same ``cv2`` module (opencv-python,
opencv-python-headless, opencv-contrib-python, ...); two of them in one environment overwrite each
other's files and break ``cv2``. So this installs ``opencv-python-headless`` only when no ``cv2``
imports, and otherwise leaves the one your ComfyUI already has alone. Nothing else is installed:
torch, numpy, pillow and safetensors come with ComfyUI.
"""
from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys

OPENCV = "opencv-python-headless>=4.8"
LPIPS = "lpips==0.1.4"
log = logging.getLogger("RegionDrag.install")


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def missing_requirements() -> list[str]:
    """The pip requirements still to install in this environment (OpenCV with its dependencies)."""
    return [] if _has("cv2") else [OPENCV]


def missing_no_deps() -> list[str]:
    """Packages to install without dependencies: lpips, where torchvision is already there."""
    return [LPIPS] if _has("torchvision") and not _has("lpips") else []


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    todo, bare = missing_requirements(), missing_no_deps()
    if not _has("torchvision") and not _has("lpips"):
        log.info("RegionDrag: no torchvision here, so lpips is not installed (only DragBench Score's LPIPS "
                 "needs it).")
    if not todo and not bare:
        log.info("RegionDrag: OpenCV (cv2) is already installed; nothing to do.")
        return 0
    rc = 0
    if todo:
        log.info("RegionDrag: installing %s", " ".join(todo))
        rc = subprocess.call([sys.executable, "-m", "pip", "install", *todo])
    if bare and rc == 0:
        log.info("RegionDrag: installing %s (no dependencies: ComfyUI has them)", " ".join(bare))
        rc = subprocess.call([sys.executable, "-m", "pip", "install", "--no-deps", *bare])
    return rc


if __name__ == "__main__":
    sys.exit(main())
