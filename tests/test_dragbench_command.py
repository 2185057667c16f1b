"""scripts/dragbench.py without ComfyUI: the graph it queues, resume bookkeeping, the tables and summary, and
the scheduler's failure handling against fake ComfyUI servers (http.server in a thread answering /prompt,
/history, /queue, /view, /object_info as ComfyUI does). The same over real servers: test_host_dragbench_batch.py."""
from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import support
import dragbench   # scripts/ is on sys.path (tests/support.py, through conftest.py)
import dragbench_pool
import dragbench_results as res

CKPT, DIFT_CKPT = "random_sd15.safetensors", "random_sd2_768v.safetensors"


# ----------------------------------------------------------------------------- the graph
def _links(graph):
    for node_id, node in graph.items():
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                yield node_id, name, value


def _settings(**kw):
    return {**dragbench.DEFAULTS, "ckpt": CKPT, "dift_ckpt": DIFT_CKPT, **kw}


def test_graph_wires_the_sample_through_the_edit_and_the_scorer():
    g = dragbench.build_graph("drag_data", "dragbench-dr/animals/x12", _settings(lpips_backbone="random"), "p/x")
    types = {k: v["class_type"] for k, v in g.items()}
    assert sorted(types.values()) == sorted([
        "CheckpointLoaderSimple", "RegionDragBenchSample", "CLIPTextEncode", "VAEEncode", "DDPMInvertAndCache",
        "RegionDragPointPairs", "RegionDragKSampler", "VAEDecode", "ImageCompositeMasked", "SaveImage",
        "CheckpointLoaderSimple", "RegionDragBenchScore"])
    for node_id, name, (src, idx) in _links(g):
        assert src in g and isinstance(idx, int), (node_id, name)
    by = {v["class_type"]: k for k, v in g.items() if v["class_type"] != "CheckpointLoaderSimple"}
    inp = {t: g[k]["inputs"] for t, k in by.items()}
    sample = by["RegionDragBenchSample"]
    assert inp["RegionDragBenchSample"] == {"folder": "drag_data", "index": 0, "sample": "dragbench-dr/animals/x12"}
    assert inp["CLIPTextEncode"]["text"] == [sample, 1]                          # the sample's prompt
    assert inp["RegionDragPointPairs"]["drag_points"] == [sample, 2]             # its dense pairs
    assert inp["RegionDragKSampler"]["edit_mask"] == [sample, 3]                 # its editable area
    assert inp["ImageCompositeMasked"]["destination"] == [sample, 0]             # the original kept outside it
    assert inp["ImageCompositeMasked"]["mask"] == [sample, 3]
    assert inp["ImageCompositeMasked"]["source"] == [by["VAEDecode"], 0]
    assert inp["SaveImage"] == {"images": [by["ImageCompositeMasked"], 0], "filename_prefix": "p/x"}
    assert inp["DDPMInvertAndCache"]["steps"] == 20 and inp["DDPMInvertAndCache"]["start_t"] == 0.5
    assert inp["RegionDragKSampler"]["end_t"] == 0.2 and inp["RegionDragKSampler"]["noise_weight"] == 1.0
    assert inp["DDPMInvertAndCache"]["seed"] == inp["RegionDragKSampler"]["seed"] == 42
    score = inp["RegionDragBenchScore"]
    assert score["edited"] == [by["ImageCompositeMasked"], 0] and score["score_points"] == [sample, 4]
    assert score["lpips_backbone"] == "random (testing only)"
    assert (score["dift_size"], score["ensemble"], score["timestep"]) == (768, 8, 261)
    assert g[dragbench.CKPT]["inputs"]["ckpt_name"] == CKPT
    assert g[score["dift_model"][0]]["inputs"]["ckpt_name"] == DIFT_CKPT
    assert score["dift_model"][0] != dragbench.CKPT
    assert "negative" not in inp["RegionDragKSampler"]


def test_graph_is_the_example_workflow_of_one_sample():
    """The batch queues what the shipped one-sample workflow does (less its preview), node ids included."""
    with open(os.path.join(support.REPO, "example_workflows", "api", "regiondrag_dragbench_score_api.json")) as f:
        example = json.load(f)
    ckpt, dift = (example[k]["inputs"]["ckpt_name"] for k in (dragbench.CKPT, dragbench.DIFT))
    folder = example[dragbench.SAMPLE]["inputs"]["folder"]
    g = dragbench.build_graph(folder, "", _settings(ckpt=ckpt, dift_ckpt=dift),
                              example[dragbench.SAVE]["inputs"]["filename_prefix"])
    preview = [k for k, v in example.items() if v["class_type"] == "PreviewImage"]
    for k in preview:
        del example[k]
    for node in example.values():
        node.pop("_meta", None)                                                 # titles
    example[dragbench.PAIRS]["inputs"] = {k: v for k, v in example[dragbench.PAIRS]["inputs"].items()
                                          if k in ("latent", "drag_points")}     # the preview's inputs
    example[dragbench.DRAG]["inputs"].pop("mutual_self_attention")              # its default
    assert g == example


def test_graph_without_scoring_has_no_scorer_nor_dift_loader():
    g = dragbench.build_graph("set", "s1", _settings(score=False, steps=4), "p")
    types = [v["class_type"] for v in g.values()]
    assert "RegionDragBenchScore" not in types and types.count("CheckpointLoaderSimple") == 1
    assert g[dragbench.INV]["inputs"]["steps"] == 4
    assert all(src in g for _, _, (src, _) in _links(g))


def test_graph_with_guidance_feeds_one_negative_to_both_nodes():
    g = dragbench.build_graph("set", "s1", _settings(cfg=3.0, negative="blurry"), "p")
    neg = g[dragbench.NEG]
    assert neg["inputs"]["text"] == "blurry"
    for node in (dragbench.INV, dragbench.DRAG):
        assert g[node]["inputs"]["negative"] == [dragbench.NEG, 0] and g[node]["inputs"]["cfg"] == 3.0


def test_settings_from_args_keep_what_the_results_depend_on():
    args = dragbench.parse_args(["d", "--server", "http://a/", "--server", "http://a", "--out", "o", "--ckpt", CKPT,
                                 "--no-score", "--steps", "4"])
    assert args.server == ["http://a"]
    s = dragbench.settings_from_args(args)
    assert s == {"ckpt": CKPT, "steps": 4, "start_t": 0.5, "end_t": 0.2, "noise_weight": 1.0, "seed": 42,
                 "cfg": 1.0, "score": False}
    with pytest.raises(SystemExit):   # scoring needs the SD2.1 checkpoint
        dragbench.parse_args(["d", "--server", "http://a", "--out", "o", "--ckpt", CKPT])


# ----------------------------------------------------------------------------- rows, resume, tables
def _row(name, status, category=None, **kw):
    return {"name": name, "category": category, "status": status, "md": None, "lpips": None, "seconds": None,
            "server": "http://s", "message": None, **kw}


def test_complete_means_ok_with_its_image_or_bad(tmp_path):
    res.write_row(tmp_path, _row("a", "ok"))
    res.write_row(tmp_path, _row("c/b", "ok"))
    res.write_atomic(res.image_path(tmp_path, "c/b"), b"png")
    res.write_row(tmp_path, _row("d", "bad", message="missing"))
    res.write_row(tmp_path, _row("e", "failed", message="boom"))
    (tmp_path / "samples" / "f.json").write_text('{"name": "f", "sta')     # a torn write from elsewhere
    rows = res.load_rows(tmp_path, ["a", "c/b", "d", "e", "f", "g"])
    assert sorted(rows) == ["a", "c/b", "d", "e"]
    done = [n for n in ["a", "c/b", "d", "e", "f", "g"] if res.is_complete(tmp_path, rows.get(n))]
    assert done == ["c/b", "d"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_other_settings_in_the_same_out_are_refused(tmp_path):
    assert res.settings_problem(tmp_path, {"steps": 20}) is None
    res.write_json(tmp_path / "settings.json", {"steps": 20, "ckpt": CKPT})
    assert res.settings_problem(tmp_path, {"steps": 20, "ckpt": CKPT}) is None
    msg = res.settings_problem(tmp_path, {"steps": 4, "ckpt": CKPT})
    assert "steps 4 here, 20 there" in msg and "--force" in msg


def test_summary_means_per_set_and_category_and_the_tables(tmp_path):
    rows = [_row("dragbench-dr/animals/1", "ok", "animals", md=0.1, lpips=0.2, seconds=2.0),
            _row("dragbench-dr/animals/2", "ok", "animals", md=0.3, lpips=0.4, seconds=4.0),
            _row("dragbench-dr/art/1", "ok", "art", md=0.5, lpips=0.0, seconds=3.0),
            _row("dragbench-dr/art/2", "failed", "art", message='node 2 (X) / sample: "bad", really'),
            _row("dragbench-sr/1", "ok", None, md=0.2, lpips=0.1, seconds=1.0),
            _row("dragbench-sr/2", "bad", None, message="meta_data.pkl is missing")]
    names = [r["name"] for r in rows] + ["dragbench-sr/3"]
    s = dragbench.summarize(rows, names, {"edits_per_s": 1.5})
    assert (s["samples"], s["ok"], s["failed"], s["bad"], s["missing"]) == (7, 4, 1, 1, 1)
    assert s["md"] == pytest.approx(0.275) and s["md_x100"] == 27.5
    dr = s["sets"]["dragbench-dr"]
    assert dr["md"] == pytest.approx(0.3) and dr["lpips"] == pytest.approx(0.2) and dr["samples"] == 4
    assert dr["categories"]["animals"]["md"] == pytest.approx(0.2)
    assert dr["categories"]["art"]["lpips"] == pytest.approx(0.0) and dr["categories"]["art"]["failed"] == 1
    sr = s["sets"]["dragbench-sr"]
    assert sr["md"] == pytest.approx(0.2) and sr["missing"] == 1 and "categories" not in sr
    assert s["seconds_median"] == pytest.approx(2.5) and s["run"] == {"edits_per_s": 1.5}
    res.write_tables(tmp_path, rows, s)
    import csv
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(res.CSV_FIELDS)
    assert [r["name"] for r in table] == sorted(r["name"] for r in rows)
    assert table[3]["message"] == 'node 2 (X) / sample: "bad", really' and table[3]["md"] == ""
    assert json.loads((tmp_path / "results.json").read_text())[0]["md"] == 0.1
    assert json.loads((tmp_path / "summary.json").read_text())["sets"]["dragbench-sr"]["bad"] == 1


def test_contact_sheet_has_a_tile_per_sample(tmp_path):
    from PIL import Image
    rows = []
    for i in range(5):
        name = f"cat/s{i}"
        rows.append(_row(name, "ok" if i < 3 else ("failed" if i == 3 else "bad")))
        if i < 3:
            buf = io.BytesIO()
            Image.new("RGB", (64, 48), (40 * i, 200, 10)).save(buf, "PNG")
            res.write_atomic(res.image_path(tmp_path, name), buf.getvalue())
    path = res.contact_sheet(tmp_path, rows, thumb=64)
    with Image.open(path) as im:
        assert im.size == (3 * 64, 2 * (64 + 14))
        px = im.convert("RGB").load()
        assert px[32, 32] == (0, 200, 10)                      # s0's picture, centred
        assert px[64 + 32, 32] == (40, 200, 10)
        assert px[32, 78 + 5] == res.TILE_COLOURS["failed"]    # s3: a failed tile


# ----------------------------------------------------------------------------- fake ComfyUI servers
PNG = io.BytesIO()


def _png() -> bytes:
    from PIL import Image
    if not PNG.getvalue():
        Image.new("RGB", (16, 16), (10, 120, 240)).save(PNG, "PNG")
    return PNG.getvalue()


class FakeComfy:
    """Answers like ComfyUI: /prompt queues (or refuses with node_errors), one worker runs the queue in order
    (``work_s`` each), /history/<id> once done. ``refuse``/``crash``: sample names refused at validation or
    failing at execution. ``die_after``: after that many finished prompts the server goes away at once (its
    port closes with prompts still queued), as under SIGKILL."""

    def __init__(self, refuse=(), crash=(), die_after=None, work_s=0.01, ckpts=(CKPT, DIFT_CKPT), score=True,
                 hang=0.0, poison=()):
        self.poison = set(poison)   # samples that take the server down when they run
        self.hang = hang    # seconds each /history answer takes (a server too busy to answer)
        self.refuse, self.crash, self.die_after, self.work_s = set(refuse), set(crash), die_after, work_s
        self.ckpts, self.score = list(ckpts), score
        self.posted, self.finished, self.history, self.pending = [], [], {}, []
        self.running = None
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopped = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, body, ctype="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(*fake.get(self.path))

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
                self._send(*fake.post(self.path, body))

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass   # a client that gave up waiting (a broken pipe) is part of the test

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        threading.Thread(target=self._work, daemon=True).start()

    # ComfyUI's answers
    def get(self, path):
        url = urllib.parse.urlparse(path)
        if self.hang and url.path.startswith("/history/"):
            time.sleep(self.hang)
        with self.lock:
            if url.path.startswith("/history/"):
                pid = url.path.rsplit("/", 1)[1]
                return 200, {pid: self.history[pid]} if pid in self.history else {}
            if url.path == "/queue":
                run = [[0, self.running[0], {}, {}, []]] if self.running else []
                return 200, {"queue_running": run, "queue_pending": [[1, p, {}, {}, []] for p, _ in self.pending]}
        if url.path == "/view":
            return 200, _png(), "image/png"
        if url.path == "/system_stats":
            return 200, {"system": {}, "devices": []}
        if url.path == "/object_info/CheckpointLoaderSimple":
            return 200, {"CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [self.ckpts, {}]}}}}
        if url.path.startswith("/object_info/"):
            node = url.path.rsplit("/", 1)[1]
            known = dragbench.EDIT_NODES + (dragbench.SCORE_NODES if self.score else ())
            return 200, {node: {"input": {}}} if node in known else {}
        return 404, {"error": "not found"}

    def post(self, path, body):
        if path == "/queue":
            with self.lock:
                self.pending = [(p, n) for p, n in self.pending if p not in set(body.get("delete", []))]
            return 200, {}
        if path != "/prompt":
            return 404, {}
        prompt = body["prompt"]
        name = prompt[dragbench.SAMPLE]["inputs"]["sample"]
        self.posted.append(name)
        if name in self.refuse:
            return 400, {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed "
                                   "validation", "details": ""},
                         "node_errors": {dragbench.SAMPLE: {"class_type": "RegionDragBenchSample", "errors": [
                             {"message": "bad sample", "details": f"sample: {name!r} is refused here",
                              "extra_info": {"input_name": "sample"}}]}}}
        pid = uuid.uuid4().hex
        with self.lock:
            self.pending.append((pid, (name, dragbench.SCORE in prompt)))
        self.wake.set()
        return 200, {"prompt_id": pid, "number": len(self.posted), "node_errors": {}}

    def _work(self):
        while not self.stopped.is_set():
            with self.lock:
                if self.pending:
                    self.running = self.pending.pop(0)
            if not self.running:
                self.wake.wait(0.05)
                self.wake.clear()
                continue
            t0 = time.time()
            time.sleep(self.work_s)
            if self.running[1][0] in self.poison:   # crashes part-way, its port closing at once
                self.kill(after_s=0)
                return
            if self.stopped.is_set():
                return
            pid, (name, scored) = self.running
            msgs = [["execution_start", {"prompt_id": pid, "timestamp": int(t0 * 1000)}]]
            if name in self.crash:
                msgs.append(["execution_error", {"prompt_id": pid, "node_id": dragbench.DRAG,
                                                 "node_type": "RegionDragKSampler",
                                                 "exception_message": f"RegionDrag KSampler / drag_map: {name} broke",
                                                 "timestamp": int(time.time() * 1000)}])
                entry = {"prompt": [], "outputs": {}, "status": {"status_str": "error", "completed": False,
                                                                 "messages": msgs}}
            else:
                msgs.append(["execution_success", {"prompt_id": pid, "timestamp": int(time.time() * 1000)}])
                img = {"filename": f"{name.replace('/', '_')}.png", "subfolder": "", "type": "output"}
                outputs = {dragbench.SAVE: {"images": [img]}}
                if scored:
                    outputs[dragbench.SCORE] = {"images": [dict(img, type="temp")],
                                                "regiondrag_score": [{"md": 0.5, "lpips": 0.25}]}
                entry = {"prompt": [], "outputs": outputs,
                         "status": {"status_str": "success", "completed": True, "messages": msgs}}
            with self.lock:
                self.history[pid] = entry
                self.finished.append(name)
                self.running = None
            if self.die_after is not None and len(self.finished) >= self.die_after:
                self.kill()

    def forget_queue(self):
        """A restart between two polls: the queue is gone, the server answers."""
        with self.lock:
            self.pending = []

    def kill(self, after_s: float = 0.3):
        """Stop running prompts now and close the port ``after_s`` later (time for the poller to fetch the
        results that exist), leaving its queued prompts unrun."""
        self.stopped.set()
        threading.Timer(after_s, self._close).start()

    def _close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def close(self):
        if not self.stopped.is_set():
            self.stopped.set()
            self._close()


@pytest.fixture
def fakes():
    made = []

    def make(**kw):
        made.append(FakeComfy(**kw))
        return made[-1]
    yield make
    for f in made:
        f.close()


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(dragbench, "POLL_S", 0.01)
    monkeypatch.setattr(dragbench_pool, "QUEUE_CHECK_S", 0.05)


@pytest.fixture(scope="module")
def dataset_template(tmp_path_factory):
    from regiondrag_core.dragbench import make_synthetic_set
    root = tmp_path_factory.mktemp("bench") / "drag_data"
    make_synthetic_set(root, n_sr=6, n_dr=6, size=16, seed=3)
    return root


@pytest.fixture
def dataset(dataset_template, tmp_path):
    import shutil
    root = tmp_path / "drag_data"
    shutil.copytree(dataset_template, root)
    return root


def _names(root):
    from regiondrag_core.dragbench import find_samples
    return [f.relative_to(root).as_posix() for f in find_samples(root)]


def _run(root, out, servers, *extra, caplog=None):
    argv = [str(root), "--out", str(out), "--ckpt", CKPT, "--no-score", "--no-progress", "--retry-dead", "0",
            *extra]
    for s in servers:
        argv += ["--server", s.url]
    if caplog is not None:
        caplog.clear()
    return dragbench.run(dragbench.parse_args(argv))


def _results(out):
    rows = json.loads((out / "results.json").read_text())
    return {r["name"]: r for r in rows}, rows


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level(logging.INFO, logger="RegionDrag")


def test_a_server_killed_midway_costs_nothing_and_a_rerun_queues_nothing(dataset, tmp_path, fakes, fast, caplog):
    a, b = fakes(die_after=3, work_s=0.1), fakes(work_s=0.05)
    out = tmp_path / "out"
    assert _run(dataset, out, [a, b], caplog=caplog) == 0
    by_name, rows = _results(out)
    names = _names(dataset)
    assert sorted(r["name"] for r in rows) == names                 # every sample once
    assert all(r["status"] == "ok" for r in rows)
    assert {r["server"] for r in rows} == {a.url, b.url}
    assert len(a.finished) == 3 and 1 <= sum(r["server"] == a.url for r in rows) <= 3   # a result it had but
    #                                                       could not hand over before the port closed is redone on b
    assert len(a.posted) > 3                                        # it died with prompts queued ...
    assert set(b.finished) | set(a.finished) == set(names)          # ... which b ran
    assert any("gone" in m and a.url in m for m in caplog.messages)
    assert all((out / r["edited"]).is_file() for r in rows)
    assert (out / "contact_sheet.png").is_file() and (out / "results.csv").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == len(names) and summary["run"]["edits_per_s"] > 0
    assert set(summary["sets"]) == {"dragbench-sr", "dragbench-dr"}

    posted = len(b.posted)
    assert _run(dataset, out, [b], caplog=caplog) == 0
    assert len(b.posted) == posted                                  # the rerun queued nothing
    assert f"skipped {len(names)} already complete ({len(names)} ok, 0 bad) of {len(names)} samples in {out}" \
        in caplog.messages
    assert _results(out)[1] == rows


def test_refused_and_failing_samples_are_recorded_and_retried_by_the_next_run(dataset, tmp_path, fakes, fast,
                                                                               caplog):
    names = _names(dataset)
    refused, crashed = names[1], names[-2]
    s = fakes(refuse=[refused], crash=[crashed])
    out = tmp_path / "out"
    assert _run(dataset, out, [s], caplog=caplog) == 1
    by_name, rows = _results(out)
    assert len(rows) == len(names)
    assert by_name[refused]["status"] == "failed" and s.posted.count(refused) == 1     # not retried in the run
    assert "node 2 (RegionDragBenchSample) / sample:" in by_name[refused]["message"]
    assert f"{refused!r} is refused here" in by_name[refused]["message"]
    assert by_name[crashed]["status"] == "failed" and s.posted.count(crashed) == 1
    assert by_name[crashed]["message"] == \
        f"RegionDragKSampler (node 7): RegionDrag KSampler / drag_map: {crashed} broke"
    assert by_name[crashed]["seconds"] is not None
    assert sum(r["status"] == "ok" for r in rows) == len(names) - 2
    assert any(f"{crashed} failed on {s.url}" in m for m in caplog.messages)

    s.refuse.clear()
    s.crash.clear()
    posted = len(s.posted)
    assert _run(dataset, out, [s], caplog=caplog) == 0
    assert sorted(s.posted[posted:]) == sorted([refused, crashed])                   # only the failed ones again
    assert all(r["status"] == "ok" for r in _results(out)[1])


def test_bad_samples_are_reported_never_queued_and_count_as_complete(dataset, tmp_path, fakes, fast, caplog):
    names = _names(dataset)
    marker = tmp_path / "hostile_pickle_ran"
    bad = {names[0]: "missing", names[4]: "broken", names[8]: "hostile"}
    for name, how in bad.items():
        support.spoil_sample(dataset / name, how, marker)
    s = fakes()
    out = tmp_path / "out"
    assert _run(dataset, out, [s], caplog=caplog) == 0
    assert not marker.exists()
    by_name, rows = _results(out)
    assert len(rows) == len(names)
    assert {n for n, r in by_name.items() if r["status"] == "bad"} == set(bad)
    assert not set(bad) & set(s.posted)
    assert "meta_data.pkl is missing" in by_name[names[0]]["message"]
    assert "not a readable pickle" in by_name[names[4]]["message"]
    assert "builtins.exec" in by_name[names[8]]["message"] and "refused" in by_name[names[8]]["message"]
    assert any(m.startswith(f"bad sample {names[4]}, not queued:") for m in caplog.messages)
    assert json.loads((out / "summary.json").read_text())["bad"] == 3

    posted = len(s.posted)
    assert _run(dataset, out, [s], caplog=caplog) == 0
    assert len(s.posted) == posted and not marker.exists()
    assert f"skipped {len(names)} already complete ({len(names) - 3} ok, 3 bad) of {len(names)} samples in {out}" \
        in caplog.messages


def test_all_servers_gone_stops_with_the_rows_so_far_and_the_next_run_finishes(dataset, tmp_path, fakes, fast,
                                                                                caplog):
    a, b = fakes(die_after=2), fakes(die_after=3)
    out = tmp_path / "out"
    assert _run(dataset, out, [a, b], caplog=caplog) == 3
    assert any("no server answers any more" in m for m in caplog.messages)
    by_name, rows = _results(out)
    assert 1 <= len(rows) <= 5 and all(r["status"] == "ok" for r in rows)      # what they finished and handed over
    assert json.loads((out / "summary.json").read_text())["missing"] == len(_names(dataset)) - len(rows)

    c = fakes()
    assert _run(dataset, out, [c], caplog=caplog) == 0
    assert sorted(c.posted) == sorted(set(_names(dataset)) - set(by_name))           # the rest, once each
    n = len(rows)
    assert f"skipped {n} already complete ({n} ok, 0 bad) of 12 samples in {out}" in caplog.messages


def test_a_sample_that_takes_its_servers_down_fails_after_two(dataset, tmp_path, fakes, fast, caplog):
    names = _names(dataset)
    poison = names[2]
    a, b, c = (fakes(poison=[poison], work_s=0.1) for _ in range(3))
    out = tmp_path / "out"
    assert _run(dataset, out, [a, b, c], caplog=caplog) == 1
    by_name, rows = _results(out)
    assert sorted(by_name) == names
    assert by_name[poison]["status"] == "failed" and "2 servers went away while running it" in \
        by_name[poison]["message"]
    assert all(r["status"] == "ok" for n, r in by_name.items() if n != poison)
    assert sum(not f.stopped.is_set() for f in (a, b, c)) == 1          # one server was left standing


def test_a_prompt_lost_by_a_restart_is_queued_again(dataset, tmp_path, fakes, fast, caplog):
    s = fakes(work_s=0.3)
    out = tmp_path / "out"
    names = _names(dataset)

    def restart_once():
        while len(s.posted) < 2:
            time.sleep(0.01)
        s.forget_queue()
    t = threading.Thread(target=restart_once, daemon=True)
    t.start()
    assert _run(dataset, out, [s], "--limit", "3", caplog=caplog) == 0
    t.join()
    assert sorted(r["name"] for r in _results(out)[1]) == names[:3]
    assert s.posted.count(names[1]) == 2
    assert any("in neither its queue nor its history" in m for m in caplog.messages)


def test_scores_and_comparison_images_are_kept(dataset, tmp_path, fakes, fast, caplog):
    s = fakes()
    out = tmp_path / "out"
    argv = [str(dataset), "--out", str(out), "--ckpt", CKPT, "--dift-ckpt", DIFT_CKPT, "--lpips-backbone", "random",
            "--no-progress", "--server", s.url, "--limit", "2"]
    assert dragbench.run(dragbench.parse_args(argv)) == 0
    rows = _results(out)[1]
    assert [(r["md"], r["lpips"]) for r in rows] == [(0.5, 0.25)] * 2
    assert all((out / r["comparison"]).is_file() for r in rows)
    assert json.loads((out / "summary.json").read_text())["md_x100"] == 50.0


def test_a_server_without_the_checkpoint_or_the_pack_is_refused_before_queueing(dataset, tmp_path, fakes, fast,
                                                                                 caplog):
    s = fakes(ckpts=["other.safetensors"])
    assert _run(dataset, tmp_path / "out", [s], caplog=caplog) == 2
    assert any(f"server {s.url} lists no checkpoint {CKPT!r} (--ckpt)" in m for m in caplog.messages)
    t = fakes(score=False)
    argv = [str(dataset), "--out", str(tmp_path / "out2"), "--ckpt", CKPT, "--dift-ckpt", DIFT_CKPT,
            "--no-progress", "--server", t.url]
    assert dragbench.run(dragbench.parse_args(argv)) == 2
    assert any("has no RegionDragBenchScore node" in m for m in caplog.messages)
    assert s.posted == [] and t.posted == []


def test_other_settings_into_the_same_out_are_refused_unless_forced(dataset, tmp_path, fakes, fast, caplog):
    s = fakes()
    out = tmp_path / "out"
    assert _run(dataset, out, [s], "--limit", "2", caplog=caplog) == 0
    assert _run(dataset, out, [s], "--limit", "2", "--steps", "4", caplog=caplog) == 2
    assert any("steps 4 here, 20 there" in m for m in caplog.messages)
    assert len(s.posted) == 2
    assert _run(dataset, out, [s], "--limit", "2", "--steps", "4", "--force", caplog=caplog) == 0
    assert len(s.posted) == 4


def test_a_server_silent_for_dead_after_seconds_is_gone_and_its_samples_go_elsewhere(fakes):
    slow, ok = fakes(hang=1.0), fakes()
    names = [f"s{i}" for i in range(6)]
    got = []
    pool = dragbench_pool.Pool(
        [slow.url, ok.url], names, lambda n: dragbench.build_graph("set", n, _settings(score=False), f"p/{n}"),
        dragbench._row({}), got.append, save_node=dragbench.SAVE, poll_s=0.01, request_timeout_s=0.1,
        dead_after_s=0.5, retry_s=0)
    pool.run()
    assert sorted(f.row["name"] for f in got) == names
    assert {f.row["server"] for f in got} == {ok.url}
    assert slow.posted and all(f.row["status"] == "ok" for f in got)


def test_a_sample_finished_twice_counts_once():
    pool = dragbench_pool.Pool([], ["a", "b", "c"], build=None, row=None, on_finished=None, save_node="10")
    worker = dragbench_pool.ServerWorker(pool, "http://x")
    for name in ("a", "a", "b"):
        pool.finish(worker, dragbench_pool.Finished({"name": name}))
    assert [pool.events.get_nowait().row["name"] for _ in range(pool.events.qsize())] == ["a", "b"]
    assert pool.take() == "c" and pool.take() is None     # finished samples are never handed out again
    pool.give_back(["a", "c"])
    assert pool.take() == "c" and pool.take() is None


def test_execution_timestamps_give_seconds():
    entry = {"status": {"messages": [["execution_start", {"timestamp": 1000}], ["execution_cached", {"nodes": []}],
                                     ["execution_success", {"timestamp": 3500}]]}}
    assert dragbench_pool.execution_seconds(entry) == 2.5
    assert dragbench_pool.execution_seconds({"status": {"messages": []}}) is None
    assert dragbench_pool.execution_message(entry) is None


def test_no_samples_and_no_folder_are_usage_errors(tmp_path, caplog):
    (tmp_path / "empty").mkdir()
    base = ["--out", str(tmp_path / "o"), "--ckpt", CKPT, "--no-score", "--server", "http://127.0.0.1:9"]
    assert dragbench.run(dragbench.parse_args([str(tmp_path / "empty"), *base])) == 2
    assert dragbench.run(dragbench.parse_args([str(tmp_path / "nope"), *base])) == 2
    assert any("holds no DragBench sample" in m for m in caplog.messages)


def test_unreachable_servers_stop_before_queueing(dataset, tmp_path, caplog):
    base = ["--out", str(tmp_path / "o"), "--ckpt", CKPT, "--no-score", "--no-progress", "--server",
            "http://127.0.0.1:9"]
    assert dragbench.run(dragbench.parse_args([str(dataset), *base])) == 3
    assert any("no server answers" in m for m in caplog.messages)
    assert os.path.isfile(tmp_path / "o" / "results.json")
