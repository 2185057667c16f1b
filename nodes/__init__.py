"""Node classes of ComfyUI-RegionDrag: validate input, call regiondrag_core, wrap ComfyUI types."""
from .bench_nodes import RegionDragBenchSample, RegionDragBenchScore, RegionDragPointPairs
from .region_nodes import RegionMaskPair, RegionToPointMapping
from .sampling_nodes import DDPMInvertAndCache, RegionDragKSampler

NODES = [RegionMaskPair, RegionToPointMapping, DDPMInvertAndCache, RegionDragKSampler, RegionDragPointPairs,
         RegionDragBenchSample, RegionDragBenchScore]
