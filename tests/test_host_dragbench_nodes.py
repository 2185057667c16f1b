"""DragBench in a real ComfyUI (in-process, CPU, small sizes): the sample loader, explicit point pairs to
a DRAG_MAP, and the score node with DIFT features from a ComfyUI-loaded random SD2.x (768 v) checkpoint
and LPIPS from the ``lpips`` package (random AlexNet: no weights can be downloaded here).

What could go wrong and is checked:
* a hostile pickle runs no code (its marker file never appears) and is refused naming the file;
* a folder outside ComfyUI's input folder (absolute, ``..``, a symlink out) is refused;
* the DIFT features are the released SDFeaturizer's: the same numbers as a direct run of the host's UNet
  modules (noise added as the DDPM scheduler adds it, the second up-block's output);
* MD and LPIPS behave: an unchanged image has LPIPS 0 and its matches stay on the handle's feature cell;
  content moved onto the targets scores a lower MD than unchanged content;
* the dense pairs reach the DRAG_MAP as given (the core's mapping of the same pairs).
"""
from __future__ import annotations

import gc
import os
import shutil

import numpy as np
import pytest
import torch

from support import run_node

pytestmark = pytest.mark.host

SD2V = "random_sd2_768v.safetensors"
SET = "regiondrag_test_dragbench"


@pytest.fixture(scope="module")
def dataset(comfyui):
    """A synthetic DragBench-format set (SR and DR layouts, 64x64) in ComfyUI's input folder."""
    import folder_paths
    make_synthetic_set = comfyui.core.dragbench.make_synthetic_set
    root = os.path.join(folder_paths.get_input_directory(), SET)
    shutil.rmtree(root, ignore_errors=True)
    make_synthetic_set(root, n_sr=2, n_dr=2, size=64, seed=5)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def sd2v(comfyui):
    """(MODEL, CLIP, VAE) of the random SD2.x 768 v-prediction checkpoint (SD2.1's layout), then freed."""
    import comfy.model_management
    import random_checkpoints as rc
    from support import cache_dir
    rc.write_random_checkpoint("sd2v", os.path.join(cache_dir(), SD2V))
    out = comfyui.nodes.CheckpointLoaderSimple().load_checkpoint(SD2V)[:3]
    yield out
    del out
    comfy.model_management.unload_all_models()
    gc.collect()


def load(comfyui, **inputs):
    return run_node(comfyui.NODES, "RegionDragBenchSample", **inputs)


# ------------------------------------------------------------------------------ the loader
def test_loader_reads_sr_and_dr_samples_by_index_and_path(comfyui, dataset):
    find_samples, read_sample = comfyui.core.dragbench.find_samples, comfyui.core.dragbench.read_sample
    sr, dr = os.path.join(SET, "dragbench-sr"), os.path.join(SET, "dragbench-dr")
    found = find_samples(os.path.join(dataset, "dragbench-dr"))
    image, prompt, drag, mask, score, name = load(comfyui, folder=dr, index=1)
    ref = read_sample(found[1], root=os.path.join(dataset, "dragbench-dr"))
    assert name == ref.name and "/" in name           # DR: <category>/<id>
    assert prompt == ref.prompt
    assert image.shape == (1, 64, 64, 3) and mask.shape == (1, 64, 64)
    np.testing.assert_array_equal((image[0].numpy() * 255).round().astype(np.uint8), ref.image)
    np.testing.assert_array_equal(mask[0].numpy() > 0.5, ref.mask)
    np.testing.assert_array_equal(drag.handle, ref.drag.handle)
    np.testing.assert_array_equal(score.target, ref.score.target)
    by_path = load(comfyui, folder=dr, index=0, sample=name)
    assert by_path[5] == name
    assert load(comfyui, folder=sr, index=0)[5].count("/") == 0


def test_loader_refuses_paths_outside_the_input_folder(comfyui, dataset, tmp_path):
    import folder_paths
    RegionDragInputError = comfyui.core.errors.RegionDragInputError
    outside = tmp_path / "elsewhere"
    shutil.copytree(os.path.join(dataset, "dragbench-sr"), outside)
    link = os.path.join(folder_paths.get_input_directory(), SET, "link_out")
    os.symlink(outside, link)
    try:
        for folder in (str(outside), f"{SET}/../../{SET}", f"{SET}/link_out"):
            with pytest.raises(RegionDragInputError) as e:
                load(comfyui, folder=folder, index=0)
            msg = str(e.value)
            assert msg.startswith("RegionDragBenchSample / folder:") and "input folder" in msg, msg
        with pytest.raises(RegionDragInputError, match="sample:"):
            load(comfyui, folder=os.path.join(SET, "dragbench-sr"), index=0, sample="../dragbench-dr")
    finally:
        os.unlink(link)


def test_hostile_pickle_runs_no_code_and_names_the_file(comfyui, dataset, tmp_path):
    RegionDragInputError = comfyui.core.errors.RegionDragInputError
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import pickle
    src = os.path.join(dataset, "dragbench-sr")
    bad = os.path.join(dataset, "hostile", "x0")
    shutil.copytree(os.path.join(src, sorted(os.listdir(src))[0]), bad)
    with open(os.path.join(bad, "meta_data.pkl"), "wb") as f:
        pickle.dump({"prompt": "a", "points": Evil(), "mask": None}, f)
    with pytest.raises(RegionDragInputError) as e:
        load(comfyui, folder=f"{SET}/hostile", index=0)
    assert "meta_data.pkl" in str(e.value) and "system" in str(e.value), str(e.value)
    assert not marker.exists()


def test_loader_fingerprint_follows_the_files(comfyui, dataset):
    cls = comfyui.NODES["RegionDragBenchSample"]
    folder = os.path.join(SET, "dragbench-sr")
    before = cls.fingerprint_inputs(folder=folder, index=0)
    assert cls.fingerprint_inputs(folder=folder, index=0) == before
    name = load(comfyui, folder=folder, index=0)[5]
    path = os.path.join(dataset, "dragbench-sr", name, "meta_data.pkl")
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cls.fingerprint_inputs(folder=folder, index=0) != before


# ------------------------------------------------------------------------------ point pairs
def test_point_pairs_reach_the_drag_map_as_given(comfyui, dataset):
    RegionDragInputError = comfyui.core.errors.RegionDragInputError
    drag_map_from_pairs = comfyui.core.mapping.drag_map_from_pairs
    image, _, drag, _, _, _ = load(comfyui, folder=os.path.join(SET, "dragbench-sr"), index=0)
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    dm, preview = run_node(comfyui.NODES, "RegionDragPointPairs", latent=latent, drag_points=drag, image=image)
    ref = drag_map_from_pairs(drag, (8, 8))
    np.testing.assert_array_equal(dm.handle_xy, ref.handle_xy)
    np.testing.assert_array_equal(dm.target_xy, ref.target_xy)
    assert dm.num_points > 0 and preview.shape == image.shape
    # the preview is the pixel copy-paste: every target pixel holds its handle pixel
    p, src = preview[0].numpy(), image[0].numpy()
    last = {}
    for (hx, hy), (tx, ty) in zip(drag.handle, drag.target):
        last[(tx, ty)] = (hx, hy)
    for (tx, ty), (hx, hy) in list(last.items())[:50]:
        np.testing.assert_array_equal(p[ty, tx], src[hy, hx])
    typed, _ = run_node(comfyui.NODES, "RegionDragPointPairs", latent=latent, pairs="[[8, 8, 40, 16]]")
    assert typed.handle_xy.tolist() == [[1, 1]] and typed.target_xy.tolist() == [[5, 2]]
    with pytest.raises(RegionDragInputError, match="RegionDragPointPairs / pairs:"):
        run_node(comfyui.NODES, "RegionDragPointPairs", latent=latent, drag_points=drag, pairs="[[1,1,2,2]]")
    with pytest.raises(RegionDragInputError, match="RegionDragPointPairs / pairs:"):
        run_node(comfyui.NODES, "RegionDragPointPairs", latent=latent, pairs="[[1, 1, 2]]")


# ------------------------------------------------------------------------------ scoring
def _direct_dift(comfyui, model, clip, vae, image_u8, prompt, size, t, ensemble, seed):
    """The released SDFeaturizer written against the host's raw modules (no patch, no apply_model):
    VAE mode * scale, scheduler.add_noise, UNet(noisy, t, prompt), hook on the second up-block."""
    import comfy.model_management
    dift_input = comfyui.core.dragbench.dift_input
    x = dift_input(image_u8, size)
    comfy.model_management.load_models_gpu([model])
    z0 = model.model.process_latent_in(vae.encode(((x + 1) / 2).permute(0, 2, 3, 1)).float())
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2   # SD2.1's scheduler
    acp = torch.cumprod(1 - betas, 0)[t].float()
    noise = torch.randn((ensemble,) + tuple(z0.shape[1:]), generator=torch.Generator().manual_seed(seed))
    noisy = acp.sqrt() * z0 + (1 - acp).sqrt() * noise
    ctx = clip.encode_from_tokens(clip.tokenize(prompt)).float().expand(ensemble, -1, -1)
    unet = model.model.diffusion_model
    got = []
    last = unet.output_blocks[5][-1]   # the second up-block ends with its upsampler (ComfyUI calls the layers
    assert type(last).__name__ == "Upsample"   # of a block one by one, so the hook sits on the last one)
    hook = last.register_forward_hook(lambda m, i, o: got.append(o))
    try:
        dtype = model.model.get_dtype()
        unet(noisy.to(dtype), timesteps=torch.full((ensemble,), float(t)), context=ctx.to(dtype))
    finally:
        hook.remove()
    return got[0].float().mean(0, keepdim=True)


def test_dift_features_are_the_released_featurizers(comfyui, sd2v, dataset):
    read_sample = comfyui.core.dragbench.read_sample
    model, clip, vae = sd2v
    scoring = comfyui.pack.nodes.scoring
    sample = read_sample(os.path.join(dataset, "dragbench-sr", sorted(os.listdir(
        os.path.join(dataset, "dragbench-sr")))[0]))
    ours = scoring.dift_features(model, clip, vae, sample.image, sample.prompt, size=128, timestep=261,
                                 ensemble=2, seed=7)
    ref = _direct_dift(comfyui, model, clip, vae, sample.image, sample.prompt, 128, 261, 2, 7)
    assert ours.shape == ref.shape == (1, 1280, 8, 8)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    assert not torch.equal(ours, scoring.dift_features(model, clip, vae, sample.image, sample.prompt,
                                                       size=128, timestep=261, ensemble=2, seed=8))


def _scene(size=128):
    """A picture with structure everywhere (so every feature cell differs)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
    img = np.kron(base, np.ones((16, 16, 1), np.uint8))
    yy, xx = np.mgrid[:size, :size]
    img[..., 1] = ((xx * 3 + yy * 5) % 256).astype(np.uint8)
    return img


def test_score_node_md_lpips_and_comparison(comfyui, sd2v):
    point_pairs = comfyui.core.mapping.point_pairs
    model, clip, vae = sd2v
    img = _scene(128)
    handle = np.array([[40, 56], [72, 72]])
    target = handle + [16, 0]
    pts = point_pairs(handle, target, (128, 128))
    as_image = lambda a: torch.from_numpy(a.astype(np.float32) / 255)[None]  # noqa: E731
    kw = dict(score_points=pts, prompt="a test picture", dift_model=model, dift_clip=clip, dift_vae=vae,
              dift_size=128, ensemble=1, timestep=0, dift_seed=0, lpips_backbone="random (testing only)")
    md_same, lp_same, comp = run_node(comfyui.NODES, "RegionDragBenchScore", original=as_image(img),
                                      edited=as_image(img), **kw)
    moved = np.roll(img, 16, axis=1)   # every content moved 16 px right: onto its target
    md_moved, lp_moved, _ = run_node(comfyui.NODES, "RegionDragBenchScore", original=as_image(img),
                                     edited=as_image(moved), **kw)
    assert lp_same == 0.0 and lp_moved > 0.0
    assert md_moved < md_same, (md_moved, md_same)
    assert abs(md_same - 16 / 128) <= 16 / 128, md_same     # the match stays on the handle's 16 px cell
    assert comp.shape == (1, 128, 128 * 2 + 10, 3)


def test_score_node_refuses_mismatched_points_and_missing_alexnet(comfyui, sd2v):
    RegionDragInputError = comfyui.core.errors.RegionDragInputError
    point_pairs = comfyui.core.mapping.point_pairs
    model, clip, vae = sd2v
    img = torch.rand(1, 64, 64, 3)
    kw = dict(original=img, edited=img, prompt="", dift_model=model, dift_clip=clip, dift_vae=vae,
              dift_size=64, ensemble=1)
    with pytest.raises(RegionDragInputError, match="RegionDragBenchScore / score_points:"):
        run_node(comfyui.NODES, "RegionDragBenchScore", score_points=point_pairs([[1, 1]], [[2, 2]], (32, 32)),
                 lpips_backbone="random (testing only)", **kw)
    if not os.path.exists(os.path.join(torch.hub.get_dir(), "checkpoints", "alexnet-owt-7be5be79.pth")):
        with pytest.raises(RegionDragInputError, match="RegionDragBenchScore / lpips_backbone:.*random"):
            run_node(comfyui.NODES, "RegionDragBenchScore", score_points=point_pairs([[1, 1]], [[2, 2]], (64, 64)),
                     lpips_backbone="AlexNet (pretrained)", **kw)
