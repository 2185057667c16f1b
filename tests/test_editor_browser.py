"""The region editor (web/js/regiondrag_editor.js) in headless Chromium against a real ComfyUI.

Drives the ComfyUI front-end with mouse events: draws polygon and brush pairs on RegionMaskPair,
checks the `shapes` JSON against the mouse positions converted to image pixels, queues the graph
and compares the regions ComfyUI rasterised with masks rasterised here by regiondrag_core, reloads
the page and the workflow, and feeds the widget malformed JSON.

Needs Debian's /usr/bin/chromium and the Python `playwright` package (no browser download).
Set REGIONDRAG_SCREENSHOTS=<dir> to save the editor screenshots used in the docs.
"""
from __future__ import annotations

import base64
import io
import json
import os
import time
import urllib.parse

import numpy as np
import pytest

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
W, H = 384, 256  # not square: the editor must keep image pixels whatever its on-screen size
APP = "window.comfyAPI.app.app"
EDITOR = ".regiondrag-editor"
OUR_SCRIPT_MARKERS = ("/extensions/ComfyUI-RegionDrag/", "regiondrag_", "RegionDrag editor")


def make_test_image(path: str) -> None:
    """A small synthetic landscape (sky, mountains, a house, a tree) for drawing on."""
    from PIL import Image, ImageDraw

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
    img.save(path)


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def browser(comfy_server):
    make_test_image(str(comfy_server.base / "input" / IMAGE_NAME))
    # A returning user: no template browser over the canvas on first load.
    comfy_server.client.post("/settings", {"Comfy.TutorialCompleted": True})
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


class Page:
    """One browser tab on the ComfyUI front-end, with its console errors collected."""

    def __init__(self, browser, server):
        self.server = server
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.console = []  # (type, text, url)
        self.page_errors = []
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

    def eval(self, js, arg=None):
        return self.page.evaluate(js, arg)

    def our_errors(self):
        """Errors and warnings from this pack's script, and uncaught exceptions raised in it.

        The front-ends log some errors of their own (missing user.css, the offline release
        check; 1.27.10 throws once in its settings code at start-up): those are not counted."""
        ours = [f"{t}: {text} @ {url}" for t, text, url in self.console
                if t in ("error", "warning") and any(k in text or k in url for k in OUR_SCRIPT_MARKERS)]
        return ours + [f"pageerror: {e}" for e in self.page_errors if any(k in e for k in OUR_SCRIPT_MARKERS)]

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
              const rp = add("RegionMaskPair", [380, 60], [560, 520]);
              li.connect(0, rp, rp.findInputSlot("image"));
              const ids = {load: li.id, pair: rp.id};
              if (chain) {
                const el = add("EmptyLatentImage", [20, 700]);
                el.widgets.find(w => w.name === "width").value = W;
                el.widgets.find(w => w.name === "height").value = H;
                const mp = add("RegionToPointMapping", [980, 60]);
                rp.connect(0, mp, mp.findInputSlot("region_pairs"));
                el.connect(0, mp, mp.findInputSlot("latent"));
                const pv = add("PreviewImage", [980, 260], [260, 260]);
                mp.connect(1, pv, pv.findInputSlot("images"));
                // the same regions with the image: the pixel copy-paste preview
                const mq = add("RegionToPointMapping", [1260, 60]);
                rp.connect(0, mq, mq.findInputSlot("region_pairs"));
                el.connect(0, mq, mq.findInputSlot("latent"));
                li.connect(0, mq, mq.findInputSlot("image"));
                const pw = add("PreviewImage", [1260, 260], [260, 260]);
                mq.connect(1, pw, pw.findInputSlot("images"));
                Object.assign(ids, {latent: el.id, map: mp.id, preview: pv.id, copy_preview: pw.id});
              }
              app.canvas.ds.scale = scale; app.canvas.ds.offset = [60, 90];
              app.canvas.setDirty(true, true);
              return ids;
            }""", [image, W, H, with_chain, scale])
        self.wait_background()
        return ids

    def wait_background(self):
        self.page.wait_for_selector(f"{EDITOR} canvas[data-background=loaded]", timeout=30_000)
        self.page.wait_for_timeout(300)  # layout + first frame

    def set_view(self, scale, offset=(60, 90)):
        self.eval(f"([s, o]) => {{ const c = {APP}.canvas; c.ds.scale = s; c.ds.offset = o; c.setDirty(true, true); }}",
                  [scale, list(offset)])
        self.page.wait_for_timeout(300)

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

    def editor_state(self, node_id):
        return self.eval(f"""(id) => {{ const ed = {APP}.graph.getNodeById(id).regionEditor;
            return {{pairs: ed.pairs.length, error: ed.error, state: ed.root.dataset.state,
                     overlay: ed.overlay.hidden ? null : ed.overlay.textContent, status: ed.status.textContent}}; }}""",
                         node_id)

    def screenshot(self, name, node_ids):
        out = os.environ.get("REGIONDRAG_SCREENSHOTS")
        if not out:
            return
        os.makedirs(out, exist_ok=True)
        self.page.mouse.move(5, 890)  # no hover cursor in the picture
        self.eval(f"() => {{ {APP}.canvas.deselectAll(); {APP}.canvas.setDirty(true, true); }}")
        self.page.wait_for_timeout(300)
        box = self.eval(f"""(ids) => {{ const app = {APP}, c = app.canvas, r = c.canvas.getBoundingClientRect();
            const th = window.LiteGraph.NODE_TITLE_HEIGHT; let x0 = 1e9, y0 = 1e9, x1 = -1e9, y1 = -1e9;
            for (const id of ids) {{ const n = app.graph.getNodeById(id);
              const [x, y] = c.ds.convertOffsetToCanvas([n.pos[0], n.pos[1] - th]);
              const [u, v] = c.ds.convertOffsetToCanvas([n.pos[0] + n.size[0], n.pos[1] + n.size[1]]);
              x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, u); y1 = Math.max(y1, v); }}
            return {{x: r.left + x0 - 12, y: r.top + y0 - 24, width: x1 - x0 + 24, height: y1 - y0 + 36}}; }}""",
                        node_ids)
        self.page.screenshot(path=os.path.join(out, name), clip=box)

    def close(self):
        self.context.close()


@pytest.fixture
def ui(browser, comfy_server):
    page = Page(browser, comfy_server)
    yield page
    errors = page.our_errors()
    page.close()
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


# ---------------------------------------------------------------------------------- tests


def test_extension_loads_without_errors_and_tells_what_to_click(ui):
    ids = ui.build_graph(with_chain=False)
    served = ui.server.client.get("/extensions")
    for name in ("regiondrag_editor.js", "regiondrag_geometry.js"):
        assert f"/extensions/ComfyUI-RegionDrag/js/{name}" in served, served
    # the module ran (it registered its extension) and hooked the node
    assert ui.eval(f"(id) => !!{APP}.graph.getNodeById(id).regionEditor", ids["pair"])
    st = ui.editor_state(ids["pair"])
    assert st["state"] == "ready" and st["pairs"] == 0
    assert "Click the corners of the handle region (red)" in st["overlay"]
    # the JSON textarea is hidden but still serialised into the workflow and the prompt
    hidden = ui.eval(f"(id) => {APP}.graph.getNodeById(id).widgets.find(w => w.name === 'shapes').hidden", ids["pair"])
    assert hidden is True
    assert ui.eval(f"() => document.querySelector('{EDITOR} canvas').dataset.imageWidth") == str(W)
    ui.screenshot("regiondrag_editor_empty.png", [ids["load"], ids["pair"]])


def test_draw_quad_and_brush_pairs_queue_and_reload(ui):
    ids = ui.build_graph()
    node = ids["pair"]

    # Pair 1: quadrilaterals by clicking corners; the handle closes on its first corner, the
    # target with Enter.
    quad_h = [ui.click(x, y) for x, y in [(50, 110), (110, 110), (110, 190), (50, 190)]]
    ui.click(50, 110)
    quad_t = [ui.click(x, y) for x, y in [(150, 120), (215, 115), (220, 195), (150, 190)]]
    ui.page.keyboard.press("Enter")
    pairs = _pairs(ui.shapes_text(node))
    assert len(pairs) == 1
    _assert_points_close(pairs[0]["handle"]["points"], quad_h)
    _assert_points_close(pairs[0]["target"]["points"], quad_t)

    # Pair 2: brush strokes, drawn at another zoom and node size: still image pixels.
    ui.set_view(0.8, (40, 40))
    ui.eval(f"(id) => {APP}.graph.getNodeById(id).setSize([500, 470])", node)
    ui.page.wait_for_timeout(300)
    ui.button("brush")
    ui.page.locator(f"{EDITOR} input[type=range]").fill("20")
    stroke_h = ui.drag([(275, 140), (285, 165), (275, 185)])
    ui.page.keyboard.press("Enter")
    stroke_t = ui.drag([(320, 150), (340, 170), (330, 200)])
    ui.button("done")
    text = ui.shapes_text(node)
    pairs = _pairs(text)
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
    ui.eval(f"(id) => {APP}.graph.getNodeById(id).setSize([560, 520])", node)
    ui.page.wait_for_timeout(300)
    assert ui.shapes_text(node) == text  # resizing the view changes no coordinate
    ui.screenshot("regiondrag_editor.png", [ids["load"], ids["pair"]])
    ui.button("preview")
    ui.page.wait_for_timeout(300)
    ui.screenshot("regiondrag_editor_preview.png", [ids["load"], ids["pair"]])
    ui.button("preview")

    # Queue the graph: Region-to-Point Mapping without an image previews the regions, handle red
    # and target blue on black, as ComfyUI rasterised them from the widget's JSON.
    entry = _queue_and_wait(ui)
    prompt = entry["prompt"][2]
    assert prompt[str(node)]["inputs"]["shapes"] == text
    got = _output_image(ui, entry, ids["preview"])
    assert got.shape == (H, W, 3)
    red, blue = got[..., 0] > 127, got[..., 2] > 127
    # exactly the widget's shapes ...
    h_json, t_json = _union_masks(text)
    assert np.array_equal(red, h_json) and np.array_equal(blue, t_json)
    # ... and, within a pixel's rounding, the mouse positions converted to image pixels
    drawn = json.dumps({"width": W, "height": H, "pairs": [
        {"handle": {"type": "polygon", "points": quad_h}, "target": {"type": "polygon", "points": quad_t}},
        {"handle": {"type": "brush", "strokes": [{"size": 20, "points": stroke_h}]},
         "target": {"type": "brush", "strokes": [{"size": 20, "points": stroke_t}]}}]})
    h_mouse, t_mouse = _union_masks(drawn)
    assert _iou(red, h_mouse) > 0.95 and _iou(blue, t_mouse) > 0.95, (_iou(red, h_mouse), _iou(blue, t_mouse))

    # After the run the editor shows the node's executed image (the input image, from /view).
    ui.page.wait_for_function(f"(id) => ({APP}.graph.getNodeById(id).regionEditor.bgUrl || '').includes('type=temp')",
                              arg=node, timeout=20_000)
    ui.wait_background()

    # The editor's in-canvas preview is the backend's copy-paste preview, up to edge pixels.
    ui.button("preview")
    ui.page.wait_for_function(f"(id) => !!{APP}.graph.getNodeById(id).regionEditor.previewCache", arg=node)
    url = ui.eval(f"(id) => {APP}.graph.getNodeById(id).regionEditor.previewCache.canvas.toDataURL('image/png')", node)
    ui.button("preview")
    from PIL import Image
    mine = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")).astype(int)
    backend = _output_image(ui, entry, ids["copy_preview"]).astype(int)
    source = np.asarray(Image.open(ui.server.base / "input" / IMAGE_NAME).convert("RGB")).astype(int)
    changed = np.abs(backend - source).max(-1) > 30
    differ = np.abs(mine - backend).max(-1) > 30
    assert changed.sum() > 1000  # the edit moves visible content
    assert differ.sum() <= 0.05 * changed.sum(), f"{differ.sum()} of {changed.sum()} edited pixels differ"

    # Reload the page: the front-end restores the workflow, the editor its shapes.
    workflow = ui.eval(f"() => JSON.stringify({APP}.graph.serialize())")
    ui.open(reload=True)
    restored = ui.eval(f"() => {APP}.graph.nodes.filter(n => n.type === 'RegionMaskPair').map(n => n.id)")
    assert restored == [node]
    ui.wait_background()
    assert ui.shapes_text(node) == text
    assert ui.editor_state(node)["pairs"] == 2
    _assert_region_colours(ui)

    # A shared workflow file: load it into an empty graph.
    ui.eval(f"() => {APP}.graph.clear()")
    ui.eval(f"async (wf) => await {APP}.loadGraphData(JSON.parse(wf))", workflow)
    ui.wait_background()
    assert ui.shapes_text(node) == text
    st = ui.editor_state(node)
    assert st["pairs"] == 2 and st["error"] is None


def _dist_to_polyline(p, way):
    p = np.asarray(p, float)
    best = np.inf
    for a, b in zip(way[:-1], way[1:]):
        a, b = np.asarray(a, float), np.asarray(b, float)
        t = np.clip(np.dot(p - a, b - a) / max(np.dot(b - a, b - a), 1e-12), 0, 1)
        best = min(best, np.linalg.norm(p - (a + t * (b - a))))
    return best


def _assert_region_colours(ui):
    """The editor canvas shows the handle tinted red and the target tinted blue."""
    def pixel(x, y):
        return ui.eval("""([x, y, W, H]) => { const c = document.querySelector('.regiondrag-editor canvas');
            const u = Math.floor((x + 0.5) / W * c.width), v = Math.floor((y + 0.5) / H * c.height);
            return Array.from(c.getContext('2d').getImageData(u, v, 1, 1).data); }""", [x, y, W, H])
    r, g, b, _ = pixel(60, 118)  # inside the handle quad, away from its number badge
    assert r > g + 40 and r > b + 40, (r, g, b)
    r, g, b, _ = pixel(160, 130)  # inside the target quad
    assert b > r + 40, (r, g, b)


def test_select_move_undo_delete(ui):
    ids = ui.build_graph(with_chain=False)
    node = ids["pair"]
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
    ui.click(230, 60)  # select the target ...
    ui.page.keyboard.press("Delete")  # ... and delete its pair (not the node)
    assert ui.shapes_text(node) == ""
    assert ui.eval(f"(id) => !!{APP}.graph.getNodeById(id)", node)
    st = ui.editor_state(node)
    assert st["pairs"] == 0 and "Click the corners" in st["overlay"]


def test_malformed_json_gets_the_nodes_error_not_a_broken_canvas(ui):
    ids = ui.build_graph()
    node = ids["pair"]
    ui.button("json")
    area = ui.page.locator("textarea.comfy-multiline-input")
    area.wait_for(state="visible")
    area.fill('{"pairs": [{"handle": {"type": "polygon", "points": [[1, 2], [3')
    ui.page.wait_for_timeout(300)
    st = ui.editor_state(node)
    assert st["state"] == "error" and "not valid JSON" in st["error"], st
    assert "can't be read" in st["overlay"] and "Clear" in st["overlay"]
    box = ui.canvas_box()
    assert box["width"] > 100 and box["height"] > 60  # the canvas is still laid out and drawn
    ui.screenshot("regiondrag_editor_bad_json.png", [ids["pair"]])
    # drawing is off while the text is unreadable: a click must not overwrite the user's text
    ui.click(100, 100)
    assert ui.shapes_text(node).startswith('{"pairs": [{"handle"')

    # Queuing reports the backend's clear error on the node.
    errors = ui.eval(f"async () => {{ await {APP}.queuePrompt(0, 1); return {APP}.lastNodeErrors; }}")
    assert errors and str(node) in errors, errors
    details = json.dumps(errors[str(node)])
    assert "RegionMaskPair / shapes: not valid JSON" in details, details
    ui.page.keyboard.press("Escape")  # close the error dialog

    # Hand-edited valid JSON is picked up; Clear recovers from bad text.
    area.fill(json.dumps({"version": 1, "width": W, "height": H, "pairs": [
        {"handle": {"type": "polygon", "points": [[10, 10], [60, 10], [30, 50]]},
         "target": {"type": "polygon", "points": [[110, 10], [160, 10], [130, 50]]}}]}))
    ui.page.wait_for_timeout(200)
    st = ui.editor_state(node)
    assert st["state"] == "ready" and st["pairs"] == 1
    area.fill("[1, 2")
    assert ui.editor_state(node)["state"] == "error"
    ui.button("clear")
    st = ui.editor_state(node)
    assert st["state"] == "ready" and st["pairs"] == 0 and ui.shapes_text(node) == ""
