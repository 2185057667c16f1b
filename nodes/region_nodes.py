"""RegionMaskPair and Region-to-Point Mapping: thin nodes over regiondrag_core.shapes/masks/mapping."""
from __future__ import annotations

import numpy as np
import torch
from comfy_api.latest import io, ui

from ..regiondrag_core.errors import RegionDragInputError
from ..regiondrag_core.mapping import build_drag_map, preview_image
from ..regiondrag_core.masks import pairs_from_masks, pairs_from_shapes
from ..regiondrag_core.shapes import MAX_PAIRS, parse_shapes
from .errors import node_errors
from .sampling_nodes import latent_samples
from .socket_types import DragMapType, RegionPairs, RegionPairsType

PAIR = "RegionMaskPair"
MAP = "RegionToPointMapping"

SHAPES_TOOLTIP = ("Handle/target shapes as JSON, written by the region editor on this node (polygons and brush "
                  "strokes in image pixels; with version 2 a pair may give handle->target point pairs inside its "
                  "handle region instead of a target shape; format in the README). Leave empty when using the "
                  "masks.")


def _image_size(image, input_name="image"):
    if image is None:
        return None
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (3, 4):
        raise RegionDragInputError(input_name, "expects an IMAGE [B, H, W, 3].", "Connect a Load Image node.")
    return int(image.shape[1]), int(image.shape[2])


class RegionMaskPair(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=PAIR,
            display_name="RegionMaskPair",
            category="RegionDrag",
            description="A handle region (what to move) and a target region (where it goes), drawn in the editor "
                        "on this node or given as masks. Chain several nodes for several pairs.",
            inputs=[
                io.String.Input("shapes", default="", multiline=True, tooltip=SHAPES_TOOLTIP),
                io.Image.Input("image", optional=True,
                               tooltip="The image being edited: the editor's background and the regions' size."),
                io.Mask.Input("handle_mask", optional=True,
                              tooltip="Brush mask of the handle region (e.g. from the mask editor). "
                                      "A batch gives one pair per mask."),
                io.Mask.Input("target_mask", optional=True,
                              tooltip="Brush mask of the target region, same size and count as handle_mask."),
                io.Custom(RegionPairsType).Input("region_pairs", optional=True,
                                                 tooltip="Earlier pairs to extend (chaining); later pairs win "
                                                         "where targets overlap."),
            ],
            outputs=[io.Custom(RegionPairsType).Output(display_name="REGION_PAIRS",
                                                       tooltip="All pairs so far, for Region-to-Point Mapping.")],
        )

    @classmethod
    def validate_inputs(cls, shapes=""):  # no **kwargs: ComfyUI keeps its own checks of the other inputs
        if isinstance(shapes, str) and shapes.strip():
            try:
                with node_errors(PAIR):
                    parse_shapes(shapes, input_name="shapes")
            except RegionDragInputError as e:
                return str(e)
        return True

    @classmethod
    def execute(cls, shapes="", image=None, handle_mask=None, target_mask=None, region_pairs=None) -> io.NodeOutput:
        out = region_pairs_of(shapes, image, handle_mask, target_mask, region_pairs)
        if image is not None:  # shown on the node: the editor draws over it
            return io.NodeOutput(out, ui=ui.PreviewImage(image[:1, :, :, :3], cls=cls))
        return io.NodeOutput(out)


@node_errors(PAIR)
def region_pairs_of(shapes="", image=None, handle_mask=None, target_mask=None, region_pairs=None) -> RegionPairs:
    """RegionMaskPair: the earlier pairs, then the mask pairs, then the drawn shapes' pairs."""
    pairs, size = [], _image_size(image)
    if region_pairs is not None:
        if not isinstance(region_pairs, RegionPairs):
            raise RegionDragInputError("region_pairs", "is not a REGION_PAIRS value.",
                                       "Connect another RegionMaskPair node.")
        pairs.extend(region_pairs.pairs)
        size = size or tuple(region_pairs.size)
    if (handle_mask is None) != (target_mask is None):
        missing = "target_mask" if target_mask is None else "handle_mask"
        raise RegionDragInputError(missing, "is missing: masks come in handle/target pairs.",
                                   f"Connect a mask to {missing} too, or disconnect the other mask.")
    if handle_mask is not None:
        mask_pairs = pairs_from_masks(handle_mask, target_mask)
        msize = tuple(mask_pairs[0].handle.shape)
        if size is not None and msize != tuple(size):
            raise RegionDragInputError(
                "handle_mask", f"is {msize[1]}x{msize[0]} but the image is {size[1]}x{size[0]}.",
                "Draw the masks on the same image (or resize them to it).")
        size = size or msize
        pairs.extend(mask_pairs)
    if isinstance(shapes, str) and shapes.strip():
        shapeset = parse_shapes(shapes, input_name="shapes")
        if size is None and shapeset.width and shapeset.height:
            size = (int(shapeset.height), int(shapeset.width))
        if size is None:
            raise RegionDragInputError("image", "is needed to know the image size of the drawn shapes.",
                                       "Connect the image being edited.")
        pairs.extend(pairs_from_shapes(shapeset, size, input_name="shapes"))
    if len(pairs) > MAX_PAIRS:
        raise RegionDragInputError("region_pairs", f"this chain holds {len(pairs)} pairs; the limit is "
                                   f"{MAX_PAIRS}.", "Merge neighbouring regions, or run the edit in several passes.")
    if not pairs:
        raise RegionDragInputError("shapes", "no handle/target regions were given.",
                                   "Draw a handle (red) and a target (blue) region in the editor on this node, "
                                   "or connect handle_mask and target_mask.")
    return RegionPairs(pairs=tuple(pairs), size=tuple(size))


def _overlay(pairs, size):
    """Regions on black: handle red, target blue (the paper's colours), when no image is given."""
    img = np.zeros(size + (3,), dtype=np.float32)
    for p in pairs:
        img[p.handle, 0] = 1.0
        img[p.target, 2] = 1.0
    return img


class RegionToPointMapping(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=MAP,
            display_name="Region-to-Point Mapping",
            category="RegionDrag",
            description="Dense handle->target point pairs at latent resolution (Algorithm 1 for free shapes, affine "
                        "or perspective maps for triangles and quads, the region moved by its point pairs for "
                        "region + points pairs), and a copy-paste preview.",
            inputs=[
                io.Custom(RegionPairsType).Input("region_pairs", tooltip="From RegionMaskPair."),
                io.Latent.Input("latent", tooltip="The VAE-encoded image (its size sets the map's resolution)."),
                io.Image.Input("image", optional=True,
                               tooltip="The image, for a pixel copy-paste preview of the edit."),
            ],
            outputs=[
                io.Custom(DragMapType).Output(display_name="DRAG_MAP", tooltip="For RegionDrag KSampler."),
                io.Image.Output(display_name="preview", tooltip="Pixel copy-paste preview (regions alone "
                                                                 "without an image)."),
            ],
        )

    @classmethod
    def execute(cls, region_pairs, latent, image=None) -> io.NodeOutput:
        return io.NodeOutput(*map_regions(region_pairs, latent, image))


@node_errors(MAP)
def map_regions(region_pairs, latent, image=None):
    """Region-to-Point Mapping: the DRAG_MAP at the latent's resolution and the preview IMAGE."""
    if not isinstance(region_pairs, RegionPairs):
        raise RegionDragInputError("region_pairs", "is not a REGION_PAIRS value.", "Connect RegionMaskPair.")
    samples = latent_samples(latent)
    h, w = int(samples.shape[2]), int(samples.shape[3])
    drag_map = build_drag_map(list(region_pairs.pairs), tuple(region_pairs.size), (h, w))
    isize = _image_size(image)
    if image is not None:
        if isize != tuple(region_pairs.size):
            raise RegionDragInputError(
                "image", f"is {isize[1]}x{isize[0]} but the regions were drawn on "
                         f"{region_pairs.size[1]}x{region_pairs.size[0]}.", "Connect the same image.")
        prev = preview_image(image[0, :, :, :3].cpu().numpy(), list(region_pairs.pairs))
    else:
        prev = _overlay(region_pairs.pairs, tuple(region_pairs.size))
    return drag_map, torch.from_numpy(np.ascontiguousarray(prev, dtype=np.float32))[None]
