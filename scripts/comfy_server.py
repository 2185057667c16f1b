"""Run a real ComfyUI server headless, with this pack installed, for scripts and tests.

The server gets its own base directory (``--base-directory``): ``custom_nodes/ComfyUI-RegionDrag``
links to this pack, ``models/checkpoints/`` links the checkpoints given, ``input/`` and ``output/``
are private. The user's ComfyUI folder is only read.
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from comfy_client import ComfyClient
from comfy_finder import PACK_DIR, find_comfyui

log = logging.getLogger("RegionDrag.server")


class ServerError(RuntimeError):
    """The ComfyUI server did not start; the message ends with its log."""


class ComfyServer:
    """``with ComfyServer(checkpoints=[path]) as s: s.client.run(prompt)``."""

    def __init__(self, checkpoints=(), comfyui: str | None = None, base: str | None = None,
                 python: str | None = None, extra_args=(), startup_timeout: float = 180):
        self.comfyui = comfyui or find_comfyui()
        if self.comfyui is None:
            raise ServerError("ComfyUI not found: install this pack into ComfyUI/custom_nodes/ or set COMFYUI_PATH.")
        self._tmp = None if base else tempfile.TemporaryDirectory(prefix="regiondrag_comfy_")
        self.base = Path(os.path.abspath(base or self._tmp.name))
        self.checkpoints = list(checkpoints)
        self.python = python or sys.executable
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.proc = None
        self.url = None
        self.client = None

    @property
    def input_dir(self) -> str:
        return os.path.join(self.base, "input")

    @property
    def output_dir(self) -> str:
        return os.path.join(self.base, "output")

    @property
    def log_path(self) -> str:
        return os.path.join(self.base, "server.log")

    def _layout(self):
        nodes_dir = os.path.join(self.base, "custom_nodes")
        ckpt_dir = os.path.join(self.base, "models", "checkpoints")
        for d in (nodes_dir, ckpt_dir, self.input_dir, self.output_dir):
            os.makedirs(d, exist_ok=True)
        link = os.path.join(nodes_dir, "ComfyUI-RegionDrag")
        if not os.path.lexists(link):
            os.symlink(PACK_DIR, link)
        for c in self.checkpoints:
            dst = os.path.join(ckpt_dir, os.path.basename(c))
            if not os.path.lexists(dst):
                os.symlink(os.path.abspath(c), dst)

    def start(self) -> "ComfyServer":
        import torch
        self._layout()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [self.python, os.path.join(self.comfyui, "main.py"), "--listen", "127.0.0.1", "--port", str(port),
               "--base-directory", self.base, "--disable-auto-launch", *self.extra_args]
        if not torch.cuda.is_available():
            cmd += ["--cpu", "--use-pytorch-cross-attention"]
        self._log = open(self.log_path, "w")
        cmd = [str(c) for c in cmd]
        self.proc = subprocess.Popen(cmd, cwd=self.comfyui, stdout=self._log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.time() + self.startup_timeout
        while True:
            try:
                urllib.request.urlopen(self.url + "/system_stats", timeout=2).read()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    with open(self.log_path) as f:
                        raise ServerError("ComfyUI did not start:\n" + f.read()[-4000:]) from None
                time.sleep(0.5)
        self.client = ComfyClient(self.url)
        log.info("ComfyUI %s up at %s", self.comfyui, self.url)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
