"""The region editor (web/js/) in headless Chromium against a real ComfyUI, for every front-end and
both node renderers.

Matrix: (front-end, renderer). Front-ends: the host's own (1.35.9 on ComfyUI 0.8.0, 1.27.10 on
0.3.64) and, on a 0.8+ backend, the newest one on the package index (1.58.1, started with
``--front-end-root``; ``REGIONDRAG_FRONTEND_ROOT_158`` names its static folder, else
``.ci/get-frontend`` fetches it into the cache and a failure to do so fails the tests). Renderers:
the classic LiteGraph canvas and Nodes 2.0 (Vue nodes, setting ``Comfy.VueNodes.Enabled``, switched
before the page loads). 1.27.10 has Nodes 2.0 only as a hidden experimental setting that renders
no pack's DOM widget, so it runs classic only. One server per front-end, one browser, one page
per renderer (the harness: tests/browser_page.py).

Every case drives the front-end with the mouse: draws a polygon pair (4-corner handle, 5-corner
target) and a brush pair, checks the ``shapes`` JSON against the mouse positions converted to image
pixels, moves a region and reshapes one, undoes, changes the connected LoadImage and sees the
background follow, saves and reloads the workflow, and queues: the regions ComfyUI rasterised must
equal the drawn ones. The Points tool places point pairs in a handle region, moves, deletes and
undoes them, and a region + points pair queues with the editor's preview equal to the backend's.
Dragging in the editor must never move or resize the node.

Set REGIONDRAG_SCREENSHOTS=<dir> to save the editor screenshots used in the docs.
"""
from __future__ import annotations

import base64
import io
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from browser_page import (APP, CASES, CHROMIUM, EDITOR, FRONTENDS, H, IMAGE2_NAME, IMAGE_NAME, W, Page,
                          assert_points_close, assert_region_colours, canvas_pixel, dist_to_polyline,
                          frontend_root, iou, launch_chromium, make_test_image, output_image, pairs_of, queue_and_wait,
                          sync_playwright, union_masks)
from support import REPO, start_server

pytestmark = [
    pytest.mark.host,
    pytest.mark.browser,
    pytest.mark.compat,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not found (apt install chromium)"),
    pytest.mark.skipif(sync_playwright is None,
                       reason="Python package 'playwright' not installed (pip install playwright)"),
]


# ------------------------------------------------------------------------------ fixtures


def preview_against_backend(ui, entry, ids, node, screenshot=None):
    """The editor's in-canvas preview (toggled on, read, toggled off) against Region-to-Point Mapping's
    preview output of the queued run: (pixels the edit changed, pixels where the two differ), each a
    boolean map of pixels off by more than 30 levels."""
    from PIL import Image
    ui.button("preview")
    ui.page.wait_for_function(f"(id) => !!{APP}.graph.getNodeById(id).regionEditor.view.previewCache", arg=node)
    url = ui.eval(f"(id) => {APP}.graph.getNodeById(id).regionEditor.view.previewCache.canvas.toDataURL('image/png')",
                  node)
    if screenshot:
        ui.screenshot(screenshot, [ids["load"], node])
    ui.button("preview")
    mine = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")).astype(int)
    backend = output_image(ui, entry, ids["copy_preview"]).astype(int)
    source = np.asarray(Image.open(os.path.join(ui.server.input_dir, IMAGE_NAME)).convert("RGB")).astype(int)
    return np.abs(backend - source).max(-1) > 30, np.abs(mine - backend).max(-1) > 30


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as b:
        yield b


_servers: dict = {}


@pytest.fixture(scope="module")
def servers(request):
    """`get(frontend)`: a running ComfyUI serving that front-end (one per front-end, kept)."""
    def get(frontend):
        if frontend in _servers:
            return _servers[frontend]
        if frontend == FRONTENDS[0]:
            server = request.getfixturevalue("comfy_server")
        else:
            ckpt = request.getfixturevalue("sd15_checkpoint")
            server = start_server(request, [ckpt], extra_args=["--front-end-root", frontend_root(frontend)])
        make_test_image(os.path.join(server.input_dir, IMAGE_NAME))
        make_test_image(os.path.join(server.input_dir, IMAGE2_NAME), night=True)
        _servers[frontend] = server
        return server

    request.addfinalizer(_servers.clear)
    return get


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


# ---------------------------------------------------------------------------------- tests


def test_editor_loads_sized_with_json_hidden(ui):
    ids = ui.build_graph(with_chain=False)
    served = ui.server.client.get("/extensions")
    for name in ("regiondrag_editor.js", "regiondrag_panel.js", "regiondrag_model.js", "regiondrag_view.js",
                 "regiondrag_input.js", "regiondrag_geometry.js", "regiondrag_raster.js", "regiondrag_mapping.js",
                 "regiondrag_points.js"):
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


@pytest.fixture(scope="module")
def drawn(page):
    """On this page: a polygon pair (a 4-corner handle closed on its first corner, a 5-corner target
    closed with Enter) and a brush pair drawn at another zoom, with the mouse; what was drawn where."""
    ui = page
    ids = ui.build_graph()
    node = ids["pair"]
    node_box = ui.node_box(node)
    quad_h = [ui.click(x, y) for x, y in [(50, 110), (110, 110), (110, 190), (50, 190)]]
    ui.click(50, 110)
    pent_t = [ui.click(x, y) for x, y in [(150, 120), (215, 115), (230, 160), (210, 195), (150, 190)]]
    ui.page.keyboard.press("Enter")
    after_polygons = ui.shapes_text(node)
    ui.set_view(0.8, (30, 40))
    ui.button("brush")
    ui.page.locator(f"{EDITOR} input[type=range]").fill("20")
    stroke_h = ui.drag([(275, 140), (285, 165), (275, 185)])
    ui.page.keyboard.press("Enter")
    stroke_t = ui.drag([(320, 150), (340, 170), (330, 200)])
    ui.button("done")
    ui.set_view(1.0)
    return SimpleNamespace(ids=ids, node=node, node_box=node_box, quad_h=quad_h, pent_t=pent_t,
                           after_polygons=after_polygons, stroke_h=stroke_h, stroke_t=stroke_t,
                           text=ui.shapes_text(node))


def test_drawn_polygons_and_brush_strokes_are_stored_in_image_pixels(ui, drawn):
    pairs = pairs_of(drawn.after_polygons)
    assert len(pairs) == 1
    assert_points_close(pairs[0]["handle"]["points"], drawn.quad_h)
    assert_points_close(pairs[0]["target"]["points"], drawn.pent_t)
    pairs = pairs_of(drawn.text)
    assert len(pairs) == 2
    for side, way in (("handle", drawn.stroke_h), ("target", drawn.stroke_t)):
        strokes = pairs[1][side]["strokes"]
        assert pairs[1][side]["type"] == "brush" and len(strokes) == 1 and strokes[0]["size"] == 20
        pts = np.asarray(strokes[0]["points"])
        # every recorded point lies on the dragged path, which it starts and ends with
        assert_points_close(pts[[0, -1]], [way[0], way[-1]])
        d = [min(dist_to_polyline(p, way), 99) for p in pts]
        assert max(d) <= 1.0, d
    assert ui.visible_json_textareas() == 0


def test_move_reshape_and_undo_never_move_the_node(ui, drawn):
    node, pairs = drawn.node, pairs_of(drawn.text)
    # Move the brush target by (-10, +12), then reshape corner 2 of the handle quad by (+15, +5).
    ui.button("select")
    ui.drag([(330, 170), (320, 182)])
    moved = pairs_of(ui.shapes_text(node))
    before_t = np.asarray(pairs[1]["target"]["strokes"][0]["points"])
    got_t = np.asarray(moved[1]["target"]["strokes"][0]["points"])
    assert_points_close(got_t - before_t, np.tile([-10, 12], (len(before_t), 1)))
    assert moved[0] == pairs[0] and moved[1]["handle"] == pairs[1]["handle"]
    after_move = ui.shapes_text(node)
    ui.click(80, 150)  # select the handle quad ...
    ui.drag([(110, 190), (125, 195)])  # ... and drag its corner 2
    reshaped = pairs_of(ui.shapes_text(node))
    q = np.asarray(pairs[0]["handle"]["points"])
    assert_points_close(np.asarray(reshaped[0]["handle"]["points"]) - q, [[0, 0], [0, 0], [15, 5], [0, 0]])
    # undo takes back the reshape only, then the move
    ui.button("undo")
    assert ui.shapes_text(node) == after_move
    ui.button("undo")
    assert ui.shapes_text(node) == drawn.text
    ui.button("polygon")
    # no drag in the editor moved or resized the node
    assert ui.node_box(node) == drawn.node_box
    assert_region_colours(ui, (60, 118), (160, 130))
    ui.screenshot(f"regiondrag_editor_{ui.renderer}.png", [drawn.ids["load"], node])


def test_background_follows_the_connected_image(ui, drawn):
    load = drawn.ids["load"]
    before = canvas_pixel(ui, 10, 10)
    ui.eval(f"([id, name]) => {{ const w = {APP}.graph.getNodeById(id).widgets.find(w => w.name === 'image');"
            f" w.value = name; w.callback?.(name); }}", [load, IMAGE2_NAME])
    ui.wait_background(IMAGE2_NAME)
    after = canvas_pixel(ui, 10, 10)
    assert sum(abs(a - b) for a, b in zip(before[:3], after[:3])) > 200, (before, after)
    assert ui.shapes_text(drawn.node) == drawn.text  # same size: the shapes stay as drawn
    ui.eval(f"([id, name]) => {{ const w = {APP}.graph.getNodeById(id).widgets.find(w => w.name === 'image');"
            f" w.value = name; w.callback?.(name); }}", [load, IMAGE_NAME])
    ui.wait_background(IMAGE_NAME)


def test_queued_regions_and_in_canvas_preview_equal_the_backends(ui, drawn):
    node, ids = drawn.node, drawn.ids
    # Queue: Region-to-Point Mapping without an image previews the regions, handle red and
    # target blue on black, as ComfyUI rasterised them from the widget's JSON.
    entry = queue_and_wait(ui)
    prompt = entry["prompt"][2]
    assert prompt[str(node)]["inputs"]["shapes"] == drawn.text
    got = output_image(ui, entry, ids["preview"])
    assert got.shape == (H, W, 3)
    red, blue = got[..., 0] > 127, got[..., 2] > 127
    h_json, t_json = union_masks(drawn.text)
    assert np.array_equal(red, h_json) and np.array_equal(blue, t_json)
    # ... and, within a pixel's rounding, the mouse positions converted to image pixels
    mouse = json.dumps({"width": W, "height": H, "pairs": [
        {"handle": {"type": "polygon", "points": drawn.quad_h}, "target": {"type": "polygon", "points": drawn.pent_t}},
        {"handle": {"type": "brush", "strokes": [{"size": 20, "points": drawn.stroke_h}]},
         "target": {"type": "brush", "strokes": [{"size": 20, "points": drawn.stroke_t}]}}]})
    h_mouse, t_mouse = union_masks(mouse)
    assert iou(red, h_mouse) > 0.95 and iou(blue, t_mouse) > 0.95, (iou(red, h_mouse), iou(blue, t_mouse))

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
    changed, differ = preview_against_backend(ui, entry, ids, node,
                                              screenshot=f"regiondrag_editor_preview_{ui.renderer}.png")
    assert changed.sum() > 1000  # the edit moves visible content
    assert differ.sum() == 0, f"{differ.sum()} of {changed.sum()} edited pixels differ"


def test_save_reload_and_shared_file_restore_the_shapes(ui, drawn):
    node = drawn.node
    workflow = ui.eval(f"() => JSON.stringify({APP}.graph.serialize())")
    ui.open(reload=True)   # the front-end restores the workflow, the editor its shapes
    restored = ui.eval(f"() => {APP}.graph.nodes.filter(n => n.type === 'RegionMaskPair').map(n => n.id)")
    assert restored == [node]
    ui.wait_editor(node)
    ui.wait_background()
    assert ui.shapes_text(node) == drawn.text
    st = ui.editor_state(node)
    assert st["pairs"] == 2 and st["error"] is None and st["history"] == 0
    assert ui.visible_json_textareas() == 0
    assert_region_colours(ui, (60, 118), (160, 130))
    # A shared workflow file: load it into an empty graph.
    ui.eval(f"() => {APP}.graph.clear()")
    ui.eval(f"async (wf) => await {APP}.loadGraphData(JSON.parse(wf))", workflow)
    ui.wait_editor(node)
    ui.wait_background()
    assert ui.shapes_text(node) == drawn.text
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
    before = pairs_of(ui.shapes_text(node))
    assert [len(before[0][k]["points"]) for k in ("handle", "target")] == [3, 3]
    ui.button("select")
    ui.drag([(70, 60), (90, 75)])  # move the handle triangle by (20, 15)
    moved = pairs_of(ui.shapes_text(node))
    assert_points_close(np.asarray(moved[0]["handle"]["points"]) - before[0]["handle"]["points"],
                         [[20, 15]] * 3)
    assert moved[0]["target"] == before[0]["target"]
    ui.button("undo")
    assert pairs_of(ui.shapes_text(node)) == before
    # a drag on empty image area selects nothing and moves nothing, the node included
    ui.drag([(300, 200), (360, 240), (200, 120)])
    assert pairs_of(ui.shapes_text(node)) == before
    assert ui.node_box(node) == node_box
    ui.click(230, 60)  # select the target ...
    ui.page.keyboard.press("Delete")  # ... and delete its pair (not the node)
    assert ui.shapes_text(node) == ""
    assert ui.eval(f"(id) => !!{APP}.graph.getNodeById(id)", node)
    st = ui.editor_state(node)
    assert st["pairs"] == 0 and "Click the corners" in st["overlay"]


def _point_arrows(ui, node):
    """The point-pair arrows of the editor's last frame: [{pair, index, from, to}] in image pixels
    (the view lists them in canvas pixels), and the canvas RGBA at the middle of each shaft."""
    return ui.eval(f"""(id) => {{ const ed = {APP}.graph.getNodeById(id).regionEditor, v = ed.view, c = v.canvas;
        const W = ed.model.W, H = ed.model.H;
        const img = ([u, w]) => [u / c.width * W - 0.5, w / c.height * H - 0.5];
        return v.pointArrows.map(a => {{
          const u = Math.floor((a.from[0] + a.to[0]) / 2), w = Math.floor((a.from[1] + a.to[1]) / 2);
          return {{pair: a.pair, index: a.index, from: img(a.from), to: img(a.to),
                   mid: Array.from(v.ctx.getImageData(u, w, 1, 1).data)}}; }}); }}""", node)


def _wait_arrows(ui, node, n):
    ui.page.wait_for_function(
        f"([id, n]) => {APP}.graph.getNodeById(id).regionEditor.view.pointArrows.length === n", arg=[node, n],
        timeout=5_000)
    ui.page.wait_for_timeout(100)


def test_points_tool_places_moves_deletes_and_undoes_point_pairs(ui):
    """Points tool: a handle polygon, then two point pairs (handle point inside it, then its target);
    the widget holds a version 2 pair with the clicked points in image pixels and each pair is drawn
    as an arrow with its head on the target; a handle point outside the region is refused with a
    message; a target point is dragged, a point pair deleted with the Delete key; Undo and Redo."""
    ids = ui.build_graph(with_chain=False)
    node = ids["pair"]
    node_box = ui.node_box(node)
    quad = [ui.click(x, y) for x, y in [(40, 60), (200, 60), (200, 180), (40, 180)]]
    ui.click(40, 60)
    assert ui.shapes_text(node) == ""  # a handle region alone is not saved: no target, no points yet
    ui.button("points")
    assert "Click inside pair 1's handle region" in ui.editor_state(node)["status"]
    h1, t1 = ui.click(80, 100), ui.click(140, 100)  # a horizontal arrow
    h2, t2 = ui.click(170, 150), ui.click(260, 200)
    placed = ui.shapes_text(node)
    data = json.loads(placed)
    assert data["version"] == 2
    pairs = pairs_of(placed)
    assert len(pairs) == 1 and "target" not in pairs[0]
    assert_points_close(pairs[0]["handle"]["points"], quad)
    assert_points_close([q["handle"] for q in pairs[0]["points"]], [h1, h2], tol=0.5)
    assert_points_close([q["target"] for q in pairs[0]["points"]], [t1, t2], tol=0.5)
    # each point pair is an arrow from its handle point to its target point (the head)
    _wait_arrows(ui, node, 2)
    arrows = _point_arrows(ui, node)
    for a, (h, t) in zip(arrows, [(h1, t1), (h2, t2)]):
        assert_points_close([a["from"], a["to"]], [h, t], tol=0.5)
    r, g, b, _ = arrows[0]["mid"]
    assert min(r, g, b) > 230, arrows[0]["mid"]  # the shaft's white core, drawn over the region
    # a handle point outside the handle region is refused, with the editor's message
    ui.click(330, 40)
    st = ui.editor_state(node)
    assert "A handle point goes inside a handle region" in st["status"], st
    assert ui.shapes_text(node) == placed
    # drag the target of point pair 1 by (+20, +30)
    ui.drag([(140, 100), (160, 130)])
    after_move = ui.shapes_text(node)
    moved = pairs_of(after_move)[0]["points"]
    assert_points_close(moved[0]["target"], [t1[0] + 20, t1[1] + 30])
    assert moved[0]["handle"] == pairs[0]["points"][0]["handle"] and moved[1] == pairs[0]["points"][1]
    # select point pair 2 by its handle point, delete it with the Delete key
    ui.click(170, 150)
    assert "point pair 2, handle point selected" in ui.editor_state(node)["status"]
    ui.page.keyboard.press("Delete")
    left = pairs_of(ui.shapes_text(node))[0]["points"]
    assert left == moved[:1]
    _wait_arrows(ui, node, 1)
    # Undo takes back the deletion, then the move; Redo the move again
    ui.button("undo")
    assert ui.shapes_text(node) == after_move
    ui.button("undo")
    assert ui.shapes_text(node) == placed
    ui.button("redo")
    assert ui.shapes_text(node) == after_move
    _wait_arrows(ui, node, 2)
    assert ui.editor_state(node)["pairs"] == 1
    assert ui.node_box(node) == node_box
    ui.screenshot(f"regiondrag_editor_points_{ui.renderer}.png", [ids["load"], node])


def test_points_pair_queues_and_previews_as_the_backend(ui):
    """A region + points pair drawn with the mouse queues as drawn, and the editor's in-canvas preview
    (regiondrag_points.js) equals Region-to-Point Mapping's copy-paste preview, pixel for pixel."""
    ids = ui.build_graph()
    node = ids["pair"]
    for x, y in [(60, 150), (150, 140), (160, 200), (70, 215)]:
        ui.click(x, y)
    ui.page.keyboard.press("Enter")
    ui.button("points")
    for h, t in [((75, 160), (190, 120)), ((145, 195), (250, 170)), ((110, 175), (215, 150))]:
        ui.click(*h)
        ui.click(*t)
    text = ui.shapes_text(node)
    assert json.loads(text)["version"] == 2 and len(pairs_of(text)[0]["points"]) == 3
    entry = queue_and_wait(ui)
    assert entry["prompt"][2][str(node)]["inputs"]["shapes"] == text
    ui.page.wait_for_function(f"(id) => ({APP}.graph.getNodeById(id).regionEditor.bgUrl || '').includes('type=temp')",
                              arg=node, timeout=20_000)
    ui.wait_background()
    changed, differ = preview_against_backend(ui, entry, ids, node)
    assert changed.sum() > 500  # the point pairs move visible content
    assert differ.sum() == 0, f"{differ.sum()} of {changed.sum()} edited pixels differ"


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
FILLED_DEFAULTS = {"DDPMInvertAndCache": {"kv_cache", "inversion_batch", "kv_layers", "cfg", "method"},
                   "RegionDragKSampler": {"cfg"}}


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
