"""The benchmark's live figure: a re-edit as "Run (On Change)" makes it, through a real ComfyUI server.

A ComfyUI server of its own (``main.py``, this pack, the benchmark's checkpoint) runs the live graph:
Load Image (the benchmark's synthetic picture) -> VAE Encode, CLIP Text Encode -> DDPM Invert-and-Cache;
RegionMaskPair (shapes JSON) -> Region-to-Point Mapping -> RegionDrag KSampler -> VAE Decode -> Preview
Image. A first prompt runs the inversion; then every prompt changes only the shapes (the target
region moved by one more pixel each time), so ComfyUI serves the inversion from its cache and re-runs
RegionMaskPair, the mapping, the sampler, the decoder and the Preview Image. Each is timed from posting
it to ``/prompt`` to the Preview Image's ``executed`` message on the websocket (what the front-end
waits for), and to the decoded PNG fetched from ``/view`` (the image on screen). Every timed prompt must
have the inversion in its ``execution_cached`` message, else the figure is refused.

``run_live(opts, ckpt)`` returns the figures for ``benchmark.py`` (its ``live`` entry in the JSON);
``python scripts/bench_live.py --ckpt PATH [--size 128] [--repeats 5]`` runs it alone.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
import uuid

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SCRIPTS)

log = logging.getLogger("RegionDrag.benchmark")

LIVE_SIZE = 128
PROMPT = "a photo of a red ball on a wooden table"
IMAGE = "regiondrag_bench_live.png"
SEED = 42


class LiveError(RuntimeError):
    """The live graph failed, or a re-edit ran the inversion again."""


def shapes_json(size: int, shift: int) -> str:
    """The benchmark's region pair (a rectangle around the disc) with the target moved right by
    size/8 + ``shift`` pixels."""
    y0, y1, x0, x1 = 5 * size // 16, 11 * size // 16, 3 * size // 16, 8 * size // 16
    dx = size // 8 + shift
    rect = lambda a: [[a, y0], [a + x1 - x0 - 1, y0], [a + x1 - x0 - 1, y1 - 1], [a, y1 - 1]]  # noqa: E731
    return json.dumps({"version": 1, "width": size, "height": size, "pairs": [
        {"handle": {"type": "polygon", "points": rect(x0)}, "target": {"type": "polygon", "points": rect(x0 + dx)}}]})


def live_prompt(ckpt_name: str, size: int, steps: int, start_t: float, family: str, shapes: str,
                compile_backend: str | None = None) -> tuple[dict, dict]:
    """The API-format live graph and its node ids by role."""
    p: dict = {}

    def add(nid, cls, **inputs):
        p[nid] = {"class_type": cls, "inputs": inputs}
        return [nid, 0]

    ck = add("1", "CheckpointLoaderSimple", ckpt_name=ckpt_name)
    model, clip, vae = ck, ["1", 1], ["1", 2]
    if compile_backend:
        model = add("11", "TorchCompileModel", model=ck, backend=compile_backend)
    img = add("2", "LoadImage", image=IMAGE)
    enc = add("3", "VAEEncode", pixels=img, vae=vae)
    if family == "sdxl":
        pos = add("4", "CLIPTextEncodeSDXL", clip=clip, width=size, height=size, crop_w=0, crop_h=0,
                  target_width=size, target_height=size, text_g=PROMPT, text_l=PROMPT)
    else:
        pos = add("4", "CLIPTextEncode", clip=clip, text=PROMPT)
    inv = add("5", "DDPMInvertAndCache", model=model, positive=pos, latent=enc, steps=steps, start_t=start_t,
              seed=SEED)
    pair = add("6", "RegionMaskPair", shapes=shapes, image=img)
    mapping = add("7", "RegionToPointMapping", region_pairs=pair, latent=enc, image=img)
    edit = add("8", "RegionDragKSampler", model=model, inversion=inv, drag_map=mapping, positive=pos, end_t=0.2,
               noise_weight=1.0, seed=SEED, mutual_self_attention=True)
    dec = add("9", "VAEDecode", samples=edit, vae=vae)
    add("10", "PreviewImage", images=dec)
    return p, {"inversion": "5", "pair": "6", "sampler": "8", "preview": "10"}


def server_args(opts) -> list[str]:
    """ComfyUI launch flags matching the benchmark's own run (dtype, attention, CPU, a card made small)."""
    args = []
    dtype = getattr(opts, "dtype_option", None) or opts.dtype
    if dtype in ("fp16", "bf16", "fp32"):
        args.append(f"--{dtype}-unet")
    if opts.cpu:
        args.append("--cpu")
    if opts.pytorch_attention:
        args.append("--use-pytorch-cross-attention")
    vram = getattr(opts, "vram_limit", None)
    if vram:
        args += ["--reserve-vram", f"{vram['reserve_vram_gb']:.3f}"]
    return args


def write_image(path: str, size: int) -> None:
    """The benchmark's synthetic picture (bench_runs.synthetic_image) as a PNG for Load Image."""
    import numpy as np
    from PIL import Image

    from bench_runs import synthetic_image
    img = synthetic_image(size)[0].numpy()
    Image.fromarray((img * 255).round().astype(np.uint8)).save(path)


async def _measure(url: str, prompt_for, ids: dict, repeats: int, timeout: float) -> dict:
    import aiohttp
    cid = uuid.uuid4().hex
    wait_for: dict = {}   # prompt id -> future of (executed time, image ref)
    done: dict = {}       # prompt id -> future of its end ("execution_success" / error / interrupted)

    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url.replace("http", "ws", 1) + f"/ws?clientId={cid}", max_msg_size=0)

        async def listen():
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue   # latent previews (binary) are off in this server; ignore any
                m = json.loads(msg.data)
                d = m.get("data") or {}
                pid = d.get("prompt_id")
                if m.get("type") == "executed" and str(d.get("node")) == ids["preview"] and pid in wait_for:
                    if not wait_for[pid].done():
                        wait_for[pid].set_result((time.perf_counter(), d["output"]["images"][0]))
                elif m.get("type") in ("execution_success", "execution_error", "execution_interrupted") and pid in done:
                    if not done[pid].done():
                        done[pid].set_result((m["type"], d))

        listener = asyncio.create_task(listen())

        async def one(prompt: dict) -> dict:
            t0 = time.perf_counter()
            async with http.post(url + "/prompt", json={"prompt": prompt, "client_id": cid}) as r:
                body = await r.json()
                if r.status != 200:
                    raise LiveError(f"/prompt refused the live graph: {json.dumps(body)[:2000]}")
            pid = body["prompt_id"]
            loop = asyncio.get_running_loop()
            wait_for[pid], done[pid] = loop.create_future(), loop.create_future()
            end = asyncio.ensure_future(done[pid])
            first, _ = await asyncio.wait([wait_for[pid], end], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not first:
                raise LiveError(f"prompt {pid}: no image in {timeout:.0f} s")
            if wait_for[pid] not in first:
                kind, d = end.result()
                raise LiveError(f"prompt {pid}: {kind} {json.dumps(d)[:2000]}")
            t1, img = wait_for[pid].result()
            q = "&".join(f"{k}={v}" for k, v in (("filename", img["filename"]), ("subfolder", img.get("subfolder", "")),
                                                  ("type", img.get("type", "temp"))))
            async with http.get(url + "/view?" + q) as r:
                png = await r.read()
            t2 = time.perf_counter()
            await asyncio.wait_for(end, timeout)
            async with http.get(url + f"/history/{pid}") as r:
                entry = (await r.json())[pid]
            cached = {str(n) for name, data in entry.get("status", {}).get("messages", [])
                      if name == "execution_cached" for n in data.get("nodes", [])}
            return {"executed_s": t1 - t0, "image_s": t2 - t0, "png_bytes": len(png),
                    "inversion_cached": ids["inversion"] in cached, "prompt_id": pid}

        try:
            first = await one(prompt_for(0))
            runs = [await one(prompt_for(k)) for k in range(1, repeats + 2)]   # the first re-edit warms up
        finally:
            listener.cancel()
            await ws.close()
    timed = runs[1:]
    if not all(r["inversion_cached"] for r in [runs[0], *timed]):
        raise LiveError("a re-edit ran DDPM Invert-and-Cache again: ComfyUI's cache did not keep the inversion")
    return {"first_run_s": first["image_s"], "warm_up_re_edit_s": runs[0]["image_s"],
            "post_to_executed_s": statistics.median(r["executed_s"] for r in timed),
            "post_to_image_s": statistics.median(r["image_s"] for r in timed),
            "runs_post_to_executed_s": [r["executed_s"] for r in timed],
            "runs_post_to_image_s": [r["image_s"] for r in timed],
            "inversion_cached": True, "repeats": len(timed)}


def release_in_process_models() -> None:
    """Free what the benchmark itself loaded (when it did) before the server loads its own copy."""
    import gc
    mm = sys.modules.get("comfy.model_management")
    if mm is not None:
        mm.unload_all_models()
        mm.cleanup_models()
        gc.collect()
        mm.soft_empty_cache()


def run_live(opts, ckpt: str, size: int = LIVE_SIZE, repeats: int | None = None, timeout: float = 1200) -> dict:
    """The live figure (module docstring) with the benchmark's options: its checkpoint, family, steps,
    start_t, dtype, attention and compile backend, at ``size`` x ``size``."""
    from comfy_server import ComfyServer
    repeats = repeats or max(3, opts.repeats)
    release_in_process_models()
    t0 = time.perf_counter()
    with ComfyServer(checkpoints=[ckpt], extra_args=server_args(opts), startup_timeout=600) as server:
        start_s = time.perf_counter() - t0
        write_image(os.path.join(server.input_dir, IMAGE), size)
        name = os.path.basename(ckpt)

        def prompt_for(k):   # each prompt's target one pixel further than the last one's (wrapping)
            return live_prompt(name, size, opts.steps, opts.start_t, opts.family, shapes_json(size, k % (size // 4)),
                               opts.compile)[0]

        ids = live_prompt(name, size, opts.steps, opts.start_t, opts.family, "", opts.compile)[1]
        log.info("live: %dx%d through a ComfyUI server, %d re-edits", size, size, repeats)
        try:
            out = asyncio.run(_measure(server.url, prompt_for, ids, repeats, timeout))
        except LiveError as e:
            with open(server.log_path) as f:
                raise LiveError(f"{e}\n--- server log (end) ---\n{f.read()[-4000:]}") from None
    out.update({"size": size, "steps": opts.steps, "start_t": opts.start_t, "server_start_s": start_s,
                "compile": opts.compile, "server_args": server_args(opts)})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="the checkpoint (SD1.5, SD2.x or SDXL)")
    p.add_argument("--family", default=None, help="its family (default: read from its keys)")
    p.add_argument("--size", type=int, default=LIVE_SIZE, help=f"image side ({LIVE_SIZE})")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--start-t", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtype", choices=["auto", "fp16", "bf16", "fp32"], default=None)
    p.add_argument("--pytorch-attention", action="store_true")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--compile", default=None, metavar="BACKEND")
    p.add_argument("--json", default=None, metavar="OUT")
    opts = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from families import FamilyError, resolve_family
    try:
        opts.family = resolve_family(opts.ckpt, opts.family)
    except FamilyError as e:
        raise SystemExit(str(e)) from None
    r = run_live(opts, opts.ckpt, opts.size, opts.repeats)
    log.info(f"live re-edit at {r['size']}x{r['size']} through a ComfyUI server (post shapes -> decoded image): "
          f"{r['post_to_image_s']:.3f} s (to the executed message {r['post_to_executed_s']:.3f} s; "
          f"first run with the inversion {r['first_run_s']:.2f} s)")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
