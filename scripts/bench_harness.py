"""The benchmark's harness: ComfyUI imported as a library with the run's launch flags (a card made
small with ``--vram``, the UNet's dtype), the pack and a checkpoint loaded as ComfyUI loads them, and
the clocks and memory gauges the measurements read. Used by ``benchmark.py`` through ``bench_runs.py``.
"""
from __future__ import annotations

import logging
import os
import platform
import resource
import sys
import time

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(SCRIPTS)
sys.path.insert(0, SCRIPTS)


def import_comfy(opts) -> str:
    """ComfyUI as a library (``comfy_host``), with the launch flags this run asks for."""
    import comfy_host
    flags = {"use_pytorch_cross_attention": True} if opts.pytorch_attention else {}
    opts.vram_limit = vram_limit(opts.vram) if opts.vram is not None else None
    if opts.vram_limit:
        flags["reserve_vram"] = opts.vram_limit["reserve_vram_gb"]
    try:
        root = comfy_host.import_comfy(cpu=True if opts.cpu else None, **flags)
    except RuntimeError as e:
        raise SystemExit(str(e)) from None
    if opts.vram_limit:
        import torch
        torch.cuda.set_per_process_memory_fraction(opts.vram_limit["memory_fraction"])
    return root


def vram_limit(gb: float) -> dict:
    """``--vram GB`` on this machine's first CUDA device: what ComfyUI reserves and PyTorch is capped at."""
    import torch
    if not torch.cuda.is_available():
        raise SystemExit("--vram simulates a smaller GPU: it needs CUDA, and this machine has none")
    total = torch.cuda.get_device_properties(0).total_memory
    if gb * 2**30 > total:
        raise SystemExit(f"--vram {gb:g}: the card has only {total / 2**30:.1f} GiB")
    return {"gb": gb, "card_gb": total / 2**30, "reserve_vram_gb": (total - gb * 2**30) / 2**30,
            "memory_fraction": gb * 2**30 / total}


def comfy_version(root: str) -> str:
    try:
        with open(os.path.join(root, "comfyui_version.py")) as f:
            return f.read().split('"')[1]
    except (OSError, IndexError):
        return "unknown"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def set_unet_dtype(name: str) -> None:
    """``--fp16-unet`` / ``--bf16-unet`` / ``--fp32-unet``; read by ComfyUI when a model loads."""
    from comfy.cli_args import args
    args.fp16_unet = name == "fp16"
    args.bf16_unet = name == "bf16"
    args.fp32_unet = name == "fp32"



class KVLog(logging.Handler):
    """Keeps RegionDrag's "K/V cache ... on ..." placement lines."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("RegionDrag: K/V cache"):
            self.lines.append(msg)


def load_pack():
    import asyncio

    import nodes
    if not asyncio.run(nodes.load_custom_node(REPO)):
        raise SystemExit(f"ComfyUI failed to load the pack at {REPO} (see the log above)")
    return sys.modules[REPO.replace(".", "_x_")]


def load_checkpoint(path: str):
    """(MODEL, CLIP, VAE) through CheckpointLoaderSimple, the file's folder registered first."""
    import folder_paths
    import nodes
    path = os.path.realpath(path)
    folder_paths.add_model_folder_path("checkpoints", os.path.dirname(path), is_default=True)
    name = os.path.basename(path)
    found = folder_paths.get_full_path("checkpoints", name)
    if found is None or os.path.realpath(found) != path:
        raise SystemExit(f"ComfyUI resolves checkpoint {name!r} to {found!r}, not {path!r}: rename the file")
    return nodes.CheckpointLoaderSimple().load_checkpoint(name)[:3]



# ---------------------------------------------------------------------------------------- gauges

class Clock:
    """Wall time; on CUDA the device is synchronised at every reading."""

    def __init__(self, cuda: bool):
        import torch
        self.sync = torch.cuda.synchronize if cuda else (lambda: None)

    def __call__(self) -> float:
        self.sync()
        return time.perf_counter()


class Memory:
    """Peak memory: CUDA max_memory_allocated per phase (reset before it), or the process's peak RSS."""

    def __init__(self, cuda: bool):
        import torch
        self.cuda = cuda
        self.torch = torch
        self.peaks: dict[str, int] = {}

    @staticmethod
    def peak_rss() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

    def start(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()

    def stop(self, phase: str) -> None:
        peak = self.torch.cuda.max_memory_allocated() if self.cuda else self.peak_rss()
        self.peaks[phase] = max(self.peaks.get(phase, 0), int(peak))
