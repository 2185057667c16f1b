"""DragBench in ComfyUI: load a sample, turn explicit point pairs into a DRAG_MAP, score an edit (MD, LPIPS).

Thin nodes over regiondrag_core.dragbench (files, restricted unpickling, the released evaluator's
matching) and regiondrag_core.mapping (point pairs to a DRAG_MAP); nodes/scoring.py runs the models."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from comfy_api.latest import io, ui

import folder_paths

from ..regiondrag_core.dragbench import (crop_to_multiple, find_samples, mean_distance, read_sample, resolve_inside,
                                         side_by_side)
from ..regiondrag_core.errors import RegionDragInputError
from ..regiondrag_core.mapping import PointPairs, drag_map_from_pairs, point_pairs
from .errors import node_errors
from .region_nodes import _image_size
from .sampling_nodes import latent_samples
from .scoring import LPIPS_BACKBONES, PRETRAINED, check_dift_model, dift_features, lpips_distance, lpips_model
from .socket_types import DragMapType, DragPointsType

log = logging.getLogger("RegionDrag")

LOAD = "RegionDragBenchSample"
PAIRS = "RegionDragPointPairs"
SCORE = "RegionDragBenchScore"
SAMPLE_FILES = ("original_image.png", "meta_data_region.pkl", "meta_data.pkl")
MAX_PAIRS_JSON = 8 * 2**20   # characters of the pairs widget


# ------------------------------------------------------------------------------ the loader
def sample_folder(folder: str, index: int, sample: str = "") -> tuple[Path, Path]:
    """(dataset root, sample folder) inside the input folder, by ``sample`` path or by ``index``."""
    base = Path(folder_paths.get_input_directory())
    root = resolve_inside(base, (folder or "").strip(), "folder")
    if not root.is_dir():
        raise RegionDragInputError("folder", f"{folder!r} is not a folder in ComfyUI's input folder ({base}).",
                                   "Put the DragBench folder (dragbench-sr or dragbench-dr) there and give its name.")
    sample = (sample or "").strip()
    if sample:
        path = resolve_inside(root, sample, "sample")
        if not (path / SAMPLE_FILES[0]).is_file():
            raise RegionDragInputError("sample", f"{sample!r} in {folder!r} holds no {SAMPLE_FILES[0]}.",
                                       "Give a sample folder's path inside the dataset (like 'animals/1') or "
                                       "leave it empty and pick by index.")
        return root, path
    found = find_samples(root)
    if not found:
        raise RegionDragInputError("folder", f"{folder!r} holds no DragBench sample (a folder with "
                                   f"{', '.join(SAMPLE_FILES)}).", "Give the dragbench-sr or dragbench-dr folder.")
    if not 0 <= int(index) < len(found):
        raise RegionDragInputError("index", f"is {index}, but {folder!r} holds {len(found)} samples.",
                                   f"Use 0 to {len(found) - 1}.")
    return root, resolve_inside(root, str(Path(found[int(index)]).relative_to(root)), "index")


def _fingerprint(folder: Path) -> str:
    h = hashlib.sha256(str(folder).encode())
    for name in SAMPLE_FILES:
        try:
            st = (folder / name).stat()
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"{name}:missing".encode())
    return h.hexdigest()


class RegionDragBenchSample(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=LOAD,
            display_name="DragBench Sample",
            category="RegionDrag/DragBench",
            description="One DragBench sample (or any folder in its format) from ComfyUI's input folder: the "
                        "image, its prompt, the dense drag point pairs and editable area to edit with, and the "
                        "sparse point pairs to score with. Pickles are read by a restricted loader that runs no code.",
            inputs=[
                io.String.Input("folder", default="drag_data/dragbench-sr",
                                tooltip="The dataset folder inside ComfyUI's input folder: the authors' "
                                        "drag_data/dragbench-sr or drag_data/dragbench-dr, or any folder in "
                                        "that format. Images whose sides are not multiples of 8 are "
                                        "centre-cropped as VAE Encode crops them."),
                io.Int.Input("index", default=0, min=0, max=1_000_000,
                             tooltip="Which sample, in the order of their paths (SR: <id>; DR: <category>/<id>)."),
                io.String.Input("sample", default="", optional=True,
                                tooltip="A sample's path inside the folder (like 'animals/JH_2023-09-14'); when "
                                        "given it is used instead of index."),
            ],
            outputs=[
                io.Image.Output(display_name="image", tooltip="original_image.png"),
                io.String.Output(display_name="prompt", tooltip="The sample's prompt (for CLIP Text Encode)."),
                io.Custom(DragPointsType).Output(display_name="drag_points",
                                                 tooltip="Dense handle->target pixel pairs (meta_data_region.pkl), "
                                                         "for Point Pairs to Drag Map."),
                io.Mask.Output(display_name="edit_mask", tooltip="The editable area, for RegionDrag KSampler's "
                                                                  "edit_mask (and to keep the rest exactly)."),
                io.Custom(DragPointsType).Output(display_name="score_points",
                                                 tooltip="Sparse handle->target pairs (meta_data.pkl), for "
                                                         "DragBench Score."),
                io.String.Output(display_name="name", tooltip="The sample's path inside the folder."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, folder="", index=0, sample=""):
        try:  # files changed on disk re-run the node (and the edit)
            return _fingerprint(sample_folder(folder, index, sample)[1])
        except (RegionDragInputError, OSError):
            return float("nan")   # never equal: the error is reported by execute

    @classmethod
    def execute(cls, folder, index, sample="") -> io.NodeOutput:
        return io.NodeOutput(*load_sample(folder, index, sample))


@node_errors(LOAD)
def load_sample(folder, index, sample=""):
    root, path = sample_folder(folder, index, sample)
    s = crop_to_multiple(read_sample(path, root=root), 8)   # as VAE Encode crops: the edit's pixels line up
    image = torch.from_numpy(s.image.astype(np.float32) / 255.0)[None]
    mask = torch.from_numpy(s.mask.astype(np.float32))[None]
    log.info("RegionDrag: DragBench sample %s (%dx%d, %d drag pairs, %d score pairs)", s.name,
             s.image.shape[1], s.image.shape[0], len(s.drag.handle), len(s.score.handle))
    return image, s.prompt, s.drag, mask, s.score, s.name


# ------------------------------------------------------------------------------ point pairs -> DRAG_MAP
def _pairs_from_json(text: str, size) -> PointPairs:
    """``[[hx, hy, tx, ty], ...]`` or ``{"handle": [[x, y], ...], "target": [[x, y], ...]}`` in image pixels."""
    if len(text) > MAX_PAIRS_JSON:
        raise RegionDragInputError("pairs", f"holds {len(text)} characters; the limit is {MAX_PAIRS_JSON}.",
                                   "Give fewer pairs, or connect drag_points from a loader.")
    fix = 'Write [[hx, hy, tx, ty], ...] or {"handle": [[x, y], ...], "target": [[x, y], ...]} in image pixels.'
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise RegionDragInputError("pairs", f"is not valid JSON ({e.msg}, line {e.lineno}).", fix) from None
    try:
        if isinstance(raw, dict):
            handle, target = np.asarray(raw.get("handle"), float), np.asarray(raw.get("target"), float)
        else:
            quads = np.asarray(raw, float)
            if quads.ndim != 2 or quads.shape[1] != 4:
                raise ValueError
            handle, target = quads[:, :2], quads[:, 2:]
    except (TypeError, ValueError):
        raise RegionDragInputError("pairs", "is not a list of point pairs.", fix) from None
    return point_pairs(handle, target, size, input_name="pairs")


def _preview(image, pairs: PointPairs) -> np.ndarray:
    """Pixel copy-paste of the pairs (each target pixel takes its handle pixel), or the points on black."""
    h, w = pairs.image_size
    if image is None:
        out = np.zeros((h, w, 3), np.float32)
        out[pairs.handle[:, 1], pairs.handle[:, 0], 0] = 1.0
        out[pairs.target[:, 1], pairs.target[:, 0], 2] = 1.0
        return out
    src = image[0, :, :, :3].cpu().numpy().astype(np.float32)
    out = src.copy()
    out[pairs.target[:, 1], pairs.target[:, 0]] = src[pairs.handle[:, 1], pairs.handle[:, 0]]
    return out


class RegionDragPointPairs(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=PAIRS,
            display_name="Point Pairs to Drag Map",
            category="RegionDrag",
            description="Explicit handle->target pixel pairs (dense, as DragBench gives them, or typed as JSON) "
                        "as a DRAG_MAP for RegionDrag KSampler, exactly as given: each pair moves the latent "
                        "pixel under its handle point onto the one under its target point.",
            inputs=[
                io.Latent.Input("latent", tooltip="The VAE-encoded image (its size sets the map's resolution)."),
                io.Custom(DragPointsType).Input("drag_points", optional=True,
                                                tooltip="Point pairs from DragBench Sample."),
                io.String.Input("pairs", default="", multiline=True, optional=True,
                                tooltip='Or type them: [[hx, hy, tx, ty], ...] in image pixels.'),
                io.Image.Input("image", optional=True,
                               tooltip="The image, for a pixel copy-paste preview (and the size of typed pairs)."),
            ],
            outputs=[
                io.Custom(DragMapType).Output(display_name="DRAG_MAP", tooltip="For RegionDrag KSampler."),
                io.Image.Output(display_name="preview", tooltip="Pixel copy-paste preview of the pairs."),
            ],
        )

    @classmethod
    def execute(cls, latent, drag_points=None, pairs="", image=None) -> io.NodeOutput:
        return io.NodeOutput(*map_point_pairs(latent, drag_points, pairs, image))


@node_errors(PAIRS)
def map_point_pairs(latent, drag_points=None, pairs="", image=None):
    samples = latent_samples(latent)
    h, w = int(samples.shape[2]), int(samples.shape[3])
    isize = _image_size(image)
    typed = isinstance(pairs, str) and pairs.strip()
    if drag_points is not None and typed:
        raise RegionDragInputError("pairs", "is given while drag_points is connected.",
                                   "Use one of them: clear pairs or disconnect drag_points.")
    if drag_points is not None:
        if not isinstance(drag_points, PointPairs):
            raise RegionDragInputError("drag_points", "is not a DRAG_POINTS value.", "Connect DragBench Sample.")
        pp = drag_points
    elif typed:
        pp = _pairs_from_json(pairs, isize or (h * 8, w * 8))
    else:
        raise RegionDragInputError("drag_points", "no point pairs were given.",
                                   "Connect drag_points from DragBench Sample, or type pairs.")
    if isize is not None and isize != tuple(pp.image_size):
        raise RegionDragInputError("image", f"is {isize[1]}x{isize[0]} but the pairs are on "
                                   f"{pp.image_size[1]}x{pp.image_size[0]}.", "Connect the same image.")
    drag_map = drag_map_from_pairs(pp, (h, w))
    prev = _preview(image, pp)
    return drag_map, torch.from_numpy(np.ascontiguousarray(prev, dtype=np.float32))[None]


# ------------------------------------------------------------------------------ scoring
def _uint8(image, input_name: str) -> np.ndarray:
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (3, 4):
        raise RegionDragInputError(input_name, "expects an IMAGE [B, H, W, 3].", "Connect an IMAGE output.")
    if image.shape[0] != 1:
        raise RegionDragInputError(input_name, f"holds a batch of {image.shape[0]} images; one is scored at a "
                                   "time.", "Pick one image (Image From Batch).")
    return (image[0, :, :, :3].float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


class RegionDragBenchScore(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=SCORE,
            display_name="DragBench Score (MD, LPIPS)",
            category="RegionDrag/DragBench",
            is_output_node=True,   # scores (and shows) without a node after it
            description="The paper's two figures for one edit. MD: how far the dragged content lands from its "
                        "targets (DIFT features of SD2.1 matched near each point pair, distance / image size; the "
                        "authors' evaluator). LPIPS: how much of the image changed (AlexNet). Lower is better.",
            inputs=[
                io.Image.Input("original", tooltip="The image before the edit."),
                io.Image.Input("edited", tooltip="The edited image (resized to the original's size if needed)."),
                io.Custom(DragPointsType).Input("score_points", tooltip="From DragBench Sample's score_points."),
                io.String.Input("prompt", force_input=True, tooltip="The sample's prompt (DIFT's text input)."),
                io.Model.Input("dift_model", tooltip="SD2.1 (v2-1_768-ema-pruned) from Load Checkpoint: its UNet "
                                                      "gives the DIFT features."),
                io.Clip.Input("dift_clip", tooltip="The same checkpoint's CLIP."),
                io.Vae.Input("dift_vae", tooltip="The same checkpoint's VAE."),
                io.Int.Input("dift_size", default=768, min=64, max=2048, step=64,
                             tooltip="Image side for the features (evaluator: 768)."),
                io.Int.Input("ensemble", default=8, min=1, max=64,
                             tooltip="Noise draws averaged (evaluator: 8)."),
                io.Int.Input("timestep", default=261, min=0, max=999, tooltip="DIFT timestep (evaluator: 261)."),
                io.Int.Input("dift_seed", default=0, min=0, max=0xffffffffffffffff,
                             tooltip="Seed of the DIFT noise draws (fixed: the same image scores the same)."),
                io.Combo.Input("lpips_backbone", options=list(LPIPS_BACKBONES), default=PRETRAINED,
                               tooltip="LPIPS' AlexNet: pretrained (torchvision downloads it once), or random "
                                       "to test the pipeline offline (figures mean nothing)."),
            ],
            outputs=[
                io.Float.Output(display_name="md", tooltip="Mean Distance (fraction of the image size)."),
                io.Float.Output(display_name="lpips", tooltip="LPIPS between original and edited."),
                io.Image.Output(display_name="comparison",
                                tooltip="Original | edited, handle (red), target (blue) and matched points."),
            ],
        )

    @classmethod
    def execute(cls, original, edited, score_points, prompt, dift_model, dift_clip, dift_vae, dift_size=768,
                ensemble=8, timestep=261, dift_seed=0, lpips_backbone=PRETRAINED) -> io.NodeOutput:
        md, lp, comp = score_edit(original, edited, score_points, prompt, dift_model, dift_clip, dift_vae,
                                  dift_size, ensemble, timestep, dift_seed, lpips_backbone)
        shown = ui.PreviewImage(comp, cls=cls).as_dict()
        shown["regiondrag_score"] = [{"md": md, "lpips": lp}]
        return io.NodeOutput(md, lp, comp, ui=shown)


@node_errors(SCORE)
def score_edit(original, edited, score_points, prompt, dift_model, dift_clip, dift_vae, dift_size=768,
               ensemble=8, timestep=261, seed=0, lpips_backbone=PRETRAINED):
    src, trg = _uint8(original, "original"), _uint8(edited, "edited")
    if not isinstance(score_points, PointPairs):
        raise RegionDragInputError("score_points", "is not a DRAG_POINTS value.",
                                   "Connect DragBench Sample's score_points.")
    if tuple(score_points.image_size) != src.shape[:2]:
        raise RegionDragInputError("score_points", f"are on a {score_points.image_size[1]}x"
                                   f"{score_points.image_size[0]} image but original is {src.shape[1]}x"
                                   f"{src.shape[0]}.", "Connect the points and the image of the same sample.")
    if trg.shape != src.shape:  # the evaluator's resize (cv2, bilinear); the points are the original's pixels
        trg = cv2.resize(trg, (src.shape[1], src.shape[0]))
    if dift_size % 64:
        raise RegionDragInputError("dift_size", f"is {dift_size}; the features need a multiple of 64.",
                                   "Use 768 (the evaluator's).")
    check_dift_model(dift_model)
    lp_net = lpips_model(lpips_backbone)   # before the long DIFT run: a missing AlexNet fails fast
    kw = dict(size=int(dift_size), timestep=int(timestep), ensemble=int(ensemble), seed=int(seed))
    f_src = dift_features(dift_model, dift_clip, dift_vae, src, prompt, **kw)
    f_trg = dift_features(dift_model, dift_clip, dift_vae, trg, prompt, **kw)
    md, matches = mean_distance(f_src, f_trg, score_points.handle, score_points.target, src.shape[:2])
    lp = lpips_distance(lp_net, src, trg)
    log.info("RegionDrag: DragBench score MD %.4f, LPIPS %.4f", md, lp)
    comp = side_by_side(src, trg, score_points.handle, score_points.target, matches)
    return float(md), float(lp), torch.from_numpy(comp.astype(np.float32) / 255.0)[None]
