"""RegionDrag in plain torch/numpy/opencv. Imports nothing from ComfyUI."""
