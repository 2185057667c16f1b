"""Live editing in the real front-end: "Run (On Change)" (auto-queue mode "change") re-runs the edit as
the regions are drawn, in headless Chromium against a real ComfyUI, for each front-end and node
renderer of the editor's browser tests (the matrix and the harness of tests/browser_page.py: on ComfyUI
0.8.0 its own 1.35.9 and 1.58.1, classic and Nodes 2.0). Not ``compat``: an older host's CI run
leaves it out (1.27.10 on ComfyUI 0.3.64, classic only, runs it when the whole suite is run there).

One case: the live graph at 128x128 (random SD1.5, 4 steps: 2 inversion + 2 denoising model calls)
with the editor's Result layer on; a first run (the inversion) queued by hand; then auto-queue "change"
and, in quick succession, three gestures with the mouse: draw a pair (a handle polygon, then a
target polygon), move the target, Undo. Checked:

* each gesture writes the shapes widget once (closing the handle alone writes nothing; no write while
  the pointer moves), and the front-end sees one graph change per gesture;
* executions <= gestures + 1, the queue never holds more than one pending prompt (the page polls
  ``/queue`` every 50 ms and follows ``status``), every prompt after the first served DDPM
  Invert-and-Cache from ComfyUI's cache, and no interrupted prompt was stopped in the inversion;
* the image shown at the end (the Preview Image's last output, which the Result layer shows) is the
  edit of the final shapes: the same as a direct ``/prompt`` run of those shapes (the JSON written
  another way, so ComfyUI re-runs everything after RegionMaskPair, the inversion staying cached);
* the sampler's latent previews reach the front-end as for KSampler (setting
  ``Comfy.Execution.PreviewMethod`` latent2rgb);
* the latency from the end of a gesture to the new image on screen (the Result layer's image loaded):
  for the last gesture of the burst and for one more gesture on an idle queue. The figures are
  printed at the end of the run and written to ``live_latency.json`` in the session's temp folder
  (and to ``$REGIONDRAG_LIVE_REPORT`` when set).
"""
from __future__ import annotations

import io
import json
import logging
import os
import time
import urllib.parse

import numpy as np
import pytest

from browser_page import (APP, CASES, CHROMIUM, FRONTENDS, Page, frontend_root, launch_chromium, make_test_image,
                          sync_playwright)
from support import start_server

log = logging.getLogger("RegionDrag.tests.live")

pytestmark = [
    pytest.mark.host,
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not found (apt install chromium)"),
    pytest.mark.skipif(sync_playwright is None,
                       reason="Python package 'playwright' not installed (pip install playwright)"),
]

SIZE = 128
STEPS = 4  # 2 inversion + 2 denoising model calls at start_t 0.5
IMAGE = "regiondrag_live_test.png"
CKPT = "random_sd15.safetensors"  # conftest's CKPT_NAME, linked into every server's checkpoints
# a pair present from the start (the first run), and the pair the burst draws
FIRST_PAIR = {"handle": {"type": "polygon", "points": [[18, 70], [44, 70], [44, 100], [18, 100]]},
              "target": {"type": "polygon", "points": [[28, 62], [54, 62], [54, 92], [28, 92]]}}
DRAW_HANDLE = [(70, 20), (100, 20), (100, 45), (70, 45)]
DRAW_TARGET = [(80, 55), (110, 55), (95, 80)]
RESULTS: list = []


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as b:
        yield b


@pytest.fixture(scope="module")
def servers(request):
    """`get(frontend)`: a running ComfyUI with the random SD1.5 serving that front-end: the session's
    server for the host's own, one of this module's for 1.58.1."""
    started: dict = {}

    def get(frontend):
        if frontend not in started:
            if frontend == FRONTENDS[0]:
                server = request.getfixturevalue("comfy_server")
            else:
                ckpt = request.getfixturevalue("sd15_checkpoint")
                server = start_server(request, [ckpt], extra_args=["--front-end-root", frontend_root(frontend)])
            write_image(os.path.join(server.input_dir, IMAGE))
            # latent previews on (per prompt, from the front-end's setting), as a user shows them
            server.client.post("/settings", {"Comfy.Execution.PreviewMethod": "latent2rgb"})
            request.addfinalizer(
                lambda s=server: s.client.post("/settings", {"Comfy.Execution.PreviewMethod": "default"}))
            started[frontend] = server
        return started[frontend]

    return get


@pytest.fixture(scope="module")
def report(request, tmp_path_factory):
    """Where the cases put their figures: printed at the end, written as JSON."""
    yield RESULTS
    if not RESULTS:
        return
    path = tmp_path_factory.getbasetemp() / "live_latency.json"
    text = json.dumps(RESULTS, indent=1)
    path.write_text(text)
    extra = os.environ.get("REGIONDRAG_LIVE_REPORT")
    if extra:
        with open(extra, "w") as f:
            f.write(text)
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"RegionDrag live editing at {SIZE}x{SIZE}, {STEPS} steps (gesture end -> new image on screen):"]
    for r in RESULTS:
        lines.append(f"  {r['frontend']} {r['renderer']}: idle queue {r['latency_idle_ms']:.0f} ms, end of a burst "
                     f"{r['latency_burst_ms']:.0f} ms; {r['executions']} executions for {r['gestures']} gestures, "
                     f"{r['interrupted']} interrupted, max pending {r['max_pending']}")
    lines.append(f"  (figures in {path})")
    for line in lines:
        log.warning(line)
        if tr is not None:
            tr.write_line(line)


def write_image(path):
    """The editor test's landscape at SIZE x SIZE."""
    from PIL import Image
    make_test_image(path)
    Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.LANCZOS).save(path)


# ------------------------------------------------------------------------------ the page


def build_live_graph(ui, shapes):
    """Load Checkpoint, Load Image -> VAE Encode, CLIP Text Encode -> DDPM Invert-and-Cache; RegionMaskPair
    (image) -> Region-to-Point Mapping -> RegionDrag KSampler -> VAE Decode -> Preview Image. Seeds fixed,
    the editor's Result layer on. Returns the node ids by role."""
    ids = ui.eval(
        """([ckpt, image, steps, shapes]) => {
          const app = window.comfyAPI.app.app, LG = window.LiteGraph;
          app.graph.clear();
          const add = (type, pos, size, values = {}) => {
            const n = LG.createNode(type); n.pos = pos; app.graph.add(n); if (size) n.setSize(size);
            for (const [k, v] of Object.entries(values)) n.widgets.find(w => w.name === k).value = v;
            for (const w of n.widgets || []) if (w.name === "control_after_generate") w.value = "fixed";
            return n; };
          const link = (a, slot, b, name) => a.connect(slot, b, b.findInputSlot(name));
          const ck = add("CheckpointLoaderSimple", [20, 700], null, {ckpt_name: ckpt});
          const li = add("LoadImage", [20, 60], [300, 320], {image});
          const enc = add("VAEEncode", [20, 450]);
          link(li, 0, enc, "pixels"); link(ck, 2, enc, "vae");
          const pos = add("CLIPTextEncode", [20, 540], [300, 120], {text: "a landscape with a house"});
          link(ck, 1, pos, "clip");
          const inv = add("DDPMInvertAndCache", [1300, 620], null, {steps, start_t: 0.5, seed: 0});
          link(ck, 0, inv, "model"); link(pos, 0, inv, "positive"); link(enc, 0, inv, "latent");
          const rp = add("RegionMaskPair", [360, 40], [560, 660]);
          rp.properties.regiondrag_show_result = true;
          link(li, 0, rp, "image");
          const mp = add("RegionToPointMapping", [960, 40]);
          link(rp, 0, mp, "region_pairs"); link(enc, 0, mp, "latent"); link(li, 0, mp, "image");
          const ks = add("RegionDragKSampler", [960, 180], null, {end_t: 0.2, noise_weight: 1.0, seed: 0});
          link(ck, 0, ks, "model"); link(inv, 0, ks, "inversion");
          link(mp, 0, ks, "drag_map"); link(pos, 0, ks, "positive");
          const dec = add("VAEDecode", [960, 460]);
          link(ks, 0, dec, "samples"); link(ck, 2, dec, "vae");
          const pv = add("PreviewImage", [960, 540], [300, 300]);
          link(dec, 0, pv, "images");
          const sw = rp.widgets.find(w => w.name === "shapes");
          sw.value = shapes; rp.regionEditor.loadText(shapes, true);
          app.canvas.ds.scale = 1; app.canvas.ds.offset = [20, 40];
          app.canvas.setDirty(true, true);
          return {pair: rp.id, inversion: inv.id, sampler: ks.id, decode: dec.id, preview: pv.id, map: mp.id}; }""",
        [CKPT, IMAGE, STEPS, shapes])
    ui.image_size = (SIZE, SIZE)
    ui.wait_editor(ids["pair"])
    ui.wait_background(IMAGE)
    return ids


INSTRUMENT = """(ids) => {
  const app = window.comfyAPI.app.app, api = window.comfyAPI.api.api;
  const b = app.graph.getNodeById(ids.pair).regionBinding;
  const L = window.__live = {events: [], writes: [], maxPending: 0, maxRunning: 0, polls: 0};
  const now = () => performance.now();
  const write = b.writeText.bind(b);
  b.writeText = (text, options) => {
    const before = b.shapes.value;
    write(text, options);
    if (b.shapes.value !== before) L.writes.push([now(), text]);
  };
  const kinds = ["graphChanged", "execution_start", "execution_success", "execution_interrupted", "execution_error",
                 "status", "executed", "b_preview_with_metadata"];
  for (const t of kinds) api.addEventListener(t, (e) => {
    const d = e.detail;
    let v = null;
    if (t === "status") v = d?.exec_info?.queue_remaining ?? null;
    else if (t === "executed") v = {node: String(d?.display_node ?? d?.node), prompt: d?.prompt_id ?? null,
                                    image: d?.output?.images?.[0] ?? null};
    else if (t === "b_preview_with_metadata") v = String(d?.displayNodeId ?? d?.nodeId);
    else if (t !== "graphChanged") v = d?.prompt_id ?? null;
    L.events.push([now(), t, v]);
  });
  L.timer = setInterval(async () => {
    try {
      const q = await (await api.fetchApi("/queue")).json();
      L.maxPending = Math.max(L.maxPending, q.queue_pending.length);
      L.maxRunning = Math.max(L.maxRunning, q.queue_running.length);
      L.polls++;
    } catch { /* the next poll */ }
  }, 50);
}"""


def mark(ui, name):
    return ui.eval("(name) => { const t = performance.now(); window.__live.events.push([t, 'mark', name]); "
                   "return t; }", name)


def live_state(ui):
    return ui.eval("() => { const L = window.__live; return {events: L.events, writes: L.writes, "
                   "maxPending: L.maxPending, maxRunning: L.maxRunning, polls: L.polls}; }")


def editor_result(ui, node):
    """(url, time it was on screen) of the editor's Result layer image, or (None, None)."""
    return tuple(ui.eval(f"(id) => {{ const r = {APP}.graph.getNodeById(id).regionEditor.result;"
                         " return r && !r.preview ? [r.url, r.shownAt] : [null, null]; }", node))


def settle(ui, quiet=1.0, timeout=180):
    """Until the server's queue is empty and no execution event came for `quiet` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = ui.eval("""async () => { const api = window.comfyAPI.api.api;
            const q = await (await api.fetchApi('/queue')).json(), E = window.__live.events;
            const last = E.filter(e => e[1] !== 'mark').map(e => e[0]).pop() ?? 0;
            return {busy: q.queue_running.length + q.queue_pending.length, idle: performance.now() - last}; }""")
        if st["busy"] == 0 and st["idle"] > quiet * 1000:
            return
        time.sleep(0.2)
    raise TimeoutError("the live runs did not settle")


def queue_by_hand(ui, client, timeout=600):
    """Queue the graph with the Run button's action and wait for its history entry."""
    before = set(client.get("/history") or {})
    errors = ui.eval(f"async () => {{ await {APP}.queuePrompt(0, 1); return {APP}.lastNodeErrors; }}")
    assert not errors, f"the graph was not queued: {errors}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        for pid, entry in (client.get("/history") or {}).items():
            status = entry.get("status", {})
            if pid not in before and (status.get("completed") or status.get("status_str") in ("success", "error")):
                assert status.get("status_str") != "error", status
                return pid, entry
        time.sleep(0.25)
    raise TimeoutError("the first run did not finish")


def fetch_png(client, img):
    from PIL import Image
    q = urllib.parse.urlencode({"filename": img["filename"], "subfolder": img.get("subfolder", ""),
                                "type": img.get("type", "output")})
    return np.asarray(Image.open(io.BytesIO(client.get_bytes(f"/view?{q}"))).convert("RGB")).astype(np.int16)


def messages(entry, name):
    return [data for n, data in entry.get("status", {}).get("messages", []) if n == name]


# ---------------------------------------------------------------------------------- test


@pytest.mark.parametrize("case", CASES, ids=[f"{f}-{r}" for f, r in CASES])
def test_run_on_change_follows_the_drawing(case, browser, servers, report):
    frontend, renderer = case
    server = servers(frontend)
    client = server.client
    ui = Page(browser, server, frontend, renderer)
    try:
        _live_case(ui, client, frontend, renderer)
        errors = ui.our_errors()
        assert not errors, "errors from the RegionDrag editor in the browser console:\n" + "\n".join(errors)
    finally:
        ui.close()


def _live_case(ui, client, frontend, renderer):
    first = json.dumps({"version": 1, "width": SIZE, "height": SIZE, "pairs": [FIRST_PAIR]})
    ids = build_live_graph(ui, first)
    node, inv = ids["pair"], str(ids["inversion"])

    # The first run (the inversion, the model loaded), queued by hand; then the front-end's change
    # tracker takes in what running changed in the graph (execution order, the preview's output), so
    # the live part starts from a quiet graph.
    queue_by_hand(ui, client)
    ui.page.wait_for_timeout(700)
    ui.eval(f"() => {{ const c = {APP}.canvas; c.emitBeforeChange(); c.emitAfterChange(); }}")
    ui.page.wait_for_timeout(300)
    ui.eval(INSTRUMENT, ids)
    ui.eval(f"() => {{ {APP}.extensionManager.queueSettings.mode = 'change'; }}")
    assert ui.eval(f"() => {APP}.extensionManager.queueSettings.mode") == "change"

    # -- the burst: draw a pair, move its target, Undo, with no pause
    mark(ui, "draw")
    for x, y in DRAW_HANDLE:
        ui.click(x, y)
    ui.click(*DRAW_HANDLE[0])  # closes the handle: a pair being drawn, not saved yet
    handle_closed = mark(ui, "handle closed")
    for x, y in DRAW_TARGET:
        ui.click(x, y)
    ui.page.keyboard.press("Enter")
    drawn = ui.eval(f"(id) => {APP}.graph.getNodeById(id).widgets.find(w => w.name === 'shapes').value", node)
    ui.button("select")
    cx, cy = np.mean(DRAW_TARGET, axis=0).round().astype(int)
    (sx, sy), _ = ui.client_point(cx, cy)
    (ex, ey), _ = ui.client_point(cx + 8, cy + 5)
    ui.page.mouse.move(sx, sy)
    ui.page.mouse.down()
    drag_start = mark(ui, "drag start")
    ui.page.mouse.move(ex, ey, steps=12)
    drag_moved = mark(ui, "drag moved")
    ui.page.mouse.up()
    ui.button("undo")
    mark(ui, "undo")
    final = ui.eval(f"(id) => {APP}.graph.getNodeById(id).widgets.find(w => w.name === 'shapes').value", node)
    assert final == drawn, "Undo brings back the drawn pair"
    assert len(json.loads(final)["pairs"]) == 2
    settle(ui)
    st = live_state(ui)

    # one write per gesture (closing the handle alone wrote nothing; nothing while the pointer moved)
    writes = [t for t, _ in st["writes"]]
    assert len(writes) == 3, [w[1][:60] for w in st["writes"]]
    assert writes[0] > handle_closed
    assert not any(drag_start <= t <= drag_moved for t in writes), "a write while the pointer moved"
    assert st["writes"][-1][1] == final
    changes = [e for e in st["events"] if e[1] == "graphChanged"]
    assert len(changes) == 3, f"{len(changes)} graph changes for 3 gestures"

    # no backlog: executions <= gestures + 1, at most one prompt pending, the inversion always cached
    starts = [e[2] for e in st["events"] if e[1] == "execution_start"]
    assert 1 <= len(starts) <= len(writes) + 1, f"{len(starts)} executions for {len(writes)} gestures"
    assert st["polls"] > 10 and st["maxPending"] <= 1, st["maxPending"]
    queue_sizes = [e[2] for e in st["events"] if e[1] == "status" and isinstance(e[2], int)]
    assert max(queue_sizes, default=0) <= 2, queue_sizes  # one running + one pending
    entries = {pid: client.get(f"/history/{pid}")[pid] for pid in starts}
    interrupted = []
    for pid, entry in entries.items():
        cached = {str(n) for m in messages(entry, "execution_cached") for n in m.get("nodes", [])}
        assert inv in cached, f"prompt {pid} ran DDPM Invert-and-Cache again"
        assert not messages(entry, "execution_error"), messages(entry, "execution_error")
        for m in messages(entry, "execution_interrupted"):
            assert m.get("node_type") != "DDPMInvertAndCache", m
            interrupted.append(m.get("node_type"))

    # the image shown at the end is the edit of the final shapes
    last = starts[-1]
    entry = entries[last]
    assert entry["status"].get("status_str") == "success", entry["status"]
    assert entry["prompt"][2][str(node)]["inputs"]["shapes"] == final
    shown = [e for e in st["events"] if e[1] == "executed" and e[2]["node"] == str(ids["preview"])]
    assert shown and shown[-1][2]["prompt"] == last, "the Preview Image's last image is from the last run"
    img = shown[-1][2]["image"]
    url, shown_at = editor_result(ui, node)
    assert url and img["filename"] in url, (url, img)  # ... and the editor's Result layer shows it
    got = fetch_png(client, img)
    direct = json.loads(json.dumps(entry["prompt"][2]))
    direct[str(node)]["inputs"]["shapes"] = json.dumps(json.loads(final), indent=1)  # same shapes, other text
    direct_entry = client.run(direct, timeout=600)
    assert inv in {str(n) for m in messages(direct_entry, "execution_cached") for n in m.get("nodes", [])}
    assert str(ids["sampler"]) not in {str(n) for m in messages(direct_entry, "execution_cached")
                                       for n in m.get("nodes", [])}, "the direct run re-ran the edit"
    want = fetch_png(client, direct_entry["outputs"][str(ids["preview"])]["images"][0])
    assert got.shape == (SIZE, SIZE, 3)
    diff = int(np.abs(got - want).max())
    assert diff <= 2, f"the live result differs from a direct run of the final shapes by {diff} levels"
    previews = [e for e in st["events"] if e[1] == "b_preview_with_metadata" and e[2] == str(ids["sampler"])]
    assert previews, "no latent preview of RegionDrag KSampler reached the front-end"
    burst_ms = shown_at - writes[-1]

    # -- one more gesture on an idle queue: its latency to the image on screen
    n_events = len(st["events"])
    (sx, sy), _ = ui.client_point(cx, cy)
    (ex, ey), _ = ui.client_point(cx - 6, cy + 4)
    ui.page.mouse.move(sx, sy)
    ui.page.mouse.down()
    ui.page.mouse.move(ex, ey, steps=6)
    ui.page.mouse.up()
    settle(ui)
    st2 = live_state(ui)
    assert len(st2["writes"]) == 4
    t_write = st2["writes"][-1][0]
    new = st2["events"][n_events:]
    starts2 = [e[2] for e in new if e[1] == "execution_start"]
    assert len(starts2) == 1, new
    executed = [e for e in new if e[1] == "executed" and e[2]["node"] == str(ids["preview"])]
    assert executed and executed[-1][2]["prompt"] == starts2[0]
    url2, shown2 = editor_result(ui, node)
    assert url2 and executed[-1][2]["image"]["filename"] in url2 and shown2 > t_write
    entry2 = client.get(f"/history/{starts2[0]}")[starts2[0]]
    assert inv in {str(n) for m in messages(entry2, "execution_cached") for n in m.get("nodes", [])}
    queued = [e[0] for e in new if e[1] == "execution_start"][0]

    RESULTS.append({
        "frontend": frontend, "renderer": renderer, "size": SIZE, "steps": STEPS,
        "gestures": len(writes), "executions": len(starts), "interrupted": len(interrupted),
        "interrupted_in": interrupted, "max_pending": st["maxPending"],
        "max_queue_remaining": max(queue_sizes, default=0),
        "latency_burst_ms": burst_ms,
        "latency_idle_ms": shown2 - t_write,
        "idle_gesture_to_execution_start_ms": queued - t_write,
        "idle_gesture_to_executed_ms": executed[-1][0] - t_write,
        "latent_previews": len(previews), "direct_run_max_diff": diff,
    })
