"""Custom socket types of the pack (names are stable: saved workflows use them)."""
from __future__ import annotations

from dataclasses import dataclass

RegionPairsType = "REGION_PAIRS"
DragMapType = "DRAG_MAP"
InversionType = "INVERSION"
DragPointsType = "DRAG_POINTS"    # regiondrag_core.mapping.PointPairs: explicit pixel point pairs


@dataclass(frozen=True)
class RegionPairs:
    """The REGION_PAIRS value: handle/target pairs at pixel resolution, in drawing order."""

    pairs: tuple          # of regiondrag_core.masks.RegionPair
    size: tuple           # (H, W) pixels
