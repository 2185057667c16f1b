"""The region editor's browser harness: the (front-end, renderer) matrix, the test pictures, a `Page`
that drives one tab of the ComfyUI front-end with the mouse, and helpers to read what it shows.

Used by tests/test_editor_browser.py and tests/test_live_browser.py (their fixtures and tests); needs
Debian's /usr/bin/chromium and the Python ``playwright`` package (no browser download).
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import time
import urllib.parse
from importlib import metadata

import numpy as np
import pytest

from support import COMFYUI, REPO

CHROMIUM = "/usr/bin/chromium"
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None


IMAGE_NAME = "regiondrag_editor_test.png"
IMAGE2_NAME = "regiondrag_editor_test_night.png"
W, H = 384, 256  # not square: the editor must keep image pixels whatever its on-screen size
APP = "window.comfyAPI.app.app"
EDITOR = ".regiondrag-editor"
OUR_SCRIPT_MARKERS = ("/extensions/ComfyUI-RegionDrag/", "regiondrag_", "RegionDrag editor")
NEWEST_FRONTEND = "1.58.1"  # keep in step with .ci/get-frontend
FRONTEND_ROOT_ENV = "REGIONDRAG_FRONTEND_ROOT_158"




def launch_chromium():
    """Debian's Chromium, headless, under Playwright's sync API: a context manager giving the browser.
    Use it at module scope: while it is open Playwright runs an event loop in this thread, and the
    in-process host tests after the module need the thread free (ComfyUI's loader uses asyncio.run)."""
    from contextlib import contextmanager

    @contextmanager
    def run():
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM,
                                  args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            try:
                yield b
            finally:
                b.close()
    return run()

# ------------------------------------------------------------------------------ the matrix


def host_version() -> tuple:
    try:
        with open(os.path.join(COMFYUI, "comfyui_version.py")) as f:
            return tuple(int(x) for x in f.read().split('"')[1].split(".")[:3])
    except (OSError, IndexError, ValueError, TypeError):
        return (0, 0, 0)


def own_frontend() -> str:
    try:
        return metadata.version("comfyui-frontend-package")
    except metadata.PackageNotFoundError:
        return "own"


FRONTENDS = [own_frontend()]
if COMFYUI and host_version() >= (0, 8, 0):  # 1.58 needs the newer backend's routes
    FRONTENDS.append(NEWEST_FRONTEND)
RENDERERS = ["classic", "vue"]


def renderers(frontend: str) -> list:
    """1.27.x has Nodes 2.0 only as a hidden experimental setting whose Vue nodes render the
    front-end's own widget types and no DOM widget of any pack: classic only there."""
    try:
        version = tuple(int(x) for x in frontend.split(".")[:2])
    except ValueError:
        return RENDERERS
    return ["classic"] if version < (1, 28) else RENDERERS


CASES = [(f, r) for f in FRONTENDS for r in renderers(f)]


def frontend_root(version: str) -> str:
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


class Page:
    """One browser tab on the ComfyUI front-end, with its console errors collected."""

    def __init__(self, browser, server, frontend, renderer):
        self.server = server
        self.frontend = frontend
        self.renderer = renderer
        self.vue = renderer == "vue"
        self.image_size = (W, H)  # the pixels of the image the editor shows (client_point)
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
        w, h = self.image_size
        cx = round(b["x"] + (x + 0.5) / w * b["width"])
        cy = round(b["y"] + (y + 0.5) / h * b["height"])
        return (cx, cy), ((cx - b["x"]) / b["width"] * w - 0.5, (cy - b["y"]) / b["height"] * h - 0.5)

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


# ------------------------------------------------------------------------------ helpers


def pairs_of(text):
    data = json.loads(text)
    assert data["width"] == W and data["height"] == H
    return data["pairs"]


def assert_points_close(actual, expected, tol=1.0):
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    assert actual.shape == expected.shape, (actual, expected)
    err = np.abs(actual - expected).max()
    assert err <= tol, f"points differ by {err:.2f} px (> {tol}):\n{actual}\nvs\n{expected}"


def union_masks(shapes_json):
    from regiondrag_core.masks import pairs_from_shapes
    from regiondrag_core.shapes import parse_shapes

    pairs = pairs_from_shapes(parse_shapes(shapes_json), (H, W))
    return np.any([p.handle for p in pairs], axis=0), np.any([p.target for p in pairs], axis=0)


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def output_image(ui, entry, node_id):
    """RGB array of the first image a PreviewImage node of the history entry saved."""
    from PIL import Image

    img = entry["outputs"][str(node_id)]["images"][0]
    q = urllib.parse.urlencode({"filename": img["filename"], "subfolder": img["subfolder"], "type": img["type"]})
    return np.asarray(Image.open(io.BytesIO(ui.server.client.get_bytes(f"/view?{q}"))).convert("RGB"))


def queue_and_wait(ui, timeout=120):
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


def dist_to_polyline(p, way):
    p = np.asarray(p, float)
    best = np.inf
    for a, b in zip(way[:-1], way[1:]):
        a, b = np.asarray(a, float), np.asarray(b, float)
        t = np.clip(np.dot(p - a, b - a) / max(np.dot(b - a, b - a), 1e-12), 0, 1)
        best = min(best, np.linalg.norm(p - (a + t * (b - a))))
    return best


def canvas_pixel(ui, x, y):
    """RGBA of the editor canvas at image pixel (x, y)."""
    return ui.eval("""([x, y, W, H]) => { const c = document.querySelector('.regiondrag-editor canvas');
        const u = Math.floor((x + 0.5) / W * c.width), v = Math.floor((y + 0.5) / H * c.height);
        return Array.from(c.getContext('2d').getImageData(u, v, 1, 1).data); }""", [x, y, W, H])


def assert_region_colours(ui, handle_at, target_at):
    """The editor canvas shows the handle tinted red and the target tinted blue."""
    r, g, b, _ = canvas_pixel(ui, *handle_at)
    assert r > g + 40 and r > b + 40, (r, g, b)
    r, g, b, _ = canvas_pixel(ui, *target_at)
    assert b > r + 40, (r, g, b)
