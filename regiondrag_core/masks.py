"""Region pairs: a handle and a target bool mask each, from ComfyUI MASK inputs or the rasterised shapes JSON."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import RegionDragInputError
from .geometry import shape_bbox
from .points import idle_parts, moved_region, point_pixels
from .raster import rasterize_shape
from .shapes import MAX_PAIRS, MAX_POINT_PAIRS, ShapeSet, scale_shapes

log = logging.getLogger(__name__)

__all__ = ["RegionPair", "pairs_from_shapes", "pairs_from_masks"]


@dataclass
class RegionPair:
    """One handle region and one target region as bool masks ``[H, W]`` of the same size.

    ``handle_polygon``/``target_polygon`` are the vertices (float (K, 2), pixel (x, y)) when that
    side was drawn as a polygon, else ``None``; the mapping uses them for the exact affine or
    perspective map of triangles and quadrilaterals.

    A region + points pair (shapes version 2) has ``handle_points``/``target_points``: float
    ``(P, 2)`` pixel ``(x, y)`` of each handle point and its target, row *k* one point pair; the
    mapping moves the handle region by them (:mod:`.points`), and ``target`` is where they move it
    (:func:`.points.moved_region`).
    """

    handle: np.ndarray
    target: np.ndarray
    handle_polygon: np.ndarray | None = None
    target_polygon: np.ndarray | None = None
    handle_points: np.ndarray | None = None
    target_points: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.handle.shape[:2])

    @property
    def has_points(self) -> bool:
        """Whether point pairs (not the target mask) say where the handle region goes."""
        return self.handle_points is not None

    def validate(self, input_name: str, index: int = 0, what: str = "pair") -> "RegionPair":
        """Check both masks: 2-D bool, same size, not empty. Returns ``self``."""
        label = f"{what} {index + 1}"
        for side, m in (("handle", self.handle), ("target", self.target)):
            if not isinstance(m, np.ndarray) or m.ndim != 2 or m.dtype != np.bool_:
                raise RegionDragInputError(
                    input_name, f"{label} {side} region is not a 2-D bool mask.",
                    "Pass masks as [H, W] arrays.")
        if self.handle.shape != self.target.shape:
            raise RegionDragInputError(
                input_name,
                f"{label}: handle region is {_wxh(self.handle.shape)} but target region is "
                f"{_wxh(self.target.shape)}.",
                "Draw both regions on the same image size.")
        if self.has_points:
            hp, tp = self.handle_points, self.target_points
            ok = all(isinstance(a, np.ndarray) and a.ndim == 2 and a.shape[1:] == (2,) and np.isfinite(a).all()
                     for a in (hp, tp))
            if not ok or hp.shape != tp.shape or not 1 <= len(hp) <= MAX_POINT_PAIRS:
                raise RegionDragInputError(
                    input_name, f"{label}: its point pairs must be 1 to {MAX_POINT_PAIRS} finite handle and "
                    "target points, (P, 2) arrays of the same length.", "Give one target point per handle point.")
        for side, m in (("handle", self.handle), ("target", self.target)):
            if not m.any():
                if side == "target" and self.has_points:
                    raise RegionDragInputError(
                        input_name, f"{label}: the point pairs move the handle region entirely off the "
                        f"{_wxh(m.shape)} image.", "Place the target points so that the region stays on the image.")
                raise RegionDragInputError(
                    input_name, f"{label} {side} region is empty.",
                    f"Paint or draw a {side} region for {label}, or remove the pair.")
        return self


def _wxh(shape) -> str:
    return f"{shape[1]}x{shape[0]}"


# -------------------------------------------------------------------------------- from shapes


def pairs_from_shapes(shapeset: ShapeSet, size: tuple[int, int], input_name: str = "shapes") -> list[RegionPair]:
    """Rasterise every pair of ``shapeset`` at ``size = (H, W)`` (scaling it first if needed).

    An empty side raises an error that says whether the shape lies outside the ``WxH`` image or
    is too small to cover a pixel. A region + points pair is checked here: every point on the
    image, every handle point inside its handle region, and the region not moved off the image.
    """
    H, W = int(size[0]), int(size[1])
    ss = scale_shapes(shapeset, (H, W))
    out = []
    for i, (hs, ts) in enumerate(ss.pairs):
        if ts["type"] == "points":
            out.append(_points_pair(hs, ts, shapeset.pairs[i][1], (H, W), i, input_name))
            continue
        masks = []
        for side, shape in (("handle", hs), ("target", ts)):
            where = f"pair {i + 1} {side} (pairs[{i}].{side})"
            masks.append(_rasterize(shape, (H, W), where, input_name))
        out.append(RegionPair(
            handle=masks[0], target=masks[1],
            handle_polygon=hs["points"].copy() if hs["type"] == "polygon" else None,
            target_polygon=ts["points"].copy() if ts["type"] == "polygon" else None,
        ))
    return out


def _rasterize(shape: dict, size: tuple[int, int], where: str, input_name: str) -> np.ndarray:
    """The shape's mask; an error when it covers no pixel of the image."""
    H, W = size
    try:
        m = rasterize_shape(shape, (H, W))
    except RegionDragInputError as e:
        raise RegionDragInputError(input_name, f"{where}: {e.problem}", e.fix) from None
    if not m.any():
        x0, y0, x1, y1 = shape_bbox(shape)
        if x1 < 0 or y1 < 0 or x0 > W - 1 or y0 > H - 1:
            raise RegionDragInputError(
                input_name,
                f"{where} lies outside the {W}x{H} image (its bounds are x {x0:.0f}..{x1:.0f}, "
                f"y {y0:.0f}..{y1:.0f}).",
                "Redraw it on the image, or give the shapes' width/height if they were drawn "
                "on a different image size.")
        raise RegionDragInputError(
            input_name, f"{where} covers no pixel of the {W}x{H} image (too small, or almost entirely "
            "outside it).",
            "Draw a larger region on the image or use a bigger brush.")
    return m


def _points_pair(hs: dict, ps: dict, drawn: dict, size: tuple[int, int], i: int, input_name: str) -> RegionPair:
    """A region + points pair at ``size``: ``ps`` the (scaled) point pairs, ``drawn`` them as written
    (for the messages)."""
    H, W = size
    handle = _rasterize(hs, size, f"pair {i + 1} handle (pairs[{i}].handle)", input_name)
    hpx, tpx = point_pixels(ps["handle"]), point_pixels(ps["target"])
    for k in range(len(hpx)):
        for side, px in (("handle", hpx[k]), ("target", tpx[k])):
            x, y = drawn[side][k]
            where = f"pair {i + 1} point {k + 1} {side} (pairs[{i}].points[{k}].{side})"
            if not (0 <= px[0] < W and 0 <= px[1] < H):
                raise RegionDragInputError(
                    input_name, f"{where}: ({x:g}, {y:g}) lies outside the {W}x{H} image.",
                    "Place the point on the image, or give the shapes' width/height if they were drawn on a "
                    "different image size.")
            if side == "handle" and not handle[px[1], px[0]]:
                raise RegionDragInputError(
                    input_name, f"{where}: ({x:g}, {y:g}) is not inside the pair's handle region.",
                    "Place every handle point inside its handle region (red), or draw the region over it.")
    idle = idle_parts(handle, hpx)
    if idle:
        log.warning("shapes pair %d: %d separate part(s) of the handle region hold no handle point and stay "
                    "in place", i + 1, idle)
    pair = RegionPair(handle=handle, target=moved_region(handle, hpx, tpx),
                      handle_polygon=hs["points"].copy() if hs["type"] == "polygon" else None,
                      handle_points=ps["handle"].copy(), target_points=ps["target"].copy())
    return pair.validate(input_name, i)


# --------------------------------------------------------------------------------- from masks


def _mask_to_numpy(mask: Any, input_name: str) -> np.ndarray:
    """ComfyUI MASK (torch/numpy, [H,W], [B,H,W] or [B,1,H,W]) to float32 numpy [B,H,W]."""
    if hasattr(mask, "detach"):  # torch tensor
        arr = mask.detach().float().cpu().numpy()
    else:
        try:
            arr = np.asarray(mask, dtype=np.float32)
        except (TypeError, ValueError):
            raise RegionDragInputError(input_name, f"expected a MASK, got {type(mask).__name__}.",
                                       "Connect a MASK output (e.g. Load Image's mask).") from None
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise RegionDragInputError(input_name, f"expected a MASK of shape [B, H, W], got {list(arr.shape)}.",
                                   "Connect a MASK output (e.g. Load Image's mask).")
    return arr


def pairs_from_masks(handle_mask: Any, target_mask: Any, handle_input: str = "handle_mask",
                     target_input: str = "target_mask") -> list[RegionPair]:
    """Region pairs from two ComfyUI MASKs (float 0..1, threshold 0.5: ``>= 0.5`` is inside).

    Batch item *i* of the handle mask pairs with item *i* of the target mask. Sizes and batch
    counts must match (at most ``MAX_PAIRS`` items); every item must be non-empty and every value
    finite.
    """
    h = _mask_to_numpy(handle_mask, handle_input)
    t = _mask_to_numpy(target_mask, target_input)
    both = f"{handle_input}/{target_input}"
    for name, arr in ((handle_input, h), (target_input, t)):
        if not np.isfinite(arr).all():
            raise RegionDragInputError(
                name, "holds NaN or infinite values; a MASK holds numbers from 0 to 1.",
                "Check the node that makes the mask (e.g. a division by zero), or paint it in the mask editor.")
    if h.shape[0] > MAX_PAIRS:
        raise RegionDragInputError(
            both, f"{handle_input} is a batch of {h.shape[0]} masks; the limit is {MAX_PAIRS} pairs.",
            "Merge regions into fewer masks, or run the edit in several passes.")
    if h.shape[1:] != t.shape[1:]:
        raise RegionDragInputError(
            both, f"{handle_input} is {_wxh(h.shape[1:])} but {target_input} is {_wxh(t.shape[1:])}.",
            "Paint both masks on the same image (same width and height).")
    if h.shape[0] != t.shape[0]:
        raise RegionDragInputError(
            both, f"{handle_input} has {h.shape[0]} masks but {target_input} has {t.shape[0]}.",
            "Give one target mask per handle mask (batch item i of each forms pair i).")
    out = []
    for i in range(h.shape[0]):
        hm = h[i] >= 0.5
        tm = t[i] >= 0.5
        for name, m in ((handle_input, hm), (target_input, tm)):
            if not m.any():
                item = f" (batch item {i + 1})" if h.shape[0] > 1 else ""
                raise RegionDragInputError(
                    name, f"the mask{item} is empty (no pixel >= 0.5).",
                    "Paint the region in the mask editor, or disconnect the input.")
        out.append(RegionPair(handle=hm, target=tm))
    return out
