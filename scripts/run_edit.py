"""Run a RegionDrag edit headless: start ComfyUI with this pack, queue the example workflow, save the result.

    python scripts/run_edit.py --image photo.png --shapes regions.json --ckpt v1-5-pruned-emaonly.safetensors \
        --out edited.png

Every option has a default, so ``python scripts/run_edit.py --size 256`` is a smoke test: ComfyUI's own
``input/example.png``, the example workflow's regions and a random-weight SD1.5 checkpoint (2.1 GB, written
once to ~/.cache/comfyui-regiondrag; its images are noise, but the whole pipeline runs). The result goes
to ``--out``, by default ComfyUI's ``output/regiondrag_edit.png``. ``--shapes`` takes the RegionMaskPair
JSON (see the README) as a file, or as the JSON text itself. Run it with ComfyUI's Python.
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
from comfy_finder import PACK_DIR, find_comfyui  # noqa: E402

log = logging.getLogger("RegionDrag.run_edit")
WORKFLOW = os.path.join(PACK_DIR, "example_workflows", "api", "regiondrag_basic_edit_api.json")
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "comfyui-regiondrag")


def build_prompt(args, image_name: str, ckpt_name: str) -> dict:
    with open(WORKFLOW) as f:
        prompt = json.load(f)
    ids = {v["class_type"]: k for k, v in prompt.items()}
    prompt[ids["CheckpointLoaderSimple"]]["inputs"]["ckpt_name"] = ckpt_name
    prompt[ids["LoadImage"]]["inputs"]["image"] = image_name
    prompt[ids["ImageScale"]]["inputs"].update(width=args.size, height=args.size)
    if args.prompt is not None:
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
    p.add_argument("--ckpt", help="SD1.5 checkpoint file (default: the random-weight smoke-test checkpoint)")
    p.add_argument("--prompt", help="text prompt (default: the example's)")
    p.add_argument("--preview", help="also write the copy-paste preview here")
    p.add_argument("--size", type=int, default=512, help="square size the image is scaled to (default 512)")
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
    if ckpt is None:
        import random_sd15
        ckpt = os.path.join(CACHE, "random_sd15.safetensors")
        if not os.path.exists(ckpt):
            os.makedirs(CACHE, exist_ok=True)
            free = shutil.disk_usage(CACHE).free / 2**30
            log.info("No --ckpt given: writing a 2.1 GB random-weight SD1.5 checkpoint to %s (once, about a "
                     "minute; %.0f GB free there). Delete it when done with smoke tests.", ckpt, free)
            if free < 2.5:
                log.error("not enough disk space for the smoke-test checkpoint; pass --ckpt with a real one.")
                return 2
        random_sd15.write_random_sd15(ckpt)
        log.info("smoke test with random weights: the edited image will look like noise")
    elif not os.path.isfile(ckpt):
        log.error("--ckpt %s: no such file.", ckpt)
        return 2

    from comfy_client import PromptError
    from comfy_server import ComfyServer
    with ComfyServer(checkpoints=[ckpt], comfyui=comfyui) as server:
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


if __name__ == "__main__":
    sys.exit(main())
