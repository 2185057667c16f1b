"""Both halves hand ComfyUI the same latent image (in-process, CPU, a tiny UNet).

ComfyUI builds some models' extra input from the sampler's latent image (``BaseModel.concat_cond``:
a "concat_image" channel block, as image-conditioned models use). If the denoising half passed a
zeros latent while the inversion passed the real one, such a model would see other inputs in the
two halves and a no-region edit would not reproduce the image.
"""
from __future__ import annotations

import pytest
import torch

from support import tiny_positive, tiny_unet

pytestmark = [pytest.mark.host, pytest.mark.compat]


def concat_image_model():
    """A tiny UNet with 4 extra input channels that ComfyUI fills with the latent image."""
    m = tiny_unet(seed=4, in_channels=8)
    m.model.concat_keys = ("concat_image",)   # this instance only: ComfyUI's concat_cond reads the latent image
    return m


def test_denoising_sees_the_latent_image_the_inversion_saw(api):
    hc, sn, core = api
    model = concat_image_model()
    positive = tiny_positive()
    lat = {"samples": torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5)) * 3}
    seen = []

    def record_concat(apply_model, args):
        seen.append(args["c"]["c_concat"].clone())
        return apply_model(args["input"], args["timestep"], **args["c"])

    m = model.clone()
    m.set_model_unet_function_wrapper(record_concat)
    inv = sn.run_inversion(m, positive, lat, 20, 0.5, 7)
    out, _ = sn.run_drag(m, inv, core.mapping.build_drag_map([], (128, 128), (16, 16)), positive, 0.2, 1.0, 11)
    assert len(seen) == 2 * inv.levels
    assert all(torch.equal(c, seen[0]) for c in seen) and seen[0].abs().max() > 0  # one image, both halves
    err = (out - lat["samples"]).abs().max().item()
    assert err < 1e-3, err
    assert torch.equal(out, lat["samples"])
