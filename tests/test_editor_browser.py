"""The region editor (web/js/) in headless Chromium against a real ComfyUI, for every front-end and
both node renderers.

Matrix: (front-end, renderer). Front-ends: the host's own (1.35.9 on ComfyUI 0.8.0, 1.27.10 on
0.3.64) and, on a 0.8+ backend, the newest one on the package index (1.58.1, started with
``--front-end-root``; ``REGIONDRAG_FRONTEND_ROOT_158`` names its static folder, else
``.ci/get-frontend`` fetches it into the cache and a failure to do so fails the tests). Renderers:
the classic LiteGraph canvas and Nodes 2.0 (Vue nodes, setting ``Comfy.VueNodes.Enabled``, switched
before the page loads). 1.27.10 has Nodes 2.0 only as a hidden experimental setting that renders
no pack's DOM widget, so it runs classic only. One server per front-end, one browser, one page
per renderer.

Every case drives the front-end with the mouse: draws a polygon pair (4-corner handle, 5-corner
target) and a brush pair, checks the ``shapes`` JSON against the mouse positions converted to image
pixels, moves a region and reshapes one, undoes, changes the connected LoadImage and sees the
background follow, saves and reloads the workflow, and queues: the regions ComfyUI rasterised must
equal the drawn ones. Dragging in the editor must never move or resize the node.

Needs Debian's /usr/bin/chromium and the Python ``playwright`` package (no browser download).
Set REGIONDRAG_SCREENSHOTS=<dir> to save the editor screenshots used in the docs.
"""
from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import time
import urllib.parse
from importlib import metadata

import numpy as np
import pytest

from conftest import COMFYUI, REPO

CHROMIUM = "/usr/bin/chromium"
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

pytestmark = [
    pytest.mark.host,
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not found (apt install chromium)"),
    pytest.mark.skipif(sync_playwright is None,
                       reason="Python package 'playwright' not installed (pip install playwright)"),
]

IMAGE_NAME = "regiondrag_editor_test.png"
IMAGE2_NAME = "regiondrag_editor_test_night.png"
W, H = 384, 256  # not square: the editor must keep image pixels whatever its on-screen size
APP = "window.comfyAPI.app.app"
EDITOR = ".regiondrag-editor"
OUR_SCRIPT_MARKERS = ("/extensions/ComfyUI-RegionDrag/", "regiondrag_", "RegionDrag editor")
NEWEST_FRONTEND = "1.58.1"  # keep in step with .ci/get-frontend
FRONTEND_ROOT_ENV = "REGIONDRAG_FRONTEND_ROOT_158"


# ------------------------------------------------------------------------------ the matrix


def _host_version() -> tuple:
    try:
        with open(os.path.join(COMFYUI, "comfyui_version.py")) as f:
            return tuple(int(x) for x in f.read().split('"')[1].split(".")[:3])
    except (OSError, IndexError, ValueError, TypeError):
        return (0, 0, 0)


def _own_frontend() -> str:
    try:
        return metadata.version("comfyui-frontend-package")
    except metadata.PackageNotFoundError:
        return "own"


FRONTENDS = [_own_frontend()]
if COMFYUI and _host_version() >= (0, 8, 0):  # 1.58 needs the newer backend's routes
    FRONTENDS.append(NEWEST_FRONTEND)
RENDERERS = ["classic", "vue"]


def _renderers(frontend: str) -> list:
    """1.27.x has Nodes 2.0 only as a hidden experimental setting whose Vue nodes render the
    front-end's own widget types and no DOM widget of any pack: classic only there."""
    try:
        version = tuple(int(x) for x in frontend.split(".")[:2])
    except ValueError:
        return RENDERERS
    return ["classic"] if version < (1, 28) else RENDERERS


CASES = [(f, r) for f in FRONTENDS for r in _renderers(f)]


def _frontend_root(version: str) -> str:
    root = os.environ.get(FRONTEND_ROOT_ENV)
    if not root:
        script = os.path.join(REPO, ".ci", "get-frontend")
        try:
            root = subprocess.run([script, version], check=True, capture_output=True, text=True,
                                  timeout=600).stdout.strip().splitlines()[-1]
        except (subprocess.SubprocessError, OSError, IndexError) as e:
            err = getattr(e, "stderr", "") or ""
            pytest.fail(f"front-end {version}: set {FRONTEND_ROOT_ENV} to its static folder, or let "
                        f".ci/get-frontend fetch it (it failed: {e} {err[-2000:]})")
    if not os.path.isfile(os.path.join(root, "index.html")):
        pytest.fail(f"front-end {version}: no index.html in {root} ({FRONTEND_ROOT_ENV})")
    return root


# ------------------------------------------------------------------------------ images


def make_test_image(path: str, night: bool = False) -> None:
    """A small synthetic landscape (sky, mountains, a house, a tree) for drawing on; `night`
    gives the same scene in other colours (the second LoadImage file)."""
    from PIL import Image, ImageDraw, ImageOps

    img = Image.new("RGB", (W, H))
    d = ImageDraw.Draw(img)
    for y in range(H):
        t = y / H
        d.line([(0, y), (W, y)], fill=(int(90 + 80 * t), int(150 + 60 * t), int(230 - 30 * t)))
    d.ellipse([W * 0.78, H * 0.08, W * 0.9, H * 0.08 + W * 0.12], fill=(255, 220, 90))
    d.polygon([(0, H * 0.7), (W * 0.2, H * 0.35), (W * 0.42, H * 0.7)], fill=(110, 120, 140))
    d.polygon([(W * 0.3, H * 0.7), (W * 0.55, H * 0.3), (W * 0.8, H * 0.7)], fill=(95, 105, 125))
    d.polygon([(W * 0.47, H * 0.42), (W * 0.55, H * 0.3), (W * 0.63, H * 0.42)], fill=(240, 240, 250))
    d.rectangle([0, H * 0.68, W, H], fill=(70, 150, 70))
    x0, y0 = W * 0.12, H * 0.56
    d.rectangle([x0, y0, x0 + 60, y0 + 50], fill=(220, 190, 140))
    d.polygon([(x0 - 8, y0), (x0 + 30, y0 - 30), (x0 + 68, y0)], fill=(170, 50, 40))
    d.rectangle([x0 + 24, y0 + 22, x0 + 38, y0 + 50], fill=(110, 70, 40))
    tx, ty = W * 0.72, H * 0.62
    d.rectangle([tx - 4, ty, tx + 4, ty + 40], fill=(100, 70, 40))
    d.ellipse([tx - 24, ty - 40, tx + 24, ty + 8], fill=(40, 120, 50))
    if night:
        img = ImageOps.invert(img)
    img.save(path)


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def browser():
    # Module scope: Playwright's sync API runs an event loop in this thread while it is open, and the
    # in-process host tests after this module need the thread free (ComfyUI's loader uses asyncio.run).
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


_servers: dict = {}


@pytest.fixture(scope="module")
def servers(request):
    """`get(frontend)`: a running ComfyUI serving that front-end (one per front-end, kept)."""
    from comfy_server import ComfyServer

    def get(frontend):
        if frontend in _servers:
            return _servers[frontend]
        if frontend == FRONTENDS[0]:
            server = request.getfixturevalue("comfy_server")
        else:
            ckpt = request.getfixturevalue("sd15_checkpoint")
            server = ComfyServer(checkpoints=[ckpt], comfyui=COMFYUI,
                                 extra_args=["--front-end-root", _frontend_root(frontend)])
            try:
                server.start()
            except RuntimeError as e:
                pytest.fail(str(e))
            request.addfinalizer(server.close)
        make_test_image(os.path.join(server.input_dir, IMAGE_NAME))
        make_test_image(os.path.join(server.input_dir, IMAGE2_NAME), night=True)
        _servers[frontend] = server
        return server

    request.addfinalizer(_servers.clear)
    return get


class Page:
    """One browser tab on the ComfyUI front-end, with its console errors collected."""

    def __init__(self, browser, server, frontend, renderer):
        self.server = server
        self.frontend = frontend
        self.renderer = renderer
        self.vue = renderer == "vue"
        # A returning user (no template browser over the canvas), and the renderer, before the
        # page loads.
        server.client.post("/settings", {"Comfy.TutorialCompleted": True, "Comfy.VueNodes.Enabled": self.vue,
                                         "Comfy.VueNodes.AutoScaleLayout": False})
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.console = []  # (type, text, url)
        self.page_errors = []
        self.seen = 0
        self.page.on("console", lambda m: self.console.append((m.type, m.text, (m.location or {}).get("url", ""))))
        self.page.on("pageerror", lambda e: self.page_errors.append(f"{e}\n{e.stack or ''}"))
        self.open()

    def open(self, reload=False):
        if reload:
            self.page.reload()
        else:
            self.page.goto(self.server.url)
        self.page.wait_for_function(
            """() => { const a = window.comfyAPI?.app?.app;
                       return !!(a && a.graph && a.extensions?.some(e => e.name === 'RegionDrag.RegionEditor')
                              && window.LiteGraph?.registered_node_types?.RegionMaskPair
                              && window.LiteGraph?.registered_node_types?.LoadImage); }""",
            timeout=90_000)
        if True:
            # newer front-ends load a default (or the restored) workflow a moment after start-up:
            # let it arrive before a test looks at or replaces the graph
            try:
                self.page.wait_for_function(f"() => {APP}.graph.nodes.length > 0", timeout=15_000)
            except Exception:  # noqa: BLE001 - no default workflow in this front-end
                pass
            self.page.wait_for_timeout(500)
        mode = self.eval("() => !!window.LiteGraph.vueNodesMode")
        assert mode == self.vue, f"renderer is {'vue' if mode else 'classic'}, expected {self.renderer}"
        # dialogs a new front-end may open over the canvas on first load
        self.page.keyboard.press("Escape")

    def eval(self, js, arg=None):
        return self.page.evaluate(js, arg)

    def our_errors(self):
        """New errors and warnings from this pack's script, and uncaught exceptions raised in it.

        The front-ends log some errors of their own (missing user.css, the offline release
        check; 1.27.10 throws once in its settings code at start-up): those are not counted."""
        ours = [f"{t}: {text} @ {url}" for t, text, url in self.console
                if t in ("error", "warning") and any(k in text or k in url for k in OUR_SCRIPT_MARKERS)]
        ours += [f"pageerror: {e}" for e in self.page_errors if any(k in e for k in OUR_SCRIPT_MARKERS)]
        new, self.seen = ours[self.seen:], len(ours)
        return new

    def build_graph(self, scale=1.0, with_chain=True, image=IMAGE_NAME):
        """LoadImage -> RegionMaskPair, and with `with_chain` two Region-to-Point Mappings (EmptyLatentImage
        of the image size; one with the image, one without) -> PreviewImage each."""
        ids = self.eval(
            """([name, W, H, chain, scale]) => {
              const app = window.comfyAPI.app.app, LG = window.LiteGraph;
              app.graph.clear();
              const add = (type, pos, size) => {
                const n = LG.createNode(type); n.pos = pos; app.graph.add(n); if (size) n.setSize(size); return n; };
              const li = add("LoadImage", [20, 60]);
              li.widgets.find(w => w.name === "image").value = name;
              const rp = add("RegionMaskPair", [380, 40], [560, 560]);
              li.connect(0, rp, rp.findInputSlot("image"));
              const ids = {load: li.id, pair: rp.id};
              if (chain) {
                const el = add("EmptyLatentImage", [20, 760]);
                el.widgets.find(w => w.name === "width").value = W;
                el.widgets.find(w => w.name === "height").value = H;
                const mp = add("RegionToPointMapping", [1000, 60]);
                rp.connect(0, mp, mp.findInputSlot("region_pairs"));
                el.connect(0, mp, mp.findInputSlot("latent"));
                const pv = add("PreviewImage", [1000, 300], [260, 260]);
                mp.connect(1, pv, pv.findInputSlot("images"));
                // the same regions with the image: the pixel copy-paste preview
                const mq = add("RegionToPointMapping", [1300, 60]);
                rp.connect(0, mq, mq.findInputSlot("region_pairs"));
                el.connect(0, mq, mq.findInputSlot("latent"));
                li.connect(0, mq, mq.findInputSlot("image"));
                const pw = add("PreviewImage", [1300, 300], [260, 260]);
                mq.connect(1, pw, pw.findInputSlot("images"));
                Object.assign(ids, {latent: el.id, map: mp.id, preview: pv.id, copy_preview: pw.id});
              }
              app.canvas.ds.scale = scale; app.canvas.ds.offset = [40, 60];
              app.canvas.setDirty(true, true);
              return ids;
            }""", [image, W, H, with_chain, scale])
        self.wait_editor(ids["pair"])
        self.wait_background(image)
        return ids

    def wait_editor(self, node_id):
        """Until the node's own editor is on the page (Nodes 2.0 mounts it a moment later)."""
        self.page.wait_for_function(
            f"(id) => !!{APP}.graph.getNodeById(id)?.regionEditor?.root.isConnected", arg=node_id, timeout=20_000)

    def wait_background(self, image=None):
        sel = f"{EDITOR} canvas[data-background=loaded]"
        if image:
            sel = f"{EDITOR} canvas[data-background=loaded][data-src*='{urllib.parse.quote(image)}']"
        self.page.wait_for_selector(sel, timeout=30_000)
        self.page.wait_for_timeout(300)  # layout + first frame

    def set_view(self, scale, offset=(40, 60)):
        self.eval(f"([s, o]) => {{ const c = {APP}.canvas; c.ds.scale = s; c.ds.offset = o; c.setDirty(true, true); }}",
                  [scale, list(offset)])
        self.page.wait_for_timeout(400)

    def canvas_box(self):
        return self.page.locator(f"{EDITOR} canvas").bounding_box()

    def client_point(self, x, y):
        """Integer client position for image pixel (x, y), and the image pixel it really is.

        Uses only the canvas' on-screen box: the editor shows the whole image on its canvas, so
        pixel (i, j)'s centre is at ((i + .5) / W, (j + .5) / H) of the box."""
        b = self.canvas_box()
        cx = round(b["x"] + (x + 0.5) / W * b["width"])
        cy = round(b["y"] + (y + 0.5) / H * b["height"])
        return (cx, cy), ((cx - b["x"]) / b["width"] * W - 0.5, (cy - b["y"]) / b["height"] * H - 0.5)

    def click(self, x, y):
        (cx, cy), img = self.client_point(x, y)
        self.page.mouse.click(cx, cy)
        return img

    def drag(self, path, steps=6):
        """Press at path[0], move through the points, release. Returns the image-pixel waypoints."""
        pts = []
        (cx, cy), img = self.client_point(*path[0])
        pts.append(img)
        self.page.mouse.move(cx, cy)
        self.page.mouse.down()
        for p in path[1:]:
            (cx, cy), img = self.client_point(*p)
            pts.append(img)
            self.page.mouse.move(cx, cy, steps=steps)
        self.page.mouse.up()
        return pts

    def button(self, name):
        sel = f"{EDITOR} button[data-tool={name}], {EDITOR} button[data-action={name}]"
        self.page.locator(sel).click()

    def shapes_text(self, node_id):
        return self.eval(f"(id) => {APP}.graph.getNodeById(id).widgets.find(w => w.name === 'shapes').value", node_id)

    def node_box(self, node_id):
        return self.eval(f"(id) => {{ const n = {APP}.graph.getNodeById(id); return [...n.pos, ...n.size]; }}", node_id)

    def editor_state(self, node_id):
        return self.eval(f"""(id) => {{ const ed = {APP}.graph.getNodeById(id).regionEditor;
            return {{pairs: ed.model.pairs.length, error: ed.model.error, state: ed.root.dataset.state,
                     overlay: ed.overlay.hidden ? null : ed.overlay.textContent, status: ed.status.textContent,
                     history: ed.model.history.length}}; }}""", node_id)

    def visible_json_textareas(self):
        """Textareas on the page that are shown and hold shapes JSON."""
        return self.eval("""() => [...document.querySelectorAll('textarea')].filter(t => {
            const r = t.getBoundingClientRect(), s = getComputedStyle(t);
            return r.width > 0 && r.height > 0 && s.display !== 'none' && s.visibility !== 'hidden'
                   && t.value.includes('"pairs"'); }).length""")

    def screenshot(self, name, node_ids):
        out = os.environ.get("REGIONDRAG_SCREENSHOTS")
        if not out:
            return
        os.makedirs(out, exist_ok=True)
        self.page.mouse.move(5, 890)  # no hover cursor in the picture
        self.eval(f"() => {{ {APP}.canvas.deselectAll(); {APP}.canvas.setDirty(true, true); }}")
        self.page.wait_for_timeout(400)
        box = self.eval(f"""(ids) => {{ const app = {APP}, c = app.canvas, r = c.canvas.getBoundingClientRect();
            const th = window.LiteGraph.NODE_TITLE_HEIGHT; let x0 = 1e9, y0 = 1e9, x1 = -1e9, y1 = -1e9;
            for (const id of ids) {{ const n = app.graph.getNodeById(id);
              const [x, y] = c.ds.convertOffsetToCanvas([n.pos[0], n.pos[1] - th]);
              const [u, v] = c.ds.convertOffsetToCanvas([n.pos[0] + n.size[0], n.pos[1] + n.size[1]]);
              x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, u); y1 = Math.max(y1, v); }}
            const ed = document.querySelector('.regiondrag-editor').getBoundingClientRect();
            x0 = Math.min(x0, ed.left - r.left); y0 = Math.min(y0, ed.top - r.top);
            x1 = Math.max(x1, ed.right - r.left); y1 = Math.max(y1, ed.bottom - r.top);
            return {{x: Math.max(0, r.left + x0 - 12), y: Math.max(0, r.top + y0 - 24),
                     width: x1 - x0 + 24, height: y1 - y0 + 36}}; }}""", node_ids)
        self.page.screenshot(path=os.path.join(out, name), clip=box)

    def close(self):
        self.context.close()


@pytest.fixture(scope="module", params=CASES, ids=[f"{f}-{r}" for f, r in CASES])
def page(request, browser, servers):
    frontend, renderer = request.param
    p = Page(browser, servers(frontend), frontend, renderer)
    yield p
    p.close()


@pytest.fixture
def ui(page):
    page.our_errors()
    yield page
    errors = page.our_errors()
    assert not errors, "errors from the RegionDrag editor in the browser console:\n" + "\n".join(errors)


# ------------------------------------------------------------------------------ helpers


def _pairs(text):
    data = json.loads(text)
    assert data["width"] == W and data["height"] == H
    return data["pairs"]


def _assert_points_close(actual, expected, tol=1.0):
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    assert actual.shape == expected.shape, (actual, expected)
    err = np.abs(actual - expected).max()
    assert err <= tol, f"points differ by {err:.2f} px (> {tol}):\n{actual}\nvs\n{expected}"


def _union_masks(shapes_json):
    from regiondrag_core.regions import pairs_from_shapes, parse_shapes

    pairs = pairs_from_shapes(parse_shapes(shapes_json), (H, W))
    return np.any([p.handle for p in pairs], axis=0), np.any([p.target for p in pairs], axis=0)


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def _output_image(ui, entry, node_id):
    """RGB array of the first image a PreviewImage node of the history entry saved."""
    from PIL import Image

    img = entry["outputs"][str(node_id)]["images"][0]
    q = urllib.parse.urlencode({"filename": img["filename"], "subfolder": img["subfolder"], "type": img["type"]})
    return np.asarray(Image.open(io.BytesIO(ui.server.client.get_bytes(f"/view?{q}"))).convert("RGB"))


def _queue_and_wait(ui, timeout=120):
    client = ui.server.client
    before = set(client.get("/history") or {})
    # (queuePrompt's return value is not reliable across front-end versions; node errors are)
    errors = ui.eval(f"async () => {{ await {APP}.queuePrompt(0, 1); return {APP}.lastNodeErrors; }}")
    assert not errors, f"the graph was not queued: {errors}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        new = {k: v for k, v in (client.get("/history") or {}).items() if k not in before}
        for pid, entry in new.items():
            status = entry.get("status", {})
            if status.get("completed") or status.get("status_str") in ("success", "error"):
                assert status.get("status_str") != "error", status
                return entry
        time.sleep(0.25)
    raise TimeoutError("queued graph did not finish")


def _dist_to_polyline(p, way):
    p = np.asarray(p, float)
    best = np.inf
    for a, b in zip(way[:-1], way[1:]):
        a, b = np.asarray(a, float), np.asarray(b, float)
        t = np.clip(np.dot(p - a, b - a) / max(np.dot(b - a, b - a), 1e-12), 0, 1)
        best = min(best, np.linalg.norm(p - (a + t * (b - a))))
    return best


def _canvas_pixel(ui, x, y):
    """RGBA of the editor canvas at image pixel (x, y)."""
    return ui.eval("""([x, y, W, H]) => { const c = document.querySelector('.regiondrag-editor canvas');
        const u = Math.floor((x + 0.5) / W * c.width), v = Math.floor((y + 0.5) / H * c.height);
        return Array.from(c.getContext('2d').getImageData(u, v, 1, 1).data); }""", [x, y, W, H])


def _assert_region_colours(ui, handle_at, target_at):
    """The editor canvas shows the handle tinted red and the target tinted blue."""
    r, g, b, _ = _canvas_pixel(ui, *handle_at)
    assert r > g + 40 and r > b + 40, (r, g, b)
    r, g, b, _ = _canvas_pixel(ui, *target_at)
    assert b > r + 40, (r, g, b)


# ---------------------------------------------------------------------------------- tests


def test_editor_loads_sized_with_json_hidden(ui):
    ids = ui.build_graph(with_chain=False)
    served = ui.server.client.get("/extensions")
    for name in ("regiondrag_editor.js", "regiondrag_panel.js", "regiondrag_model.js", "regiondrag_view.js",
                 "regiondrag_input.js", "regiondrag_geometry.js", "regiondrag_raster.js", "regiondrag_mapping.js"):
        assert f"/extensions/ComfyUI-RegionDrag/js/{name}" in served, served
    css = ui.eval("() => !!document.querySelector('link#regiondrag-editor-css') && "
                  "getComputedStyle(document.querySelector('.regiondrag-editor')).display")
    assert css == "flex", css  # the stylesheet loaded from /extensions/ComfyUI-RegionDrag/css/
    assert ui.eval(f"(id) => !!{APP}.graph.getNodeById(id).regionEditor", ids["pair"])
    st = ui.editor_state(ids["pair"])
    assert st["state"] == "ready" and st["pairs"] == 0
    assert "Click the corners of the handle region (red)" in st["overlay"]
    # the JSON stays in the (serialised) widget, but its textarea is not shown
    assert ui.visible_json_textareas() == 0 and ui.eval(
        "() => [...document.querySelectorAll('textarea')].filter(t => t.offsetParent && t.closest('.lg-node, .dom-widget')"
        " && !t.closest('.regiondrag-editor')).length") == 0
    assert ui.eval("() => document.querySelector('.regiondrag-editor canvas').dataset.imageWidth") == str(W)
    # the canvas fills the editor with the image's aspect (not the 150x150 default)
    box = ui.canvas_box()
    assert box["width"] >= 300 and abs(box["width"] / box["height"] - W / H) < 0.02, box
    ui.screenshot(f"regiondrag_editor_empty_{ui.renderer}.png", [ids["load"], ids["pair"]])


def test_draw_edit_undo_follow_image_reload_and_queue(ui):
    ids = ui.build_graph()
    node = ids["pair"]
    node_box = ui.node_box(node)

    # Pair 1: a 4-corner handle closed on its first corner, a 5-corner target closed with Enter.
    quad_h = [ui.click(x, y) for x, y in [(50, 110), (110, 110), (110, 190), (50, 190)]]
    ui.click(50, 110)
    pent_t = [ui.click(x, y) for x, y in [(150, 120), (215, 115), (230, 160), (210, 195), (150, 190)]]
    ui.page.keyboard.press("Enter")
    pairs = _pairs(ui.shapes_text(node))
    assert len(pairs) == 1
    _assert_points_close(pairs[0]["handle"]["points"], quad_h)
    _assert_points_close(pairs[0]["target"]["points"], pent_t)
    assert ui.visible_json_textareas() == 0

    # Pair 2: brush strokes, drawn at another zoom: still image pixels.
    ui.set_view(0.8, (30, 40))
    ui.button("brush")
    ui.page.locator(f"{EDITOR} input[type=range]").fill("20")
    stroke_h = ui.drag([(275, 140), (285, 165), (275, 185)])
    ui.page.keyboard.press("Enter")
    stroke_t = ui.drag([(320, 150), (340, 170), (330, 200)])
    ui.button("done")
    pairs = _pairs(ui.shapes_text(node))
    assert len(pairs) == 2
    for side, way in (("handle", stroke_h), ("target", stroke_t)):
        strokes = pairs[1][side]["strokes"]
        assert pairs[1][side]["type"] == "brush" and len(strokes) == 1 and strokes[0]["size"] == 20
        pts = np.asarray(strokes[0]["points"])
        # every recorded point lies on the dragged path, which it starts and ends with
        _assert_points_close(pts[[0, -1]], [way[0], way[-1]])
        d = [min(_dist_to_polyline(p, way), 99) for p in pts]
        assert max(d) <= 1.0, d
    ui.set_view(1.0)
    drawn = ui.shapes_text(node)

    # Move the brush target by (-10, +12), then reshape corner 2 of the handle quad by (+15, +5).
    ui.button("select")
    ui.drag([(330, 170), (320, 182)])
    moved = _pairs(ui.shapes_text(node))
    before_t = np.asarray(pairs[1]["target"]["strokes"][0]["points"])
    got_t = np.asarray(moved[1]["target"]["strokes"][0]["points"])
    _assert_points_close(got_t - before_t, np.tile([-10, 12], (len(before_t), 1)))
    assert moved[0] == pairs[0] and moved[1]["handle"] == pairs[1]["handle"]
    after_move = ui.shapes_text(node)
    ui.click(80, 150)  # select the handle quad ...
    ui.drag([(110, 190), (125, 195)])  # ... and drag its corner 2
    reshaped = _pairs(ui.shapes_text(node))
    q = np.asarray(pairs[0]["handle"]["points"])
    _assert_points_close(np.asarray(reshaped[0]["handle"]["points"]) - q, [[0, 0], [0, 0], [15, 5], [0, 0]])
    # undo takes back the reshape only, then the move
    ui.button("undo")
    assert ui.shapes_text(node) == after_move
    ui.button("undo")
    assert ui.shapes_text(node) == drawn
    ui.button("polygon")
    # no drag in the editor moved or resized the node
    assert ui.node_box(node) == node_box
    _assert_region_colours(ui, (60, 118), (160, 130))
    ui.screenshot(f"regiondrag_editor_{ui.renderer}.png", [ids["load"], ids["pair"]])

    # Another file in the connected LoadImage: the editor's background follows.
    before = _canvas_pixel(ui, 10, 10)
    ui.eval(f"([id, name]) => {{ const w = {APP}.graph.getNodeById(id).widgets.find(w => w.name === 'image');"
            f" w.value = name; w.callback?.(name); }}", [ids["load"], IMAGE2_NAME])
    ui.wait_background(IMAGE2_NAME)
    after = _canvas_pixel(ui, 10, 10)
    assert sum(abs(a - b) for a, b in zip(before[:3], after[:3])) > 200, (before, after)
    assert ui.shapes_text(node) == drawn  # same size: the shapes stay as drawn
    ui.eval(f"([id, name]) => {{ const w = {APP}.graph.getNodeById(id).widgets.find(w => w.name === 'image');"
            f" w.value = name; w.callback?.(name); }}", [ids["load"], IMAGE_NAME])
    ui.wait_background(IMAGE_NAME)

    # Queue: Region-to-Point Mapping without an image previews the regions, handle red and
    # target blue on black, as ComfyUI rasterised them from the widget's JSON.
    entry = _queue_and_wait(ui)
    prompt = entry["prompt"][2]
    assert prompt[str(node)]["inputs"]["shapes"] == drawn
    got = _output_image(ui, entry, ids["preview"])
    assert got.shape == (H, W, 3)
    red, blue = got[..., 0] > 127, got[..., 2] > 127
    h_json, t_json = _union_masks(drawn)
    assert np.array_equal(red, h_json) and np.array_equal(blue, t_json)
    # ... and, within a pixel's rounding, the mouse positions converted to image pixels
    mouse = json.dumps({"width": W, "height": H, "pairs": [
        {"handle": {"type": "polygon", "points": quad_h}, "target": {"type": "polygon", "points": pent_t}},
        {"handle": {"type": "brush", "strokes": [{"size": 20, "points": stroke_h}]},
         "target": {"type": "brush", "strokes": [{"size": 20, "points": stroke_t}]}}]})
    h_mouse, t_mouse = _union_masks(mouse)
    assert _iou(red, h_mouse) > 0.95 and _iou(blue, t_mouse) > 0.95, (_iou(red, h_mouse), _iou(blue, t_mouse))

    # The editor's in-canvas preview is the backend's copy-paste preview, pixel for pixel
    # (tests/js/golden pins the masks and maps; here the whole path through the browser's canvas).
    ui.page.wait_for_function(f"(id) => ({APP}.graph.getNodeById(id).regionEditor.bgUrl || '').includes('type=temp')",
                              arg=node, timeout=20_000)
    ui.wait_background()
    # the node's output image is the image the editor shows: not repeated below the editor
    ui.page.wait_for_timeout(700)
    shown = ui.eval("(id) => [...document.querySelectorAll(`[data-node-id='${id}'] .image-preview, [data-node-id='${id}'] img`)]"
                    ".filter(e => e.offsetParent && e.getBoundingClientRect().height > 8).length", node)
    assert shown == 0, f"{shown} output image(s) shown in the RegionMaskPair node"
    ui.button("preview")
    ui.page.wait_for_function(f"(id) => !!{APP}.graph.getNodeById(id).regionEditor.view.previewCache", arg=node)
    url = ui.eval(f"(id) => {APP}.graph.getNodeById(id).regionEditor.view.previewCache.canvas.toDataURL('image/png')",
                  node)
    ui.screenshot(f"regiondrag_editor_preview_{ui.renderer}.png", [ids["load"], ids["pair"]])
    ui.button("preview")
    from PIL import Image
    mine = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")).astype(int)
    backend = _output_image(ui, entry, ids["copy_preview"]).astype(int)
    source = np.asarray(Image.open(os.path.join(ui.server.input_dir, IMAGE_NAME)).convert("RGB")).astype(int)
    changed = np.abs(backend - source).max(-1) > 30
    differ = np.abs(mine - backend).max(-1) > 30
    assert changed.sum() > 1000  # the edit moves visible content
    assert differ.sum() == 0, f"{differ.sum()} of {changed.sum()} edited pixels differ"

    # Save and reload: the front-end restores the workflow, the editor its shapes.
    workflow = ui.eval(f"() => JSON.stringify({APP}.graph.serialize())")
    ui.open(reload=True)
    restored = ui.eval(f"() => {APP}.graph.nodes.filter(n => n.type === 'RegionMaskPair').map(n => n.id)")
    assert restored == [node]
    ui.wait_editor(node)
    ui.wait_background()
    assert ui.shapes_text(node) == drawn
    st = ui.editor_state(node)
    assert st["pairs"] == 2 and st["error"] is None and st["history"] == 0
    assert ui.visible_json_textareas() == 0
    _assert_region_colours(ui, (60, 118), (160, 130))
    # A shared workflow file: load it into an empty graph.
    ui.eval(f"() => {APP}.graph.clear()")
    ui.eval(f"async (wf) => await {APP}.loadGraphData(JSON.parse(wf))", workflow)
    ui.wait_editor(node)
    ui.wait_background()
    assert ui.shapes_text(node) == drawn
    assert ui.editor_state(node)["pairs"] == 2


def test_select_move_delete_keys_stay_in_the_editor(ui):
    ids = ui.build_graph(with_chain=False)
    node = ids["pair"]
    node_box = ui.node_box(node)
    ui.click(40, 40)
    ui.click(100, 40)
    (cx, cy), _ = ui.client_point(70, 90)
    ui.page.mouse.dblclick(cx, cy)  # a double-click places the last corner and closes the polygon
    for x, y in [(200, 40), (260, 40), (230, 90)]:
        ui.click(x, y)
    ui.page.keyboard.press("Enter")
    before = _pairs(ui.shapes_text(node))
    assert [len(before[0][k]["points"]) for k in ("handle", "target")] == [3, 3]
    ui.button("select")
    ui.drag([(70, 60), (90, 75)])  # move the handle triangle by (20, 15)
    moved = _pairs(ui.shapes_text(node))
    _assert_points_close(np.asarray(moved[0]["handle"]["points"]) - before[0]["handle"]["points"],
                         [[20, 15]] * 3)
    assert moved[0]["target"] == before[0]["target"]
    ui.button("undo")
    assert _pairs(ui.shapes_text(node)) == before
    # a drag on empty image area selects nothing and moves nothing, the node included
    ui.drag([(300, 200), (360, 240), (200, 120)])
    assert _pairs(ui.shapes_text(node)) == before
    assert ui.node_box(node) == node_box
    ui.click(230, 60)  # select the target ...
    ui.page.keyboard.press("Delete")  # ... and delete its pair (not the node)
    assert ui.shapes_text(node) == ""
    assert ui.eval(f"(id) => !!{APP}.graph.getNodeById(id)", node)
    st = ui.editor_state(node)
    assert st["pairs"] == 0 and "Click the corners" in st["overlay"]


def test_malformed_json_gets_the_nodes_error_not_a_broken_canvas(ui):
    ids = ui.build_graph()
    node = ids["pair"]
    # the JSON button shows the text in the editor (the node's own text widget stays hidden)
    ui.button("json")
    area = ui.page.locator(f"{EDITOR} textarea.rd-json")
    bad = '{"pairs": [{"handle": {"type": "polygon", "points": [[1, 2], [3'
    area.wait_for(state="visible", timeout=10_000)
    area.fill(bad)
    ui.page.wait_for_function(f"(id) => {APP}.graph.getNodeById(id).regionEditor.model.error", arg=node,
                              timeout=5_000)
    st = ui.editor_state(node)
    assert st["state"] == "error" and "not valid JSON" in st["error"], st
    assert "can't be read" in st["overlay"] and "Clear" in st["overlay"]
    box = ui.canvas_box()
    assert box["width"] > 100 and box["height"] > 60  # the canvas is still laid out and drawn
    ui.screenshot(f"regiondrag_editor_bad_json_{ui.renderer}.png", [ids["pair"]])
    # drawing is off while the text is unreadable: a click must not overwrite the user's text
    ui.click(100, 100)
    assert ui.shapes_text(node) == bad

    # Queuing reports the backend's clear error on the node.
    errors = ui.eval(f"async () => {{ await {APP}.queuePrompt(0, 1); return {APP}.lastNodeErrors; }}")
    assert errors and str(node) in errors, errors
    details = json.dumps(errors[str(node)])
    assert "RegionMaskPair / shapes: not valid JSON" in details, details
    ui.page.keyboard.press("Escape")  # close the error dialog (1.58: the error overlay's close button)
    ui.eval("() => document.querySelectorAll('[data-testid=error-overlay] button').forEach(b => {"
            " if (!/detail/i.test(b.textContent)) b.click(); })")
    # hand-edited valid JSON is picked up; Clear recovers from bad text
    good = json.dumps({"version": 1, "width": W, "height": H, "pairs": [
        {"handle": {"type": "polygon", "points": [[10, 10], [60, 10], [30, 50]]},
         "target": {"type": "polygon", "points": [[110, 10], [160, 10], [130, 50]]}}]})
    area.fill(good)
    st = ui.editor_state(node)
    assert st["state"] == "ready" and st["pairs"] == 1 and ui.shapes_text(node) == good
    area.fill("[1, 2")
    assert ui.editor_state(node)["state"] == "error"
    ui.button("clear")
    st = ui.editor_state(node)
    assert st["state"] == "ready" and st["pairs"] == 0 and ui.shapes_text(node) == ""
    ui.button("json")
    assert ui.visible_json_textareas() == 0


# ------------------------------------------------------------------------------ the example workflows

EXAMPLES = os.path.join(REPO, "example_workflows")
# optional inputs the front-end fills with their defaults when a saved workflow predates them
FILLED_DEFAULTS = {"DDPMInvertAndCache": {"kv_cache", "inversion_batch", "kv_layers"},
                   "RegionDragKSampler": set()}


def test_example_workflows_load_and_queue_as_their_api_twins(ui):
    """Each UI workflow in example_workflows/, loaded by this front-end, gives the prompt of its API
    twin: same nodes, links and values (what the user queues is what the tests run)."""
    names = sorted(f[:-len(".json")] for f in os.listdir(EXAMPLES) if f.endswith(".json"))
    assert len(names) >= 6, names
    for name in names:
        with open(os.path.join(EXAMPLES, f"{name}.json")) as f:
            workflow = f.read()
        with open(os.path.join(EXAMPLES, "api", f"{name}_api.json")) as f:
            api = json.load(f)
        out = ui.eval(f"""async (wf) => {{
            const app = {APP};
            await app.loadGraphData(JSON.parse(wf));
            const p = await app.graphToPrompt();
            return p.output; }}""", workflow)
        assert {k: v["class_type"] for k, v in out.items()} == {k: v["class_type"] for k, v in api.items()}, name
        for k, node in api.items():
            got = dict(out[k]["inputs"])
            for extra in set(got) - set(node["inputs"]):
                assert extra in FILLED_DEFAULTS.get(node["class_type"], set()), (name, node["class_type"], extra)
                del got[extra]
            assert got == node["inputs"], (name, node["class_type"])
        # the pack's nodes load without errors (others may flag a model file this machine lacks)
        for n in ui.eval(f"() => {APP}.graph.nodes.map(n => [n.id, n.type, n.has_errors || false])"):
            assert not (n[2] and n[1] in FILLED_DEFAULTS | {"RegionMaskPair": 0, "RegionToPointMapping": 0}), (name, n)
