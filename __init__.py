"""ComfyUI-RegionDrag: fast region-based drag editing (Lu, Li, Han, ECCV 2024) for ComfyUI."""
import importlib.util

from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

if importlib.util.find_spec("cv2") is None:
    raise ImportError("ComfyUI-RegionDrag needs OpenCV (cv2), which is not installed in ComfyUI's Python. Run "
                      "custom_nodes/ComfyUI-RegionDrag/install.py with that Python (it installs "
                      "opencv-python-headless), then restart ComfyUI.")

from .nodes import NODES  # noqa: E402

WEB_DIRECTORY = "./web"


class RegionDragExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> RegionDragExtension:
    return RegionDragExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
