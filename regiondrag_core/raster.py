"""Shapes to pixels as OpenCV draws them: polygons with ``cv2.fillPoly``, brush strokes as round dots
joined by thick ``cv2.line``s, in 1/16-px fixed point. web/js/regiondrag_raster.js follows the same
drawing step for step, so a shape covers the same pixels in the editor and here.

Sizes are ``(H, W)``; shapes are the normalised dicts of :mod:`.shapes`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .errors import RegionDragInputError
from .geometry import clip_polygon, clip_segment

__all__ = ["rasterize_polygon", "rasterize_shape"]

_CV_MAX_HALF = 16383            # cv2 draws lines at most 32767 px thick
_SAFE_COORD = float(1 << 20)    # beyond this, shapes are clipped before cv2 sees them
_SHIFT = 4  # sub-pixel bits for cv2 drawing (1/16 px)


def _fixed(pts: np.ndarray) -> np.ndarray:
    """Pixel coordinates to cv2 fixed point with ``_SHIFT`` fractional bits."""
    lim = (2 ** 31 - 1) / (1 << _SHIFT) - 1
    return np.round(np.clip(pts, -lim, lim) * (1 << _SHIFT)).astype(np.int32)



def rasterize_polygon(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Fill a polygon (float (K, 2) pixel coords) at ``size = (H, W)``; sub-pixel accurate.

    Vertices farther than 2**20 px out are first clipped (exactly) to a box 2 px around the image,
    so cv2's fixed-point coordinates never overflow."""
    H, W = int(size[0]), int(size[1])
    img = np.zeros((H, W), np.uint8)
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts) >= 3 and np.abs(pts).max() > _SAFE_COORD:
        pts = clip_polygon(pts, (-2.0, -2.0, W + 1.0, H + 1.0))
    if len(pts) >= 3:
        cv2.fillPoly(img, [_fixed(pts).reshape(-1, 1, 2)], 1, cv2.LINE_8, _SHIFT)
    return img.astype(bool)


def rasterize_shape(shape: dict, size: tuple[int, int]) -> np.ndarray:
    """Bool mask ``[H, W]`` of one shape at ``size = (H, W)``; parts outside the image are clipped.

    Polygons: ``cv2.fillPoly`` with 1/16-px vertex precision (boundary pixels included). Brush
    strokes: the pixels within ``size / 2`` of the stroke's polyline (round dots at the points
    joined by thick lines, i.e. round caps and joins), ``2 * floor(size / 2) + 1`` px wide.
    """
    H, W = int(size[0]), int(size[1])
    if shape["type"] == "polygon":
        return rasterize_polygon(shape["points"], (H, W))
    if shape["type"] != "brush":
        raise ValueError(f"unknown shape type {shape['type']!r}")
    img = np.zeros((H, W), np.uint8)
    for st in shape["strokes"]:
        d = float(st["size"])
        # cv2 fills |offset| <= R for an integer radius R and |offset| <= t/2 for an even line
        # thickness t, so R = floor(d/2), t = 2R paint the pixels within d/2 of the stroke: a
        # stroke of diameter d is 2*floor(d/2) + 1 px wide (odd d: exactly d).
        half = int(math.floor(d / 2 + 1e-9))
        raw = np.asarray(st["points"], np.float64).reshape(-1, 2)
        if half > _CV_MAX_HALF:
            corners = np.array([[0, 0], [W - 1, 0], [0, H - 1], [W - 1, H - 1]], np.float64)
            reach = np.sqrt(((raw[:, None, :] - corners[None]) ** 2).sum(-1)).max(axis=1).min()
            if half >= reach:  # one dot of the stroke already covers the whole image
                img[:] = 1
                continue
            raise RegionDragInputError(
                "shapes",
                f"a brush stroke {d:.0f} px wide at the {W}x{H} image size is wider than the "
                f"{2 * _CV_MAX_HALF + 1} px this pack paints.",
                "Use a smaller brush, or give the shapes' width/height of the image they were drawn on.")
        for line in _stroke_polylines(raw, half, H, W):
            pts = _fixed(line)
            for p in pts:
                cv2.circle(img, (int(p[0]), int(p[1])), half << _SHIFT, 1, -1, cv2.LINE_8, _SHIFT)
            if len(pts) > 1:
                thick = max(1, 2 * half)
                for p, q in zip(pts[:-1], pts[1:]):
                    cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 1, thick, cv2.LINE_8, _SHIFT)
    return img.astype(bool)


def _stroke_polylines(pts: np.ndarray, half: int, H: int, W: int) -> list[np.ndarray]:
    """The stroke as polylines safe for cv2: itself, or, with points farther than 2**20 px out,
    its segments clipped to the box ``half + 2`` px around the image (nothing outside that box
    is within ``half`` of a pixel, so the painted pixels are the same)."""
    if len(pts) == 0 or np.abs(pts).max() <= _SAFE_COORD:
        return [pts]
    box = (-half - 2.0, -half - 2.0, W + half + 1.0, H + half + 1.0)
    if len(pts) == 1:
        p = pts[0]
        inside = box[0] <= p[0] <= box[2] and box[1] <= p[1] <= box[3]
        return [pts] if inside else []
    return [seg for seg in (clip_segment(p, q, box) for p, q in zip(pts[:-1], pts[1:])) if seg is not None]

