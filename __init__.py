"""ComfyUI-RegionDrag: fast region-based drag editing (Lu, Li, Han, ECCV 2024) for ComfyUI."""
from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

from .nodes import NODES

WEB_DIRECTORY = "./web"


class RegionDragExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> RegionDragExtension:
    return RegionDragExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
