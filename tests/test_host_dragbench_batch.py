"""scripts/dragbench.py over two real ComfyUI servers that share one input folder: a synthetic DragBench set
(64x64, SR and DR layouts) with three bad samples (meta_data.pkl missing, a broken pickle, a pickle whose
code would create a marker file), edited with few steps and no scoring; one server is SIGKILLed once a few
results exist.

Checked: every sample is in results.json and results.csv exactly once, all "ok" but the three "bad" ones
(never queued; the marker never appears), the killed server's queued samples were done by the other; a
rerun queues nothing (its log says so and the surviving server's history does not grow) and says how many
it skipped. Throughput (edits/s) with two servers (the run above: the checkpoint already loaded, one server
killed part-way) and, in the soak, with one (a second, smaller run on the survivor) is printed, and with
``REGIONDRAG_BATCH_REPORT=FILE`` written there as JSON. On the survivor the DragBench example workflow and
the command then score a small set, and a hostile pickle goes through ``/prompt``.

``REGIONDRAG_BATCH_SAMPLES`` sets the sample count (default 10, bad ones included); the 100-sample run is a
soak, run by hand::

    REGIONDRAG_SOAK=1 COMFYUI_PATH=... python -m pytest tests/test_host_dragbench_batch.py -s -k soak

Both servers hold the random SD1.5 checkpoint (about 4.5 GB each on the CPU), hence ``memory_heavy``: the
test runs before this process loads a model of its own.
"""
from __future__ import annotations

import concurrent.futures
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import COMFYUI, REPO, spoil_sample

pytestmark = [pytest.mark.host, pytest.mark.memory_heavy]

SAMPLES = int(os.environ.get("REGIONDRAG_BATCH_SAMPLES", "10"))
ONE_SERVER_SAMPLES = 6
STEPS = 4
SIZE = 64
SET = "regiondrag_batch"
CKPT_NAME = "random_sd15.safetensors"
SD2V = "random_sd2_768v.safetensors"
SCORED = 2          # samples the command also scores (MD on the random SD2.x, LPIPS on a random AlexNet)
COMMAND = os.path.join(REPO, "scripts", "dragbench.py")


@pytest.fixture
def two_servers(request, sd15_checkpoint, tmp_path):
    """Two ComfyUI servers (started in parallel) whose input folder is the same ``tmp_path/input``; both
    also see the random SD2.x 768-v checkpoint (the scorer's SD2.1 stand-in), loaded only when scoring."""
    import random_checkpoints as rc
    from comfy_server import ComfyServer
    from support import cache_dir
    sd2v = rc.write_random_checkpoint("sd2v", os.path.join(cache_dir(), SD2V))
    shared = tmp_path / "input"
    shared.mkdir()
    servers = [ComfyServer(checkpoints=[sd15_checkpoint, sd2v], comfyui=COMFYUI,
                           extra_args=["--input-directory", str(shared)]) for _ in range(2)]
    for s in servers:
        request.addfinalizer(s.close)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        errors = [f.exception() for f in [pool.submit(s.start) for s in servers]]
    if any(errors):
        pytest.fail("\n".join(str(e) for e in errors if e))
    return shared, servers


def _dataset(shared: Path, count: int, marker: Path):
    """``count`` samples under shared/SET (half SR, half DR), three of them spoiled: (root, names, bad)."""
    from regiondrag_core.dragbench import find_samples, make_synthetic_set
    root = shared / SET
    make_synthetic_set(root, n_sr=count // 2, n_dr=count - count // 2, size=SIZE, seed=11)
    names = [f.relative_to(root).as_posix() for f in find_samples(root)]
    bad = {names[1]: "missing", names[count // 2]: "broken", names[-1]: "hostile"}
    for name, how in bad.items():
        spoil_sample(root / name, how, marker)
    return root, names, bad


def _command(root, out, servers, *extra, score=False):
    scoring = (["--dift-ckpt", SD2V, "--lpips-backbone", "random", "--dift-size", "64", "--ensemble", "1"]
               if score else ["--no-score"])
    cmd = [sys.executable, COMMAND, str(root), "--out", str(out), "--ckpt", CKPT_NAME, *scoring,
           "--steps", str(STEPS), "--no-progress", *extra]
    for s in servers:
        cmd += ["--server", s.url]
    return cmd


def _run(cmd, timeout):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    return p.returncode, p.stderr + p.stdout


def _rows_on_disk(out: Path):
    rows = []
    for p in (out / "samples").rglob("*.json"):
        try:
            rows.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            pass
    return rows


def _warm(servers, root, name):
    """One edit on each server at once, so both hold the checkpoint before the timed run (and a graph
    ComfyUI refuses fails here, with its message)."""
    import dragbench
    from comfy_client import PromptError
    from run_edit import describe_error
    settings = dict(dragbench.DEFAULTS, ckpt=CKPT_NAME, score=False, steps=STEPS)

    def one(server):
        return server.client.run(dragbench.build_graph(SET, name, settings, "regiondrag_batch/warm"), timeout=900)
    with concurrent.futures.ThreadPoolExecutor(len(servers)) as pool:
        futures = [pool.submit(one, s) for s in servers]
        for f in futures:
            try:
                f.result()
            except PromptError as e:
                pytest.fail(f"the DragBench edit graph failed on a real server:\n{describe_error(e)}")


@pytest.mark.parametrize("count", [pytest.param(SAMPLES, id="ci"),
                                   pytest.param(100, id="soak100", marks=pytest.mark.soak)])
def test_batch_over_two_servers_survives_a_sigkill_and_resumes_with_nothing_to_do(two_servers, tmp_path, count):
    shared, (a, b) = two_servers
    assert count >= 8, "REGIONDRAG_BATCH_SAMPLES: at least 8 (three of them are spoiled)"
    marker = tmp_path / "hostile_pickle_ran"
    root, names, bad = _dataset(shared, count, marker)
    good = [n for n in names if n not in bad]
    _warm([a, b], root, good[0])
    out = tmp_path / "out"

    # the run, with b SIGKILLed once a quarter of the samples are done and b has done some
    log_path = tmp_path / "run.log"
    with open(log_path, "w") as log_file:   # a file, not a pipe: nothing blocks the command while we watch
        proc = subprocess.Popen(_command(root, out, [a, b]), stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO)
    kill_at = max(2, len(good) // 4)
    killed, killed_after = False, None
    deadline = time.time() + 60 * count + 600
    while proc.poll() is None and time.time() < deadline:
        rows = [r for r in _rows_on_disk(out) if r.get("status") == "ok"]
        if not killed and len(rows) >= kill_at and any(r["server"] == b.url for r in rows):
            b.proc.send_signal(signal.SIGKILL)
            b.proc.wait()
            killed = True
            killed_after = len(rows)
        time.sleep(0.2)
    try:
        proc.wait(timeout=max(1, deadline - time.time()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("the command did not finish:\n" + log_path.read_text()[-6000:])
    log = log_path.read_text()
    assert killed, f"the run finished before {kill_at} results existed: nothing was killed midway\n{log[-4000:]}"
    assert proc.returncode == 0, log[-6000:]
    assert f"server {b.url} gone" in log, log[-4000:]

    # every sample exactly once, in the JSON and in the CSV
    rows = json.loads((out / "results.json").read_text())
    assert sorted(r["name"] for r in rows) == sorted(names)
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert sorted(r["name"] for r in table) == sorted(names)
    assert len(list((out / "samples").rglob("*.json"))) == len(names)
    by_name = {r["name"]: r for r in rows}
    assert {n for n, r in by_name.items() if r["status"] != "ok"} == set(bad), \
        {n: r["message"] for n, r in by_name.items() if r["status"] != "ok"}
    assert all(by_name[n]["status"] == "bad" for n in bad)
    inv = {how: n for n, how in bad.items()}
    assert "meta_data.pkl is missing" in by_name[inv["missing"]]["message"]
    assert "not a readable pickle" in by_name[inv["broken"]]["message"]
    assert "builtins.exec" in by_name[inv["hostile"]]["message"]
    assert not marker.exists(), "the hostile pickle's code ran"
    assert all((out / by_name[n]["edited"]).is_file() for n in good)
    done_by = {s.url: sum(by_name[n]["server"] == s.url for n in good) for s in (a, b)}
    assert done_by[b.url] >= 1 and done_by[a.url] + done_by[b.url] == len(good)
    assert (out / "contact_sheet.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["ok"], summary["bad"], summary["failed"], summary["missing"]) == (len(good), 3, 0, 0)
    two = summary["run"]

    # a rerun queues nothing: every sample is complete
    history = len(a.client.get("/history"))
    code, relog = _run(_command(root, out, [a, b]), timeout=600)
    assert code == 0, relog[-4000:]
    assert f"skipped {len(names)} already complete ({len(good)} ok, 3 bad) of {len(names)} samples" in relog, relog
    assert "queued 0 sample(s)" in relog, relog
    assert len(a.client.get("/history")) == history
    assert json.loads((out / "results.json").read_text()) == rows

    report = {"samples": len(names), "good": len(good), "size": SIZE, "steps": STEPS, "killed_after": killed_after,
              "done_by_each_server": list(done_by.values()),
              "two_servers": {k: two[k] for k in ("finished", "wall_s", "edits_per_s", "seconds_median")}}
    if count >= 100:   # the soak also times one server: a smaller run on the survivor (CI time spared)
        out1 = tmp_path / "out_one_server"
        code, log1 = _run(_command(root, out1, [a], "--limit", str(ONE_SERVER_SAMPLES)),
                          timeout=60 * ONE_SERVER_SAMPLES + 600)
        assert code == 0, log1[-4000:]
        one = json.loads((out1 / "summary.json").read_text())["run"]
        report["one_server"] = {k: one[k] for k in ("finished", "wall_s", "edits_per_s", "seconds_median")}
    print("RegionDrag DragBench batch:", json.dumps(report))
    if os.environ.get("REGIONDRAG_BATCH_REPORT"):
        with open(os.environ["REGIONDRAG_BATCH_REPORT"], "w") as f:
            json.dump(report, f, indent=1)

    # scoring: the example workflow through /prompt, then the command with scoring on, on the survivor
    _score_checks(a, shared, tmp_path)
    # a hostile pickle through /prompt: refused by ComfyUI with the file and the global named, nothing run
    import dragbench
    from comfy_client import PromptError
    settings = dict(dragbench.DEFAULTS, ckpt=CKPT_NAME, score=False, steps=STEPS)
    with pytest.raises(PromptError) as e:
        a.client.run(dragbench.build_graph(SET, inv["hostile"], settings, "regiondrag_batch/hostile"), timeout=300)
    assert "RegionDragBenchSample" in str(e.value) and "meta_data_region.pkl" in str(e.value) \
        and "builtins.exec" in str(e.value), str(e.value)
    assert not marker.exists(), "the hostile pickle's code ran through /prompt"


def _score_checks(server, shared, tmp_path):
    """The DragBench example workflow (API twin; small sizes, random files) edits and scores a sample of a
    synthetic set; the command scores that set (SCORED samples): MD and LPIPS in every row."""
    from graphs import fetch_image
    from regiondrag_core.dragbench import make_synthetic_set
    root = shared / "regiondrag_scored"
    make_synthetic_set(root, n_sr=SCORED // 2, n_dr=SCORED - SCORED // 2, size=SIZE, seed=12)
    with open(os.path.join(REPO, "example_workflows", "api", "regiondrag_dragbench_score_api.json")) as f:
        prompt = json.load(f)
    ids = {}
    for k, v in prompt.items():
        ids.setdefault(v["class_type"], []).append(k)
    loaders = ids["CheckpointLoaderSimple"]
    for k in loaders:
        dift = prompt[k]["inputs"]["ckpt_name"].startswith("v2-1")
        prompt[k]["inputs"]["ckpt_name"] = SD2V if dift else CKPT_NAME
    prompt[ids["RegionDragBenchSample"][0]]["inputs"].update(folder="regiondrag_scored/dragbench-dr", index=0)
    prompt[ids["DDPMInvertAndCache"][0]]["inputs"]["steps"] = STEPS
    score_id = ids["RegionDragBenchScore"][0]
    prompt[score_id]["inputs"].update(dift_size=64, ensemble=1, lpips_backbone="random (testing only)")
    entry = server.client.run(prompt, timeout=900)
    result = entry["outputs"][score_id]["regiondrag_score"][0]
    assert result["md"] >= 0 and result["lpips"] > 0, result
    comparison = fetch_image(server, entry, score_id)
    assert comparison.shape == (SIZE, 2 * SIZE + 10, 3)

    out = tmp_path / "out_scored"
    code, log = _run(_command(root, out, [server], score=True), timeout=1200)
    assert code == 0, log[-4000:]
    rows = [r for r in json.loads((out / "results.json").read_text()) if r["status"] == "ok"]
    assert len(rows) == SCORED and all(r["md"] is not None and r["md"] >= 0 and r["lpips"] > 0 for r in rows), rows
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == SCORED
