"""Write the example workflows that chain RegionDrag with other ComfyUI nodes, each as a UI workflow
(``example_workflows/<name>.json``, drag it onto ComfyUI) and its API twin
(``example_workflows/api/<name>_api.json``, for ``/prompt`` and the tests).

Both files come from one description here, so they cannot drift apart; ``tests/test_workflows.py``
checks every example's pair, and ``tests/test_host_workflows.py`` runs every API twin through a real
ComfyUI. Re-run after changing a description::

    python tools/make_workflows.py            # writes example_workflows/
    python tools/make_workflows.py --check    # exits 1 if a file differs from what it would write

The basic and SDXL examples are kept by hand (they predate this script); the shared parts below
follow them: same image, prompt, regions and RegionDrag settings.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

log = logging.getLogger("RegionDrag.make_workflows")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "example_workflows")

# type -> (link inputs [(name, type)], widgets [name], outputs [(name, type)]).
# Widgets in the order ComfyUI shows them; a seed widget is followed by its "control after generate"
# value, LoadImage's image by its upload button.
SPECS = {
    "CheckpointLoaderSimple": ([], ["ckpt_name"], [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")]),
    "LoraLoader": ([("model", "MODEL"), ("clip", "CLIP")], ["lora_name", "strength_model", "strength_clip"],
                   [("MODEL", "MODEL"), ("CLIP", "CLIP")]),
    "LoadImage": ([], ["image"], [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "ImageScale": ([("image", "IMAGE")], ["upscale_method", "width", "height", "crop"], [("IMAGE", "IMAGE")]),
    "ImageScaleBy": ([("image", "IMAGE")], ["upscale_method", "scale_by"], [("IMAGE", "IMAGE")]),
    "CLIPTextEncode": ([("clip", "CLIP")], ["text"], [("CONDITIONING", "CONDITIONING")]),
    "ConditioningCombine": ([("conditioning_1", "CONDITIONING"), ("conditioning_2", "CONDITIONING")], [],
                            [("CONDITIONING", "CONDITIONING")]),
    "ControlNetLoader": ([], ["control_net_name"], [("CONTROL_NET", "CONTROL_NET")]),
    "ControlNetApplyAdvanced": ([("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                                 ("control_net", "CONTROL_NET"), ("image", "IMAGE"), ("vae", "VAE")],
                                ["strength", "start_percent", "end_percent"],
                                [("positive", "CONDITIONING"), ("negative", "CONDITIONING")]),
    "VAEEncode": ([("pixels", "IMAGE"), ("vae", "VAE")], [], [("LATENT", "LATENT")]),
    "VAEDecode": ([("samples", "LATENT"), ("vae", "VAE")], [], [("IMAGE", "IMAGE")]),
    "LatentUpscaleBy": ([("samples", "LATENT")], ["upscale_method", "scale_by"], [("LATENT", "LATENT")]),
    "KSampler": ([("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                  ("latent_image", "LATENT")],
                 ["seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"], [("LATENT", "LATENT")]),
    "SaveImage": ([("images", "IMAGE")], ["filename_prefix"], []),
    "PreviewImage": ([("images", "IMAGE")], [], []),
    "RegionMaskPair": ([("image", "IMAGE")], ["shapes"], [("REGION_PAIRS", "REGION_PAIRS")]),
    "RegionToPointMapping": ([("region_pairs", "REGION_PAIRS"), ("latent", "LATENT"), ("image", "IMAGE")], [],
                             [("DRAG_MAP", "DRAG_MAP"), ("preview", "IMAGE")]),
    "DDPMInvertAndCache": ([("model", "MODEL"), ("positive", "CONDITIONING"), ("latent", "LATENT")],
                           ["steps", "start_t", "seed"], [("INVERSION", "INVERSION")]),
    "RegionDragKSampler": ([("model", "MODEL"), ("inversion", "INVERSION"), ("drag_map", "DRAG_MAP"),
                            ("positive", "CONDITIONING"), ("edit_mask", "MASK"), ("preview_latent", "LATENT")],
                           ["end_t", "noise_weight", "seed", "mutual_self_attention"], [("LATENT", "LATENT")]),
    "ImageCompositeMasked": ([("destination", "IMAGE"), ("source", "IMAGE"), ("mask", "MASK")],
                             ["x", "y", "resize_source"], [("IMAGE", "IMAGE")]),
    "RegionDragBenchSample": ([], ["folder", "index", "sample"],
                              [("image", "IMAGE"), ("prompt", "STRING"), ("drag_points", "DRAG_POINTS"),
                               ("edit_mask", "MASK"), ("score_points", "DRAG_POINTS"), ("name", "STRING")]),
    "RegionDragPointPairs": ([("latent", "LATENT"), ("drag_points", "DRAG_POINTS"), ("image", "IMAGE")], ["pairs"],
                             [("DRAG_MAP", "DRAG_MAP"), ("preview", "IMAGE")]),
    "RegionDragBenchScore": ([("original", "IMAGE"), ("edited", "IMAGE"), ("score_points", "DRAG_POINTS"),
                              ("prompt", "STRING"), ("dift_model", "MODEL"), ("dift_clip", "CLIP"),
                              ("dift_vae", "VAE")],
                             ["dift_size", "ensemble", "timestep", "dift_seed", "lpips_backbone"],
                             [("md", "FLOAT"), ("lpips", "FLOAT"), ("comparison", "IMAGE")]),
}
# Widgets a workflow may feed from a link instead (ComfyUI shows them as sockets): name -> type.
WIDGET_SOCKETS = {("CLIPTextEncode", "text"): "STRING"}
# Optional widgets after a node's own ones, in the order ComfyUI shows them, with their defaults: an
# example that sets one also writes those before it (widgets_values are positional).
OPTIONAL_WIDGETS = {
    "DDPMInvertAndCache": [("kv_cache", "auto"), ("inversion_batch", 0), ("kv_layers", "all"), ("cfg", 1.0),
                           ("method", "Encode then CP")],
    "RegionDragKSampler": [("cfg", 1.0)],
}
SEED_WIDGETS = {"seed"}
UPLOAD_WIDGETS = {"image": "image"}  # LoadImage's upload button keeps a value in widgets_values

SIZES = {"CheckpointLoaderSimple": (320, 100), "LoadImage": (320, 320), "ImageScale": (280, 130),
         "CLIPTextEncode": (320, 120), "VAEEncode": (180, 50), "VAEDecode": (180, 50),
         "RegionMaskPair": (420, 520), "RegionToPointMapping": (260, 70), "DDPMInvertAndCache": (300, 170),
         "RegionDragKSampler": (300, 200), "SaveImage": (400, 420), "PreviewImage": (400, 420),
         "LoraLoader": (320, 130), "ControlNetLoader": (320, 60), "ControlNetApplyAdvanced": (320, 190),
         "ConditioningCombine": (230, 50), "LatentUpscaleBy": (280, 80), "ImageScaleBy": (280, 80),
         "KSampler": (300, 270), "ImageCompositeMasked": (280, 150), "RegionDragBenchSample": (320, 200),
         "RegionDragPointPairs": (300, 160), "RegionDragBenchScore": (340, 400)}

PROMPT = "a child's drawing of a girl with yellow hair in a pink dress"
SHAPES = json.dumps({"version": 1, "width": 512, "height": 512, "pairs": [
    {"handle": {"type": "polygon", "points": [[300, 226], [398, 228], [398, 258], [300, 262]]},
     "target": {"type": "polygon", "points": [[300, 226], [372, 160], [394, 182], [300, 262]]}}]})


class Workflow:
    """Nodes and links described once; :meth:`ui` and :meth:`api` write the two formats."""

    def __init__(self, info: str):
        self.info = info
        self.nodes: list[dict] = []

    def add(self, type_: str, pos, widgets: dict | None = None, title: str | None = None,
            properties: dict | None = None, **links) -> int:
        inputs, names, _ = SPECS[type_]
        widgets = dict(widgets or {})
        optional = OPTIONAL_WIDGETS.get(type_, [])
        extra = [w for w in widgets if w not in names]
        if not set(names) <= set(widgets) or not set(extra) <= {o for o, _ in optional}:
            raise ValueError(f"{type_}: widgets {sorted(widgets)} != {sorted(names)} (+ optional {optional})")
        last = max((i for i, (o, _) in enumerate(optional) if o in widgets), default=-1)
        order = list(names) + [o for o, _ in optional[:last + 1]]
        widgets = {w: widgets.get(w, dict(optional).get(w)) for w in order}
        unknown = set(links) - {n for n, _ in inputs} - {w for (t, w) in WIDGET_SOCKETS if t == type_}
        if unknown:
            raise ValueError(f"{type_}: no link input {sorted(unknown)}")
        nid = len(self.nodes) + 1
        self.nodes.append({"id": nid, "type": type_, "pos": list(pos), "widgets": widgets, "order": order,
                           "title": title, "properties": dict(properties or {}),
                           "links": {k: (v, 0) if isinstance(v, int) else tuple(v) for k, v in links.items()}})
        return nid

    def api(self) -> dict:
        out = {}
        for n in self.nodes:
            inputs = {k: v for k, v in n["widgets"].items() if k not in n["links"]}
            inputs.update({k: [str(src), slot] for k, (src, slot) in n["links"].items()})
            out[str(n["id"])] = {"class_type": n["type"], "inputs": inputs,
                                 "_meta": {"title": n["title"] or n["type"]}}
        return out

    def ui(self) -> dict:
        links, outs, ins_of = [], {}, {}
        by_id = {n["id"]: n for n in self.nodes}
        for n in self.nodes:
            ins = []
            sockets = [(w, t, True) for (nt, w), t in WIDGET_SOCKETS.items() if nt == n["type"]]
            for name, typ, widget in [(a, b, False) for a, b in SPECS[n["type"]][0]] + sockets:
                if name not in n["links"]:
                    continue
                src, slot = n["links"][name]
                if SPECS[by_id[src]["type"]][2][slot][1] != typ:
                    raise ValueError(f"node {n['id']} {n['type']}.{name}: {typ} fed from node {src} slot {slot}")
                lid = len(links) + 1
                links.append([lid, src, slot, n["id"], len(ins), typ])
                outs.setdefault((src, slot), []).append(lid)
                ins.append({"name": name, "type": typ, "link": lid, **({"widget": {"name": name}} if widget else {})})
            ins_of[n["id"]] = ins
        nodes = []
        for order, n in enumerate(self.nodes):
            outputs = [{"name": name, "type": typ, "links": outs.get((n["id"], i), []), "slot_index": i}
                       for i, (name, typ) in enumerate(SPECS[n["type"]][2])]
            values = []
            for w in n["order"]:
                values.append(n["widgets"][w])
                if w in SEED_WIDGETS:
                    values.append("fixed")
                if n["type"] == "LoadImage" and w in UPLOAD_WIDGETS:
                    values.append(UPLOAD_WIDGETS[w])
            node = {"id": n["id"], "type": n["type"], "pos": n["pos"], "size": list(SIZES[n["type"]]),
                    "flags": {}, "order": order, "mode": 0, "inputs": ins_of[n["id"]], "outputs": outputs,
                    "properties": {"Node name for S&R": n["type"], **n["properties"]}, "widgets_values": values}
            if n["title"]:
                node["title"] = n["title"]
            nodes.append(node)
        return {"last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links,
                "groups": [], "config": {}, "extra": {"info": self.info}, "version": 0.4}


def base(info: str, ckpt="v1-5-pruned-emaonly.safetensors"):
    """Nodes 1-5 (loader, image, scale, prompt placeholder, encode) as in the basic example."""
    w = Workflow(info)
    w.add("CheckpointLoaderSimple", (20, 200), {"ckpt_name": ckpt})
    w.add("LoadImage", (20, 360), {"image": "example.png"})
    w.add("ImageScale", (370, 360), {"upscale_method": "lanczos", "width": 512, "height": 512, "crop": "center"},
          image=2)
    return w


def regiondrag(w: Workflow, model, positive, x=920, save_prefix="RegionDrag", shapes=SHAPES, method=None):
    """RegionMaskPair, mapping, inversion, RegionDrag KSampler, decode, save and the mapping preview.
    Expects nodes 1 (loader) and 3 (scaled image) and a VAE Encode already added; returns the edit's id.
    ``method`` "CP then Encode": the inversion's method, and the preview VAE-encoded into the sampler."""
    enc = w.add("VAEEncode", (x - 220, 360), pixels=3, vae=(1, 2))
    pair = w.add("RegionMaskPair", (370, 540), {"shapes": shapes}, image=3)
    mapping = w.add("RegionToPointMapping", (830, 540), region_pairs=pair, latent=enc, image=3)
    inv = w.add("DDPMInvertAndCache", (x, 60),
                {"steps": 20, "start_t": 0.5, "seed": 0, **({"method": method} if method else {})},
                model=model, positive=positive, latent=enc)
    extra = {}
    if method == "CP then Encode":
        extra["preview_latent"] = w.add("VAEEncode", (x + 120, 540), pixels=(mapping, 1), vae=(1, 2))
    edit = w.add("RegionDragKSampler", (x + 340, 60),
                 {"end_t": 0.2, "noise_weight": 1.0, "seed": 0, "mutual_self_attention": True},
                 model=model, inversion=inv, drag_map=mapping, positive=positive, **extra)
    dec = w.add("VAEDecode", (x + 680, 60), samples=edit, vae=(1, 2))
    w.add("SaveImage", (x + 680, 160), {"filename_prefix": save_prefix}, images=dec)
    w.add("PreviewImage", (1130, 540), images=(mapping, 1))
    return edit, dec


POINTS_SHAPES = json.dumps({"version": 2, "width": 512, "height": 512, "pairs": [
    {"handle": {"type": "polygon", "points": [[300, 226], [398, 228], [398, 258], [300, 262]]},
     "points": [{"handle": [310, 244], "target": [318, 206]}, {"handle": [388, 243], "target": [372, 176]}]}]})


def cp_then_encode() -> Workflow:
    w = base("RegionDrag, method 'CP then Encode' (the authors' released tool's second method): the copy-paste "
             "happens first, in pixels. Region-to-Point Mapping's preview (the pasted image) goes through VAE "
             "Encode into RegionDrag KSampler's preview_latent; DDPM Invert-and-Cache, method 'CP then Encode', "
             "inverts the image deterministically and caches its keys/values. When only the regions change, "
             "ComfyUI re-runs the mapping, the preview's VAE Encode and the sampler (which inverts the preview); "
             "the image's inversion stays cached.")
    return one_prompt_edit(w, method="CP then Encode")


def region_points() -> Workflow:
    w = base("RegionDrag, region + points (shapes version 2): two handle -> target point pairs inside the handle "
             "region move the whole region (each pixel follows its 4 nearest point pairs), as the authors' "
             "released tool's region + points mode. Draw them with the editor's Points tool.")
    return one_prompt_edit(w, shapes=POINTS_SHAPES)


def one_prompt_edit(w: Workflow, **options) -> Workflow:
    """The example prompt and the RegionDrag nodes (``options`` for :func:`regiondrag`) on the base nodes."""
    pos = w.add("CLIPTextEncode", (370, 60), {"text": PROMPT}, clip=(1, 1))
    regiondrag(w, (1, 0), pos, **options)
    return w


def live_edit() -> Workflow:
    """The edit for live work: no Save Image (a file per redraw), the edit's Preview Image right beside
    the editor, and the editor's Result layer on."""
    w = base("RegionDrag, live: set the Run button to 'Run (On Change)' (its menu), run once (the inversion), then "
             "draw. Each finished change of the regions (a region closed, moved or reshaped, a point pair placed, "
             "Undo) queues one run; ComfyUI keeps DDPM Invert-and-Cache cached, so a run is the denoising half "
             "only. The edit shows in the editor (its Result layer, on here) and in the Preview Image beside it. "
             "A change made while the edit of the previous regions is still denoising stops that run (the "
             "editor's 'Stop stale', on by default); the inversion is never interrupted. A new image, prompt or "
             "model runs the inversion again.")
    pos = w.add("CLIPTextEncode", (370, 60), {"text": PROMPT}, clip=(1, 1))
    enc = w.add("VAEEncode", (700, 360), pixels=3, vae=(1, 2))
    pair = w.add("RegionMaskPair", (370, 540), {"shapes": SHAPES}, image=3,
                 properties={"regiondrag_show_result": True, "regiondrag_stop_stale": True})
    mapping = w.add("RegionToPointMapping", (830, 540), region_pairs=pair, latent=enc, image=3)
    inv = w.add("DDPMInvertAndCache", (920, 60), {"steps": 20, "start_t": 0.5, "seed": 0},
                model=(1, 0), positive=pos, latent=enc)
    edit = w.add("RegionDragKSampler", (1260, 60),
                 {"end_t": 0.2, "noise_weight": 1.0, "seed": 0, "mutual_self_attention": True},
                 model=(1, 0), inversion=inv, drag_map=mapping, positive=pos)
    dec = w.add("VAEDecode", (1600, 60), samples=edit, vae=(1, 2))
    w.add("PreviewImage", (830, 690), title="the edit (live)", images=dec)
    return w


def controlnet() -> Workflow:
    w = base("RegionDrag with a ControlNet: the ControlNet-carrying positive conditioning goes to both DDPM "
             "Invert-and-Cache and RegionDrag KSampler (they must get the same one). Here a tile ControlNet "
             "takes the scaled image as its hint; any SD1.5 ControlNet works the same way.")
    pos = w.add("CLIPTextEncode", (370, 60), {"text": PROMPT}, clip=(1, 1))
    neg = w.add("CLIPTextEncode", (370, 200), {"text": ""}, title="negative (unused by RegionDrag)", clip=(1, 1))
    cn = w.add("ControlNetLoader", (20, 60), {"control_net_name": "control_v11f1e_sd15_tile.safetensors"})
    apply = w.add("ControlNetApplyAdvanced", (720, 160),
                  {"strength": 0.6, "start_percent": 0.0, "end_percent": 1.0},
                  positive=pos, negative=neg, control_net=cn, image=3, vae=(1, 2))
    regiondrag(w, (1, 0), (apply, 0), x=1080)
    return w


def lora() -> Workflow:
    w = base("RegionDrag with a LoRA: LoraLoader's MODEL feeds both RegionDrag nodes and its CLIP the prompt, "
             "so the inversion and the edit run the LoRA-patched model.")
    lo = w.add("LoraLoader", (20, 40), {"lora_name": "my_style_lora.safetensors", "strength_model": 0.8,
                                        "strength_clip": 0.8}, model=(1, 0), clip=(1, 1))
    pos = w.add("CLIPTextEncode", (370, 60), {"text": PROMPT}, clip=(lo, 1))
    regiondrag(w, (lo, 0), pos)
    return w


def combined_prompts() -> Workflow:
    w = base("RegionDrag with combined prompts: two prompts joined by Conditioning (Combine) feed both "
             "RegionDrag nodes; keys/values are cached per prompt entry, however ComfyUI batches them.")
    p1 = w.add("CLIPTextEncode", (370, 20), {"text": PROMPT}, clip=(1, 1))
    p2 = w.add("CLIPTextEncode", (370, 170), {"text": "crayon texture, white paper"}, clip=(1, 1))
    comb = w.add("ConditioningCombine", (700, 120), conditioning_1=p1, conditioning_2=p2)
    regiondrag(w, (1, 0), comb)
    return w


def upscale_chain() -> Workflow:
    w = base("RegionDrag followed by an upscale: the edited LATENT goes through Upscale Latent By and a second "
             "KSampler pass (denoise 0.45, the usual hires fix), then Upscale Image By.")
    pos = w.add("CLIPTextEncode", (370, 60), {"text": PROMPT}, clip=(1, 1))
    neg = w.add("CLIPTextEncode", (370, 200), {"text": "blurry, lowres"}, title="negative", clip=(1, 1))
    edit, _ = regiondrag(w, (1, 0), pos, save_prefix="RegionDrag_edit")
    up = w.add("LatentUpscaleBy", (1260, 320), {"upscale_method": "nearest-exact", "scale_by": 1.5}, samples=edit)
    ks = w.add("KSampler", (1600, 320), {"seed": 0, "steps": 20, "cfg": 7.0, "sampler_name": "euler",
                                         "scheduler": "normal", "denoise": 0.45},
               model=(1, 0), positive=pos, negative=neg, latent_image=up)
    dec = w.add("VAEDecode", (1940, 320), samples=ks, vae=(1, 2))
    big = w.add("ImageScaleBy", (1940, 420), {"upscale_method": "lanczos", "scale_by": 2.0}, image=dec)
    w.add("SaveImage", (2260, 320), {"filename_prefix": "RegionDrag_upscaled"}, images=big)
    return w


def dragbench() -> Workflow:
    w = Workflow("RegionDrag on one DragBench sample, scored as in the paper. Put the authors' drag_data folder "
                 "(dragbench-sr, dragbench-dr) in ComfyUI's input folder and pick a sample by index. The dense point "
                 "pairs go to the sampler as they are (Point Pairs to Drag Map), the editable area is the "
                 "sampler's edit_mask and the original is kept outside it (Image Composite Masked), as the "
                 "authors' code does. DragBench Score takes the SD2.1 checkpoint (v2-1_768-ema-pruned) for "
                 "the DIFT features of MD, and LPIPS (AlexNet). Settings of the paper's run: 20 steps, start_t "
                 "0.5, end_t 0.2, noise 1.0, seed 42. For a whole folder over one or more servers use "
                 "scripts/dragbench.py.")
    w.add("CheckpointLoaderSimple", (20, 200), {"ckpt_name": "v1-5-pruned-emaonly.safetensors"})
    sample = w.add("RegionDragBenchSample", (20, 360), {"folder": "drag_data/dragbench-sr", "index": 0, "sample": ""})
    pos = w.add("CLIPTextEncode", (370, 60), {"text": ""}, clip=(1, 1), text=(sample, 1))
    enc = w.add("VAEEncode", (370, 360), pixels=(sample, 0), vae=(1, 2))
    inv = w.add("DDPMInvertAndCache", (720, 60), {"steps": 20, "start_t": 0.5, "seed": 42},
                model=(1, 0), positive=pos, latent=enc)
    pairs = w.add("RegionDragPointPairs", (370, 460), {"pairs": ""}, latent=enc, drag_points=(sample, 2),
                  image=(sample, 0))
    edit = w.add("RegionDragKSampler", (1060, 60),
                 {"end_t": 0.2, "noise_weight": 1.0, "seed": 42, "mutual_self_attention": True},
                 model=(1, 0), inversion=inv, drag_map=(pairs, 0), positive=pos, edit_mask=(sample, 3))
    dec = w.add("VAEDecode", (1400, 60), samples=edit, vae=(1, 2))
    kept = w.add("ImageCompositeMasked", (1400, 160), {"x": 0, "y": 0, "resize_source": False},
                 destination=(sample, 0), source=dec, mask=(sample, 3))
    w.add("SaveImage", (1720, 60), {"filename_prefix": "RegionDrag_dragbench"}, images=kept)
    dift = w.add("CheckpointLoaderSimple", (1060, 560), {"ckpt_name": "v2-1_768-ema-pruned.safetensors"},
                 title="SD2.1 for DIFT (MD)")
    w.add("RegionDragBenchScore", (1400, 420), {"dift_size": 768, "ensemble": 8, "timestep": 261, "dift_seed": 0,
                                                 "lpips_backbone": "AlexNet (pretrained)"},
          original=(sample, 0), edited=kept, score_points=(sample, 4), prompt=(sample, 1), dift_model=(dift, 0),
          dift_clip=(dift, 1), dift_vae=(dift, 2))
    w.add("PreviewImage", (720, 460), images=(pairs, 1))
    return w


EXAMPLES = {
    "regiondrag_cp_then_encode_edit": cp_then_encode,
    "regiondrag_region_points_edit": region_points,
    "regiondrag_controlnet_edit": controlnet,
    "regiondrag_lora_edit": lora,
    "regiondrag_combined_prompts_edit": combined_prompts,
    "regiondrag_upscale_chain": upscale_chain,
    "regiondrag_dragbench_score": dragbench,
    "regiondrag_live_edit": live_edit,
}


def render(name: str) -> dict:
    """{relative path: JSON text} of one example's two files."""
    w = EXAMPLES[name]()
    return {f"{name}.json": json.dumps(w.ui(), indent=1) + "\n",
            f"api/{name}_api.json": json.dumps(w.api(), indent=1) + "\n"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when a file is out of date")
    ap.add_argument("--out", default=OUT, help="folder to write (default: example_workflows/)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stale = []
    for name in EXAMPLES:
        for rel, text in render(name).items():
            path = os.path.join(args.out, rel)
            old = open(path).read() if os.path.exists(path) else None
            if old == text:
                continue
            stale.append(rel)
            if not args.check:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(text)
                log.info("wrote %s", path)
    if args.check and stale:
        log.error("out of date (run python tools/make_workflows.py): %s", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
