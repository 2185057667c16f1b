"""Installs what ComfyUI-RegionDrag needs beyond ComfyUI itself: OpenCV, in whatever form is there.

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
log = logging.getLogger("RegionDrag.install")


def missing_requirements() -> list[str]:
    """The pip requirements still to install in this environment."""
    return [] if importlib.util.find_spec("cv2") is not None else [OPENCV]


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    todo = missing_requirements()
    if not todo:
        log.info("RegionDrag: OpenCV (cv2) is already installed; nothing to do.")
        return 0
    log.info("RegionDrag: installing %s", " ".join(todo))
    return subprocess.call([sys.executable, "-m", "pip", "install", *todo])


if __name__ == "__main__":
    sys.exit(main())
