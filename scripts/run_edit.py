"""Run a RegionDrag edit headless: start ComfyUI with this pack, queue the example workflow, save the result.

    python scripts/run_edit.py --image photo.png --shapes regions.json --ckpt v1-5-pruned-emaonly.safetensors \
        --out edited.png
    python scripts/run_edit.py --ckpt sd_xl_base_1.0.safetensors --image photo.png --shapes regions.json

The checkpoint's family (sd15, sd2, sd2v = SD2.x 768 v-prediction, sdxl) is read from its keys, or given
with ``--family``; it picks the example workflow (SDXL: the SDXL one, with CLIP Text Encode SDXL and its
size conditioning) and the default size (512, 768 for sd2v, 1024 for SDXL).
Every option has a default, so ``python scripts/run_edit.py --size 256`` is a smoke test: ComfyUI's own
``input/example.png``, the example workflow's regions and a random-weight checkpoint of the family
(``--family``, default sd15: 2.1 GB; sd2/sd2v 2.6 GB; sdxl 6.9 GB, written once to the cache folder,
``$REGIONDRAG_CACHE`` or ~/.cache/comfyui-regiondrag; its images are noise, but the whole pipeline
runs). The result goes to ``--out``, by default ComfyUI's ``output/regiondrag_edit.png``. ``--shapes``
takes the RegionMaskPair JSON (see the README) as a file, or as the JSON text itself. Run it with ComfyUI's Python.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from comfy_finder import PACK_DIR, cache_dir, find_comfyui  # noqa: E402
from families import (NATIVE_SIZE, RANDOM_CHECKPOINT_GB, FamilyError, random_checkpoint_path,  # noqa: E402
                      resolve_family)

log = logging.getLogger("RegionDrag.run_edit")
_API = os.path.join(PACK_DIR, "example_workflows", "api")
WORKFLOW = os.path.join(_API, "regiondrag_basic_edit_api.json")
WORKFLOWS = {"sd15": WORKFLOW, "sd2": WORKFLOW, "sd2v": WORKFLOW,
             "sdxl": os.path.join(_API, "regiondrag_sdxl_edit_api.json")}


def build_prompt(args, image_name: str, ckpt_name: str) -> dict:
    with open(WORKFLOWS[args.family]) as f:
        prompt = json.load(f)
    ids = {v["class_type"]: k for k, v in prompt.items()}
    prompt[ids["CheckpointLoaderSimple"]]["inputs"]["ckpt_name"] = ckpt_name
    prompt[ids["LoadImage"]]["inputs"]["image"] = image_name
    prompt[ids["ImageScale"]]["inputs"].update(width=args.size, height=args.size)
    if "CLIPTextEncodeSDXL" in ids:   # SDXL's size conditioning follows the image size
        enc = prompt[ids["CLIPTextEncodeSDXL"]]["inputs"]
        enc.update(width=args.size, height=args.size, target_width=args.size, target_height=args.size)
        if args.prompt is not None:
            enc.update(text_g=args.prompt, text_l=args.prompt)
    elif args.prompt is not None:
        prompt[ids["CLIPTextEncode"]]["inputs"]["text"] = args.prompt
    if args.shapes:
        prompt[ids["RegionMaskPair"]]["inputs"]["shapes"] = args.shapes
    prompt[ids["DDPMInvertAndCache"]]["inputs"].update(steps=args.steps, start_t=args.start_t, seed=args.seed)
    prompt[ids["RegionDragKSampler"]]["inputs"].update(end_t=args.end_t, noise_weight=args.noise_weight,
                                                       seed=args.seed)
    return prompt, ids


def read_shapes(value: str) -> str:
    """``--shapes``: JSON text (starts with ``{``) or the path of a JSON file; UsageError when neither."""
    if value.lstrip().startswith("{"):
        text, where = value, "the --shapes text"
    elif os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            text, where = f.read(), value
    else:
        raise UsageError(f"--shapes {value}: no such file (give a shapes JSON file, or the JSON text itself "
                         "starting with '{').")
    try:
        json.loads(text)
    except ValueError as e:
        raise UsageError(f"--shapes: {where} is not valid JSON ({e}); see 'Shapes JSON' in the README.") from None
    return text


class UsageError(ValueError):
    """A command-line argument the script cannot use; the message says which and what to do."""


def describe_error(e) -> str:
    """ComfyUI's refusal (HTTP 400 with node_errors) or execution error as 'Node / input: message' lines."""
    try:
        body = json.loads(e.body) if isinstance(e.body, str) else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return str(e)
    lines = []
    for node_id, info in (body.get("node_errors") or {}).items():
        for err in info.get("errors", []):
            name = (err.get("extra_info") or {}).get("input_name")
            detail = err.get("details") or err.get("message", "")
            lines.append(f"node {node_id} ({info.get('class_type')})" + (f" / {name}" if name else "") + f": {detail}")
    if not lines and isinstance(body.get("error"), dict):
        lines.append(f"{body['error'].get('message', '')} {body['error'].get('details', '')}".strip())
    return "\n".join(lines) or str(e)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="where to write the edited image (PNG; default: ComfyUI's output/regiondrag_edit.png)")
    p.add_argument("--image", help="image to edit (default: ComfyUI's input/example.png)")
    p.add_argument("--shapes", help="RegionMaskPair shapes JSON, a file or a string (default: the example's)")
    p.add_argument("--ckpt", help="SD1.5, SD2.x or SDXL checkpoint file (default: the family's random-weight "
                                  "smoke-test checkpoint)")
    p.add_argument("--family", choices=sorted(WORKFLOWS),
                   help="the checkpoint's family (default: read from --ckpt's keys; sd15 without --ckpt)")
    p.add_argument("--prompt", help="text prompt (default: the example's)")
    p.add_argument("--preview", help="also write the copy-paste preview here")
    p.add_argument("--size", type=int,
                   help="square size the image is scaled to (default: 512; 768 for sd2v; 1024 for sdxl)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--start-t", type=float, default=0.5)
    p.add_argument("--end-t", type=float, default=0.2)
    p.add_argument("--noise-weight", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--comfyui", help="ComfyUI folder (default: COMFYUI_PATH or the one this pack is installed in)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.comfyui:
        os.environ["COMFYUI_PATH"] = args.comfyui
    comfyui = find_comfyui()
    if comfyui is None:
        log.error("ComfyUI not found: install this pack into ComfyUI/custom_nodes/ or pass --comfyui PATH.")
        return 2
    out = args.out or os.path.join(comfyui, "output", "regiondrag_edit.png")
    try:
        if args.shapes:
            args.shapes = read_shapes(args.shapes)
    except UsageError as e:
        log.error("%s", e)
        return 2
    image = args.image or os.path.join(comfyui, "input", "example.png")
    if not os.path.isfile(image):
        log.error("--image %s: no such file.", image)
        return 2
    ckpt = args.ckpt
    if ckpt is not None and not os.path.isfile(ckpt):
        log.error("--ckpt %s: no such file.", ckpt)
        return 2
    try:
        args.family = resolve_family(ckpt, args.family)
    except FamilyError as e:
        log.error("%s.", e)
        return 2
    if ckpt is not None:
        log.info("checkpoint family: %s", args.family)
    args.size = args.size or NATIVE_SIZE[args.family]
    if ckpt is None:
        import random_checkpoints
        ckpt = random_checkpoint_path(args.family)
        if not random_checkpoints.is_written(args.family, ckpt):
            need = RANDOM_CHECKPOINT_GB[args.family]
            free = shutil.disk_usage(cache_dir()).free / 2**30
            log.info("No --ckpt given: writing a %.1f GB random-weight %s checkpoint to %s (once, a minute or two; "
                     "%.0f GB free there). Delete it when done with smoke tests.", need, args.family, ckpt, free)
            if free < need + 0.5:
                log.error("not enough disk space for the smoke-test checkpoint; pass --ckpt with a real one.")
                return 2
        random_checkpoints.write_random_checkpoint(args.family, ckpt)
        log.info("smoke test with random weights: the edited image will look like noise")

    from comfy_client import PromptError
    from comfy_server import ComfyServer
    extra = []
    if args.family == "sdxl" and not _cuda():
        extra = ["--fp16-unet"]   # SDXL's UNet in fp32 would take 10 GB of host memory
        log.info("no CUDA: ComfyUI runs SDXL with --fp16-unet (fp16 weights, fp32 compute)")
    with ComfyServer(checkpoints=[ckpt], comfyui=comfyui, extra_args=extra) as server:
        image_name = "regiondrag_input" + os.path.splitext(image)[1]
        shutil.copy(image, os.path.join(server.input_dir, image_name))
        prompt, ids = build_prompt(args, image_name, os.path.basename(ckpt))
        t0 = time.time()
        try:
            entry = server.client.run(prompt, timeout=3600)
        except PromptError as e:
            log.error("ComfyUI refused or failed the edit:\n%s", describe_error(e))
            return 1
        log.info("edit done in %.1f s (ComfyUI %s)", time.time() - t0, comfyui)
        for node, dest in ((ids["SaveImage"], out), (ids["PreviewImage"], args.preview)):
            if dest:
                img = entry["outputs"][node]["images"][0]
                folder = server.output_dir if img["type"] == "output" else os.path.join(server.base, "temp")
                src = os.path.join(folder, img["subfolder"], img["filename"])
                os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
                shutil.copy(src, dest)
                log.info("wrote %s", dest)
    return 0


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
