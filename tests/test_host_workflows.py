"""The example workflows that chain RegionDrag with other nodes, run through ``/prompt`` on a real
ComfyUI with random-weight models in the real file layouts (SD1.5 checkpoint, SD1.5 ControlNet,
kohya LoRA), at 128x128 on the CPU.

Each API twin runs as shipped (only file names, the image size and the number of steps changed: 6
instead of 20, so 3 inversion and 3 denoising steps). Beyond "it runs":
* ControlNet and LoRA reach the edit: the same graph with the ControlNet's or the LoRA's strength
  at 0 gives another image.
* Combined prompts keep the image: with the handle region dropped onto itself and no handle noise,
  the edit decodes to exactly the picture VAE Decode makes of the input latent (keys/values of the
  two prompt entries must not overwrite each other for that).
* The upscale chain writes the edit at 128 and the upscaled picture at 128 x 1.5 x 2 = 384.
"""
from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest

from comfy_client import cached_nodes
from graphs import fetch_image, write_test_image
from support import REPO

pytestmark = pytest.mark.host

API = os.path.join(REPO, "example_workflows", "api")
SIZE = 128
CONTROLNET = "random_controlnet_sd15.safetensors"
LORA = "random_lora_sd15.safetensors"


@pytest.fixture(scope="module")
def server(comfyui, comfy_server, addon_files):
    """The session's server, with the random ControlNet and LoRA in its model folders."""
    for folder, path in addon_files.items():
        d = os.path.join(comfy_server.base, "models", folder)
        os.makedirs(d, exist_ok=True)
        link = os.path.join(d, os.path.basename(path))
        if not os.path.lexists(link):
            os.symlink(path, link)
    write_test_image(comfy_server, name="example.png", size=256)
    return comfy_server


def load(name: str, size: int = SIZE):
    """The API twin ``name`` with the random files, the test image and ``size``; (prompt, ids by type)."""
    with open(os.path.join(API, f"{name}_api.json")) as f:
        prompt = json.load(f)
    ids: dict = {}
    for k, v in prompt.items():
        ids.setdefault(v["class_type"], []).append(k)
    ins = {k: v["inputs"] for k, v in prompt.items()}
    ins[ids["CheckpointLoaderSimple"][0]]["ckpt_name"] = "random_sd15.safetensors"
    for k in ids.get("ControlNetLoader", []):
        ins[k]["control_net_name"] = CONTROLNET
    for k in ids.get("LoraLoader", []):
        ins[k]["lora_name"] = LORA
    scale = ins[ids["ImageScale"][0]]
    scale["width"] = scale["height"] = size
    for k in ids.get("DDPMInvertAndCache", []):   # 3 inversion + 3 denoising steps: the plumbing, on a CPU
        ins[k]["steps"] = 6
    return prompt, {t: v[0] if len(v) == 1 else v for t, v in ids.items()}


def saved(server, entry, node_id):
    return fetch_image(server, entry, node_id).astype(np.int16)


def run(server, prompt):
    return server.client.run(prompt, timeout=1200)


def _log(server) -> str:
    with open(server.log_path) as f:
        return f.read()


def test_controlnet_example_runs_and_the_controlnet_reaches_the_edit(server):
    prompt, ids = load("regiondrag_controlnet_edit")
    entry = run(server, prompt)
    edited = saved(server, entry, ids["SaveImage"])
    assert edited.shape == (SIZE, SIZE, 3)
    assert ids["DDPMInvertAndCache"] not in cached_nodes(entry)

    off = copy.deepcopy(prompt)
    off[ids["ControlNetApplyAdvanced"]]["inputs"]["strength"] = 0.0
    plain = saved(server, run(server, off), ids["SaveImage"])
    assert np.abs(edited - plain).mean() > 1.0, "the ControlNet did not change the edit"


@pytest.mark.compat
def test_lora_example_runs_and_the_lora_reaches_the_edit(server):
    prompt, ids = load("regiondrag_lora_edit")
    entry = run(server, prompt)
    edited = saved(server, entry, ids["SaveImage"])
    assert edited.shape == (SIZE, SIZE, 3)
    assert "lora key not loaded" not in _log(server), "LoraLoader left keys of the random LoRA unmatched"

    off = copy.deepcopy(prompt)
    off[ids["LoraLoader"]]["inputs"].update(strength_model=0.0, strength_clip=0.0)
    plain = saved(server, run(server, off), ids["SaveImage"])
    assert np.abs(edited - plain).mean() > 1.0, "the LoRA did not change the edit"


def test_combined_prompts_example_runs_and_keeps_the_image_without_a_drag(server):
    prompt, ids = load("regiondrag_combined_prompts_edit")
    entry = run(server, prompt)
    assert saved(server, entry, ids["SaveImage"]).shape == (SIZE, SIZE, 3)

    # handle dropped onto itself, no handle noise: the edit must decode to the input latent's picture
    still = copy.deepcopy(prompt)
    pair = still[ids["RegionMaskPair"]]["inputs"]
    shapes = json.loads(pair["shapes"])
    for p in shapes["pairs"]:
        p["target"] = copy.deepcopy(p["handle"])
    pair["shapes"] = json.dumps(shapes)
    still[ids["RegionDragKSampler"]]["inputs"]["noise_weight"] = 0.0
    enc = ids["VAEEncode"]
    still["900"] = {"class_type": "VAEDecode", "inputs": {"samples": [enc, 0], "vae": [ids["CheckpointLoaderSimple"], 2]}}
    still["901"] = {"class_type": "SaveImage", "inputs": {"images": ["900", 0], "filename_prefix": "input_decoded"}}
    entry = run(server, still)
    assert ids["DDPMInvertAndCache"] in cached_nodes(entry)  # same inversion as the first run
    kept, reference = saved(server, entry, ids["SaveImage"]), saved(server, entry, "901")
    assert np.array_equal(kept, reference), f"max pixel difference {np.abs(kept - reference).max()}"


def test_upscale_chain_example_writes_the_edit_and_the_upscaled_picture(server):
    prompt, ids = load("regiondrag_upscale_chain")
    ks = ids["KSampler"]
    prompt[ks]["inputs"]["steps"] = 6   # 0.45 denoise: 3 steps of the second pass at 128 x 1.5 on the CPU
    entry = run(server, prompt)
    saves = {prompt[k]["inputs"]["filename_prefix"]: k for k in ids["SaveImage"]}
    assert saved(server, entry, saves["RegionDrag_edit"]).shape == (SIZE, SIZE, 3)
    big = SIZE * 3 // 2 * 2
    assert saved(server, entry, saves["RegionDrag_upscaled"]).shape == (big, big, 3)
    assert ks not in cached_nodes(entry)


@pytest.mark.compat
def test_cp_then_encode_example_runs_and_a_region_change_keeps_the_inversion(server):
    """The second method through /prompt: the preview (the pasted image) goes through its own VAE Encode
    into the sampler; moving the target re-runs the mapping, that VAE Encode and the sampler, not the
    image's inversion (ComfyUI's cache)."""
    prompt, ids = load("regiondrag_cp_then_encode_edit")
    entry = run(server, prompt)
    first = saved(server, entry, ids["SaveImage"])
    assert first.shape == (SIZE, SIZE, 3)
    moved = copy.deepcopy(prompt)
    pair = moved[ids["RegionMaskPair"]]["inputs"]
    shapes = json.loads(pair["shapes"])
    shapes["pairs"][0]["target"]["points"] = [[x - 40, y + 60] for x, y in shapes["pairs"][0]["target"]["points"]]
    pair["shapes"] = json.dumps(shapes)
    entry = run(server, moved)
    cached = cached_nodes(entry)
    preview_encode = moved[ids["RegionDragKSampler"]]["inputs"]["preview_latent"][0]
    assert ids["DDPMInvertAndCache"] in cached and ids["RegionDragKSampler"] not in cached
    assert preview_encode not in cached
    assert np.abs(saved(server, entry, ids["SaveImage"]) - first).mean() > 0.5


@pytest.mark.compat
def test_region_points_example_runs(server):
    prompt, ids = load("regiondrag_region_points_edit")
    assert json.loads(prompt[ids["RegionMaskPair"]]["inputs"]["shapes"])["version"] == 2
    entry = run(server, prompt)
    assert saved(server, entry, ids["SaveImage"]).shape == (SIZE, SIZE, 3)
    assert ids["RegionDragKSampler"] not in cached_nodes(entry)
