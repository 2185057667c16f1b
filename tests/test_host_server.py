"""The pack inside a running ComfyUI server: /object_info, graphs through /prompt, the output cache."""
from __future__ import annotations

import pytest

# Every test here is `compat` but the 256x256 end-to-end run: the older hosts' server, cache and errors are
# covered by the others and by the workflow tests (tests/test_host_workflows.py), at a quarter of its time.
pytestmark = pytest.mark.host

NODE_IDS = {
    "RegionMaskPair": "RegionMaskPair",
    "RegionToPointMapping": "Region-to-Point Mapping",
    "DDPMInvertAndCache": "DDPM Invert-and-Cache",
    "RegionDragKSampler": "RegionDrag KSampler",
}


@pytest.mark.compat
def test_nodes_listed_with_display_names_and_tooltips(comfy_server):
    info = comfy_server.client.get("/object_info")
    for node_id, display in NODE_IDS.items():
        assert node_id in info, f"{node_id} missing from /object_info"
        spec = info[node_id]
        assert spec["display_name"] == display
        inputs = {**spec["input"].get("required", {}), **spec["input"].get("optional", {})}
        assert inputs, node_id
        for name, decl in inputs.items():
            opts = decl[1] if len(decl) > 1 else {}
            assert opts.get("tooltip"), f"{node_id}.{name} has no tooltip"
    assert info["RegionMaskPair"]["output"] == ["REGION_PAIRS"]
    assert info["RegionToPointMapping"]["output"] == ["DRAG_MAP", "IMAGE"]
    assert info["DDPMInvertAndCache"]["output"] == ["INVERSION"]
    assert info["RegionDragKSampler"]["output"] == ["LATENT"]


@pytest.mark.compat
def test_web_extension_is_served(comfy_server):
    exts = comfy_server.client.get("/extensions")
    assert any(e.startswith("/extensions/ComfyUI-RegionDrag/") and e.endswith(".js") for e in exts), exts


# ----------------------------------------------------------------------------- graphs through /prompt

import json  # noqa: E402
import os  # noqa: E402

import numpy as np  # noqa: E402

from comfy_client import PromptError, cached_nodes  # noqa: E402
from graphs import fetch_image, write_test_image  # noqa: E402
from support import REPO  # noqa: E402

EXAMPLE_API = os.path.join(REPO, "example_workflows", "api", "regiondrag_basic_edit_api.json")


def shapes_json(size, handle, target):
    return json.dumps({"version": 1, "width": size, "height": size, "pairs": [
        {"handle": {"type": "polygon", "points": handle}, "target": {"type": "polygon", "points": target}}]})


def mapping_graph(image, shapes, size):
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "RegionMaskPair", "inputs": {"shapes": shapes, "image": ["1", 0]}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "4": {"class_type": "RegionToPointMapping",
              "inputs": {"region_pairs": ["2", 0], "latent": ["3", 0], "image": ["1", 0]}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 1]}},
    }


@pytest.mark.compat
def test_mapping_graph_runs_and_previews_the_copy_paste(comfy_server):
    name = write_test_image(comfy_server)
    shapes = shapes_json(128, [[16, 16], [48, 16], [48, 48], [16, 48]], [[72, 64], [104, 64], [104, 96], [72, 96]])
    entry = comfy_server.client.run(mapping_graph(name, shapes, 128), timeout=120)
    prev = fetch_image(comfy_server, entry, "5").astype(int)
    from PIL import Image
    src = np.asarray(Image.open(os.path.join(comfy_server.input_dir, name)).convert("RGB")).astype(int)
    assert np.abs(prev[64:97, 72:105] - src[16:49, 16:49]).max() <= 2      # target holds the handle pixels
    assert np.abs(prev[:, :60] - src[:, :60]).max() <= 2                    # elsewhere the image is unchanged


def _node_errors(exc):
    body = json.loads(exc.body)
    return body.get("node_errors", {}), body


@pytest.mark.compat
def test_malformed_shapes_rejected_before_running_with_clear_message(comfy_server):
    name = write_test_image(comfy_server)
    with pytest.raises(PromptError) as e:
        comfy_server.client.queue(mapping_graph(name, '{"version": 1, "pairs": [', 128))
    errors, body = _node_errors(e.value)
    text = json.dumps(errors["2"])
    assert "RegionMaskPair / shapes" in text and "JSON" in text


@pytest.mark.parametrize("shapes, expect", [
    (shapes_json(128, [[10, 10], [20, 20], [30, 30]], [[60, 60], [90, 60], [90, 90]]), "pair 1"),
    (shapes_json(128, [[300, 300], [340, 300], [340, 340]], [[60, 60], [90, 60], [90, 90]]), "outside"),
])
@pytest.mark.compat
def test_bad_regions_fail_with_node_input_and_fix(comfy_server, shapes, expect):
    name = write_test_image(comfy_server)
    try:
        comfy_server.client.run(mapping_graph(name, shapes, 128), timeout=120)
    except PromptError as e:
        msg = str(e) + json.dumps(e.body)
    else:
        pytest.fail("the prompt ran")
    assert "RegionMaskPair / shapes" in msg and expect in msg, msg


@pytest.mark.compat
def test_mask_size_must_match_latent(comfy_server):
    name = write_test_image(comfy_server)
    g = mapping_graph(name, shapes_json(128, [[16, 16], [48, 16], [48, 48]], [[72, 64], [104, 64], [104, 96]]), 128)
    g["3"]["inputs"]["width"] = 64
    with pytest.raises(PromptError) as e:
        comfy_server.client.run(g, timeout=120)
    assert "RegionToPointMapping / latent" in str(e.value) and "8" in str(e.value)


def _example_prompt(server, size):
    with open(EXAMPLE_API) as f:
        prompt = json.load(f)
    by_type = {v["class_type"]: k for k, v in prompt.items()}
    prompt[by_type["CheckpointLoaderSimple"]]["inputs"]["ckpt_name"] = "random_sd15.safetensors"
    prompt[by_type["LoadImage"]]["inputs"]["image"] = write_test_image(server, size=256)
    scale = prompt[by_type["ImageScale"]]["inputs"]
    scale["width"] = scale["height"] = size
    return prompt, by_type


@pytest.mark.slow
def test_example_workflow_end_to_end_at_256(comfy_server):
    """The shipped API workflow on the random SD1.5 checkpoint at 256x256 writes an image, running the
    inversion. (A re-edit served from ComfyUI's cache is checked by test_live_browser.py through the
    front-end and by test_host_workflows.py's CP then Encode example.)"""
    prompt, ids = _example_prompt(comfy_server, 256)
    entry = comfy_server.client.run(prompt, timeout=900)
    out = entry["outputs"][ids["SaveImage"]]["images"][0]
    path = os.path.join(comfy_server.output_dir, out["subfolder"], out["filename"])
    from PIL import Image
    assert Image.open(path).size == (256, 256)
    assert ids["DDPMInvertAndCache"] not in cached_nodes(entry)

