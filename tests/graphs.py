"""The good RegionDrag edit graph (API format) that the server tests mutate, and its inputs.

Shared by the bad-input battery, the Stop tests and the long-session soak: one graph, one set of
node ids, one way to read the saved latent back for exact comparison."""
from __future__ import annotations

import json
import os

import numpy as np

SIZE = 64
STEPS, START_T = 10, 0.5          # 5 inversion and 5 denoising UNet calls at 64x64

# node ids of the good graph
CKPT, CLIP, IMG, ENC, INV, PAIR, MAP, DRAG, SAVE, EXTRA, EXTRA2 = (str(i) for i in range(1, 12))

HANDLE = [[8, 8], [24, 8], [24, 24], [8, 24]]
TARGET = [[36, 30], [52, 30], [52, 46], [36, 46]]


def shapes(pairs=((HANDLE, TARGET),), size=SIZE, **extra):
    doc = {"version": 1, "width": size, "height": size,
           "pairs": [{"handle": {"type": "polygon", "points": h}, "target": {"type": "polygon", "points": t}}
                     for h, t in pairs]}
    doc.update(extra)
    return json.dumps(doc)


def good_graph(image: str, seed: int = 2, prefix: str = "battery/good") -> dict:
    return {
        CKPT: {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "random_sd15.safetensors"}},
        CLIP: {"class_type": "CLIPTextEncode", "inputs": {"text": "a landscape", "clip": [CKPT, 1]}},
        IMG: {"class_type": "LoadImage", "inputs": {"image": image}},
        ENC: {"class_type": "VAEEncode", "inputs": {"pixels": [IMG, 0], "vae": [CKPT, 2]}},
        INV: {"class_type": "DDPMInvertAndCache",
              "inputs": {"model": [CKPT, 0], "positive": [CLIP, 0], "latent": [ENC, 0], "steps": STEPS,
                         "start_t": START_T, "seed": 1}},
        PAIR: {"class_type": "RegionMaskPair", "inputs": {"shapes": shapes(), "image": [IMG, 0]}},
        MAP: {"class_type": "RegionToPointMapping",
              "inputs": {"region_pairs": [PAIR, 0], "latent": [ENC, 0], "image": [IMG, 0]}},
        DRAG: {"class_type": "RegionDragKSampler",
               "inputs": {"model": [CKPT, 0], "inversion": [INV, 0], "drag_map": [MAP, 0], "positive": [CLIP, 0],
                          "end_t": 0.2, "noise_weight": 1.0, "seed": seed}},
        SAVE: {"class_type": "SaveLatent", "inputs": {"samples": [DRAG, 0], "filename_prefix": prefix}},
    }


def write_inputs(server):
    """The battery's pictures (64, 60 and 128 px) and an inf latent in the server's input folder."""
    from PIL import Image
    import safetensors.torch
    import torch

    def picture(size, name):
        y, x = np.mgrid[0:size, 0:size] / size
        img = np.stack([0.3 + 0.5 * x, 0.5 + 0.3 * y, 0.9 - 0.6 * y], -1)
        img[(x - 0.25) ** 2 + (y - 0.25) ** 2 < 0.02] = [1.0, 0.9, 0.1]
        Image.fromarray((img * 255).astype(np.uint8)).save(os.path.join(server.input_dir, name))
        return name

    lat = torch.zeros(1, 4, SIZE // 8, SIZE // 8)
    lat[0, 1, 2, 3] = float("inf")
    safetensors.torch.save_file({"latent_tensor": lat, "latent_format_version_0": torch.tensor([])},
                                os.path.join(server.input_dir, "battery_inf.latent"))
    return {"image": picture(SIZE, "battery_64.png"), "img60": picture(60, "battery_60.png"),
            "img128": picture(128, "battery_128.png"), "inf_latent": "battery_inf.latent"}


def load_saved_latent(server, entry, node=SAVE) -> bytes:
    """The raw bytes of the saved latent tensor (exact comparison), from SaveLatent's output."""
    import safetensors.torch
    item = entry["outputs"][node]["latents"][0]
    path = os.path.join(server.output_dir, item["subfolder"], item["filename"])
    t = safetensors.torch.load_file(path)["latent_tensor"]
    assert t.shape == (1, 4, SIZE // 8, SIZE // 8)
    return t.contiguous().numpy().tobytes()


def write_test_image(server, name="regiondrag_test.png", size=128):
    """A synthetic picture (sky, ground, a sun) in the server's input folder."""
    from PIL import Image
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.3 + 0.5 * x, 0.5 + 0.3 * y, 0.9 - 0.6 * y], -1)
    img[y > 0.6] = [0.2, 0.7, 0.2]
    img[(x - 0.3) ** 2 + (y - 0.3) ** 2 < 0.01] = [1.0, 0.9, 0.1]
    Image.fromarray((img * 255).astype(np.uint8)).save(os.path.join(server.input_dir, name))
    return name


def fetch_image(server, entry, node_id):
    from io import BytesIO

    from PIL import Image
    img = entry["outputs"][node_id]["images"][0]
    data = server.client.get_bytes(f"/view?filename={img['filename']}&subfolder={img['subfolder']}&type={img['type']}")
    return np.asarray(Image.open(BytesIO(data)).convert("RGB"))
