"""scripts/benchmark.py, the script the GPU check runs (tools/gpu_run.sh), as a smoke run on this
machine: it must not fail on a GPU for a reason that a CPU run shows first. A separate process with
this host's Python, as a user runs it; the random SD1.5 checkpoint at 64x64, one round."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from support import COMFYUI, REPO

pytestmark = pytest.mark.host

BENCHMARK = os.path.join(REPO, "scripts", "benchmark.py")
FIGURES = {"full_edit", "re_edit", "re_edit_cp", "full_edit_kv_cpu", "full_edit_cfg", "bare_calls", "comfy_sampler",
           "inversion_sequential", "inversion_batched", "bare_batched"}


def run_benchmark(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, COMFYUI_PATH=COMFYUI, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, BENCHMARK, *args], env=env, capture_output=True, text=True,
                          timeout=1200)


def test_smoke_run_reports_every_figure_ratio_and_budget(tmp_path, sd15_checkpoint):
    """Every figure is timed and positive, the report prints it with the ratios and a PASS/FAIL line
    per budget of this device, and the JSON carries the same (the GPU check reads it)."""
    out = tmp_path / "bench.json"
    p = run_benchmark("--quick", "--size", "64", "--steps", "6", "--sampler-steps", "2", "--ckpt", sd15_checkpoint,
                      "--json", str(out))
    assert p.returncode == 0, p.stderr[-4000:]
    r = json.loads(out.read_text())
    assert set(r["median_s"]) == FIGURES and all(v > 0 for v in r["median_s"].values()), r["median_s"]
    assert (r["family"], r["size"], r["repeats"], r["levels"], r["vram_limit"]) == ("sd15", 64, 1, 3, None)
    assert r["sd15_attention_layout"]
    # the cache the node estimated before the inversion is the one it filled
    assert r["kv_cache"]["estimate_bytes"] == r["kv_cache"]["bytes"] > 0
    names = [b["budget"] for b in r["budgets"]]
    cuda = torch.cuda.is_available()
    assert [n.split(":")[0] for n in names[:2]] == (["GPU", "GPU"] if cuda else ["CPU", "CPU"])
    assert names[-1].startswith("K/V cache, SD1.5 512x512")
    for b in r["budgets"]:
        line = f"{'PASS' if b['pass'] else 'FAIL'}  {b['budget']}: {b['value']:.3f}"
        assert line in p.stdout, (line, p.stdout[-3000:])
    for label in ("full edit (encode + invert + map + denoise + decode)", "inversion alone, batched",
                  "full edit / floor", "re-edit / its floor", "K/V cache scaled to 512x512",
                  "re-edit, CP then Encode (+ preview encode, invert)", "full edit at CFG 7.5"):
        assert label in p.stdout, (label, p.stdout[-3000:])


def test_vram_option_explains_what_it_needs():
    """``--vram`` (a card made small) is refused with the reason: on a CPU machine that it needs CUDA,
    on a GPU a size larger than the card."""
    if torch.cuda.is_available():
        p = run_benchmark("--quick", "--vram", "100000")
        expect = "--vram 100000: the card has only"
    else:
        p = run_benchmark("--quick", "--vram", "12")
        expect = "--vram simulates a smaller GPU: it needs CUDA, and this machine has none"
    assert p.returncode != 0
    assert expect in p.stderr, p.stderr[-2000:]
    p = run_benchmark("--vram", "-1")
    assert p.returncode == 2 and "--vram needs a positive size in GB" in p.stderr
