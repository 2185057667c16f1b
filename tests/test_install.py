"""install.py: OpenCV is installed only where no cv2 exists, so it never adds a second, clashing variant."""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

from support import REPO

OPENCV_DISTS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")


def _opencv_dists() -> list[str]:
    names = {(d.metadata["Name"] or "").lower() for d in importlib.metadata.distributions()}
    return sorted(n for n in names if n in OPENCV_DISTS)


def test_install_leaves_an_existing_opencv_alone():
    before = _opencv_dists()
    assert len(before) == 1, f"the test environment should carry exactly one OpenCV package, has {before}"
    r = subprocess.run([sys.executable, os.path.join(REPO, "install.py")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "already installed" in r.stdout + r.stderr
    importlib.invalidate_caches()
    assert _opencv_dists() == before


def test_requirements_name_no_opencv_variant():
    """requirements.txt must not force one OpenCV variant over the one a ComfyUI install already has."""
    with open(os.path.join(REPO, "requirements.txt")) as f:
        reqs = [ln.split("#")[0].strip().lower() for ln in f]
    assert not [r for r in reqs if r.startswith("opencv")]
