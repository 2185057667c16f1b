"""regiondrag_core.dragbench and the explicit point pairs of regiondrag_core.mapping (no ComfyUI).

* Pickles: only plain data and numpy arrays load; a pickle that asks for ``os.system``, ``exec`` & co. is
  refused, naming the file and the global, and nothing runs (a marker file is never written).
* The DragBench format: write_sample / read_sample round trips; points as lists or numpy arrays; the
  released ``points[0:-1:2]`` / ``points[1::2]`` split; errors name the file and the key.
* Parity with the released evaluator on tests/golden/released_evaluator.json (tools/make_evaluator_golden.py
  runs the released ``create_mask``, ``nn_get_matches`` and ``DragEvaluator.compute_distance``): equal bits.
* ``drag_map_from_pairs``: ``// 8``, the centred crop, out-of-grid pairs dropped, the last pair winning.
* Sample discovery (SR, DR, both; links out of the root) and the synthetic set.
"""
from __future__ import annotations

import builtins
import functools
import hashlib
import io
import json
import os
import pickle
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from make_evaluator_golden import features, picture
from regiondrag_core import dragbench
from regiondrag_core.dragbench import (IMAGE_FILE, REGION_FILE, SCORE_FILE, create_mask, dift_input, find_samples,
                                       load_pickle, make_synthetic_set, mean_distance, nn_get_matches, read_sample,
                                       sample_category, side_by_side, write_sample)
from regiondrag_core.errors import RegionDragInputError
from regiondrag_core.mapping import (DragMap, PointPairs, build_drag_map, drag_map_from_pairs, point_pairs)
from regiondrag_core.masks import RegionPair

GOLDEN_PATH = os.path.join(os.path.dirname(__file__), "golden", "released_evaluator.json")
with open(GOLDEN_PATH) as _f:
    GOLDEN = json.load(_f)


def _sha(t) -> str:
    a = t.detach().contiguous().numpy() if isinstance(t, torch.Tensor) else np.ascontiguousarray(t)
    return hashlib.sha256(a.tobytes()).hexdigest()


def _meta(points=None, size=(16, 16)):
    return {"prompt": "a cat", "mask": np.ones(size, np.uint8),
            "points": [[1, 2], [3, 4]] if points is None else points}


def _sample_folder(tmp_path, name="s", size=(16, 16), region=None, score=None):
    """A hand-made sample folder; ``region``/``score``: the dicts to pickle (default :func:`_meta`)."""
    folder = tmp_path / name
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros(size + (3,), np.uint8)).save(folder / IMAGE_FILE)
    for file, meta in ((REGION_FILE, region), (SCORE_FILE, score)):
        with open(folder / file, "wb") as f:
            pickle.dump(_meta(size=size) if meta is None else meta, f)
    return folder


# ------------------------------------------------------------------------------------ pickles


class _Call:
    """Pickles as ``fn(*args)``: what a hostile file would run on load."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _hostile(marker):
    m = str(marker)
    return [
        ("os.system", _Call(os.system, f"touch {m}"), f"{os.system.__module__}.system"),
        ("builtins.exec", _Call(builtins.exec, f"open({m!r}, 'w').write('x')"), "builtins.exec"),
        ("builtins.eval", _Call(builtins.eval, f"open({m!r}, 'w')"), "builtins.eval"),
        ("subprocess.call", _Call(subprocess.call, ["touch", m]), "subprocess.call"),
        ("functools.partial", functools.partial(open, m, "w"), "functools.partial"),
        ("numpy.save", _Call(np.save, m, np.zeros(1)), "numpy.save"),
    ]


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("which", range(6), ids=["os.system", "exec", "eval", "subprocess", "partial", "numpy.save"])
def test_a_hostile_pickle_is_refused_and_nothing_runs(tmp_path, which, protocol):
    marker = tmp_path / "marker"
    _, payload, qualname = _hostile(marker)[which]
    folder = _sample_folder(tmp_path)
    path = folder / SCORE_FILE
    path.write_bytes(pickle.dumps({"prompt": "x", "points": [[1, 2], payload]}, protocol=protocol))
    with pytest.raises(RegionDragInputError) as e:
        read_sample(folder)
    assert str(path) in str(e.value) and qualname in str(e.value) and "refused" in str(e.value)
    assert e.value.input_name == "folder"
    assert not marker.exists()


def test_numpy_callables_are_admitted_only_as_numpy_pickles_use_them(tmp_path):
    """``numpy.ndarray`` loads as a token only ``_reconstruct`` takes (no ``ndarray(huge shape)`` call);
    ``_codecs.encode`` only as ``encode(str, 'latin1')``."""
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(_Call(np.ndarray, (1000, 1000)), protocol=2))
    with pytest.raises(RegionDragInputError, match="not a readable pickle"):
        load_pickle(path)
    import _codecs
    path.write_bytes(pickle.dumps(_Call(_codecs.encode, "abc", "rot13"), protocol=2))
    with pytest.raises(RegionDragInputError, match="not a readable pickle"):
        load_pickle(path)


def test_a_pickle_cannot_ask_numpy_for_a_huge_or_object_array(tmp_path):
    """``_reconstruct`` only as numpy writes it (shape (0,), typecode b'b'; the data then comes with BUILD,
    no larger than the file) and no object dtype: a 100-byte file asking for two billion object slots is
    refused at once instead of holding the server for minutes."""
    import time
    recon = np.zeros(1).__reduce__()[0]
    path = tmp_path / "x.pkl"
    for payload in (_Call(recon, np.ndarray, (2**31 - 1,), b"O"), _Call(recon, np.ndarray, (2**20,), b"b"),
                    _Call(np.dtype, "O8", False, True), np.array([None, 1], dtype=object)):
        path.write_bytes(pickle.dumps(payload, protocol=2))
        t = time.perf_counter()
        with pytest.raises(RegionDragInputError, match="not a readable pickle|asks to load"):
            load_pickle(path)
        assert time.perf_counter() - t < 1.0


def test_crop_to_multiple_cuts_like_vae_encode_and_shifts_the_points(tmp_path):
    from regiondrag_core.dragbench import crop_to_multiple
    region = {"prompt": "p", "mask": np.ones((21, 19), np.uint8),
              "points": [[1, 1], [2, 2], [10, 12], [14, 5], [18, 20], [0, 0]]}
    score = {"prompt": "p", "mask": np.ones((21, 19), np.uint8), "points": [[9, 9], [12, 10]]}
    s = read_sample(_sample_folder(tmp_path, size=(21, 19), region=region, score=score))
    c = crop_to_multiple(s, 8)
    assert c.image.shape == (16, 16, 3) and c.mask.shape == (16, 16)
    top, left = (21 % 8) // 2, (19 % 8) // 2                       # 2 rows, 1 column off the top/left
    np.testing.assert_array_equal(c.image, s.image[top:top + 16, left:left + 16])
    # (1,1)->(2,2) falls off the top rows; (18,20)->(0,0) off the bottom/right; (10,12)->(14,5) stays
    assert c.drag.handle.tolist() == [[10 - left, 12 - top]] and c.drag.target.tolist() == [[14 - left, 5 - top]]
    assert c.score.handle.tolist() == [[9 - left, 9 - top]] and c.drag.image_size == (16, 16)
    assert crop_to_multiple(c, 8) is c


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_and_numpy_load_at_every_protocol(tmp_path, protocol):
    data = {"prompt": "a cat", "mask": np.eye(3, dtype=np.uint8), "b": np.zeros((2, 2), bool),
            "points": [np.array([1, 2]), (3, 4), [np.int64(5), np.int32(6)], np.float32(1.5), 2.5, None, True],
            "bytes": b"\x00\xff"}
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    out = load_pickle(path)
    assert out["prompt"] == "a cat" and out["bytes"] == b"\x00\xff"
    assert np.array_equal(out["mask"], data["mask"]) and out["mask"].dtype == np.uint8
    assert np.array_equal(out["points"][0], [1, 2]) and out["points"][2] == [5, 6] and out["points"][3] == 1.5


def test_numpy_1x_module_names_load(tmp_path):
    """Files written under numpy 1.x name ``numpy.core.*`` (numpy 2: ``numpy._core.*``)."""
    data = {"mask": np.arange(6, dtype=np.uint8).reshape(2, 3), "n": np.int64(7)}
    raw = pickle.dumps(data, protocol=2)
    assert b"numpy._core.multiarray" in raw or b"numpy.core.multiarray" in raw
    path = tmp_path / "x.pkl"
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    out = load_pickle(path)
    assert np.array_equal(out["mask"], data["mask"]) and out["n"] == 7
    unpickler = dragbench._DragBenchUnpickler(io.BytesIO(b""))
    for core in ("numpy.core", "numpy._core"):
        assert unpickler.find_class(f"{core}.numeric", "_frombuffer") is np.zeros(1).__reduce_ex__(5)[0]


def test_broken_missing_and_oversized_pickles_are_named(tmp_path, monkeypatch):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(_meta(), protocol=4)[:-7])
    with pytest.raises(RegionDragInputError, match="not a readable pickle") as e:
        load_pickle(path)
    assert str(path) in str(e.value)
    path.write_bytes(b"")
    with pytest.raises(RegionDragInputError, match="not a readable pickle"):
        load_pickle(path)
    with pytest.raises(RegionDragInputError, match="missing") as e:
        load_pickle(tmp_path / "nope.pkl")
    assert "nope.pkl" in str(e.value)
    path.write_bytes(pickle.dumps(_meta()))
    monkeypatch.setattr(dragbench, "MAX_PICKLE_BYTES", 10)
    with pytest.raises(RegionDragInputError, match="limit"):
        load_pickle(path)


def test_a_missing_file_is_named(tmp_path):
    folder = _sample_folder(tmp_path)
    (folder / SCORE_FILE).unlink()
    with pytest.raises(RegionDragInputError, match=SCORE_FILE):
        read_sample(folder)
    (folder / IMAGE_FILE).unlink()
    with pytest.raises(RegionDragInputError, match=IMAGE_FILE):
        read_sample(folder)


@pytest.mark.parametrize("meta, words", [
    ({"prompt": "x", "mask": np.ones((16, 16), np.uint8), "points": "1,2,3,4"}, ["'points'"]),
    ({"prompt": "x", "mask": np.ones((16, 16), np.uint8), "points": {"a": 1}}, ["'points'"]),
    ({"prompt": "x", "mask": np.ones((16, 16), np.uint8), "points": [[1, "a"], [2, 3]]}, ["'points'", "numbers"]),
    ({"prompt": "x", "mask": np.ones((16, 16), np.uint8), "points": [[1, 2, 3], [2, 3, 4]]}, ["'points'"]),
    ({"prompt": "x", "mask": np.ones((16, 16), np.uint8), "points": [[1, 2], [20, 3]]}, ["'points'", "outside"]),
    ({"prompt": "x", "mask": np.ones((16, 16), np.uint8), "points": []}, ["'points'", "no point pairs"]),
    ({"prompt": "x", "mask": np.ones((16, 16), np.uint8), "points": [[1, 2], [float("nan"), 3]]}, ["non-finite"]),
    ({"prompt": 3, "mask": np.ones((16, 16), np.uint8), "points": [[1, 2], [2, 3]]}, ["'prompt'"]),
    ({"prompt": "x", "mask": np.ones((8, 16), np.uint8), "points": [[1, 2], [2, 3]]}, ["'mask'", "16x16"]),
    ({"prompt": "x", "mask": "everywhere", "points": [[1, 2], [2, 3]]}, ["'mask'"]),
    ({"prompt": "x", "points": [[1, 2], [2, 3]]}, ["no 'mask'"]),
    ([1, 2, 3], ["not a dict"]),
], ids=["str", "dict", "non-number", "3-d", "outside", "empty", "nan", "prompt", "mask-size", "mask-type",
        "no-mask", "list"])
def test_bad_contents_name_the_file_and_the_key(tmp_path, meta, words):
    folder = _sample_folder(tmp_path, region=meta)
    with pytest.raises(RegionDragInputError) as e:
        read_sample(folder)
    msg = str(e.value)
    assert REGION_FILE in msg, msg
    for w in words:
        assert w in msg, msg


# ------------------------------------------------------------------------------ the format


def test_write_then_read_gives_the_same_arrays(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    mask = np.zeros((24, 40), bool)
    mask[3:20, 5:30] = True
    dh = rng.integers(0, [40, 24], (50, 2))
    dt = rng.integers(0, [40, 24], (50, 2))
    sh, st = dh[:3], dt[:3]
    folder = write_sample(tmp_path / "root" / "a" / "b", image, "a dog", mask, dh, dt, sh, st)
    s = read_sample(folder, tmp_path / "root")
    assert s.name == "a/b" and s.category == "a" and s.folder == folder and s.prompt == "a dog"
    assert s.image.dtype == np.uint8 and np.array_equal(s.image, image)
    assert s.mask.dtype == np.bool_ and np.array_equal(s.mask, mask)
    assert np.array_equal(s.drag.handle, dh) and np.array_equal(s.drag.target, dt)
    assert np.array_equal(s.score.handle, sh) and np.array_equal(s.score.target, st)
    assert s.drag.image_size == (24, 40) and s.drag.handle.dtype == np.int64
    raw = pickle.loads((folder / SCORE_FILE).read_bytes())   # as the real files: plain lists, uint8 mask
    assert raw["points"] == [[int(v) for v in p] for pair in zip(sh, st) for p in pair]
    assert raw["mask"].dtype == np.uint8 and set(np.unique(raw["mask"])) == {0, 1}
    assert read_sample(folder).name == "b" and read_sample(folder).category is None


@pytest.mark.parametrize("style", ["list of lists", "list of arrays", "array", "list of tuples"])
def test_points_load_as_lists_or_numpy_arrays(tmp_path, style):
    pts = [[1, 2], [5, 6], [3, 4], [7, 8]]   # handle (1, 2) -> (5, 6), handle (3, 4) -> (7, 8)
    given = {"list of lists": pts, "list of arrays": [np.array(p, np.int32) for p in pts],
             "array": np.array(pts, np.int64), "list of tuples": [tuple(p) for p in pts]}[style]
    mask = np.zeros((16, 16), np.uint8)
    mask[2:9, 1:9] = 255                       # 0/255 masks read as bool
    folder = _sample_folder(tmp_path, region={"prompt": "x", "mask": mask, "points": given})
    s = read_sample(folder)
    assert s.drag.handle.tolist() == [[1, 2], [3, 4]] and s.drag.target.tolist() == [[5, 6], [7, 8]]
    assert np.array_equal(s.mask, mask != 0)


def test_odd_points_drop_the_last_as_released(tmp_path, caplog):
    folder = _sample_folder(tmp_path, region=_meta([[1, 2], [5, 6], [3, 4]]))
    with caplog.at_level("WARNING", logger="regiondrag_core.dragbench"):
        s = read_sample(folder)
    assert s.drag.handle.tolist() == [[1, 2]] and s.drag.target.tolist() == [[5, 6]]
    assert "odd" in caplog.text


def test_image_modes_become_rgb(tmp_path):
    folder = _sample_folder(tmp_path)
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0        # fully transparent red: the alpha is dropped, not composited
    Image.fromarray(rgba).save(folder / IMAGE_FILE)
    assert read_sample(folder).image[0, 0].tolist() == [200, 0, 0]
    Image.fromarray(np.full((16, 16), 77, np.uint8)).save(folder / IMAGE_FILE)
    assert read_sample(folder).image[0, 0].tolist() == [77, 77, 77]
    Image.fromarray(np.full((16, 16, 3), 9, np.uint8)).convert("P").save(folder / IMAGE_FILE)
    assert read_sample(folder).image.shape == (16, 16, 3)
    (folder / IMAGE_FILE).write_bytes(b"not a png")
    with pytest.raises(RegionDragInputError, match="not a readable image"):
        read_sample(folder)


# ------------------------------------------------------------------------------ point pairs


def test_point_pairs_validate_and_floor():
    p = point_pairs([[1, 2], [3.0, 4.0]], np.array([[5.7, 6.2], [0.0, 0.99]]), (10, 8))
    assert p.handle.tolist() == [[1, 2], [3, 4]] and p.target.tolist() == [[5, 6], [0, 0]]
    assert p.handle.dtype == p.target.dtype == np.int64 and p.image_size == (10, 8) and len(p) == 2
    p = point_pairs(torch.tensor([[7, 9]]), torch.tensor([[0, 0]]), (10, 8))
    assert p.handle.tolist() == [[7, 9]]
    bad = [
        (([[1, 2]], [[1, 2], [3, 4]], (10, 8)), "1 handle points but 2 target"),
        (([], [], (10, 8)), "no point pairs"),
        (([[8, 0]], [[0, 0]], (10, 8)), "outside the 8x10 image"),
        (([[-0.5, 0]], [[0, 0]], (10, 8)), "outside"),
        (([[0, 0]], [[0, 10.0]], (10, 8)), "outside"),
        (([[np.inf, 0]], [[0, 0]], (10, 8)), "non-finite"),
        (([[True, False]], [[0, 0]], (10, 8)), "numbers"),
        (([[1, 2]], [[1, 2]], (0, 8)), "image size"),
    ]
    for args, words in bad:
        with pytest.raises(RegionDragInputError, match=words) as e:
            point_pairs(*args, input_name="pts")
        assert e.value.input_name == "pts"


def test_point_pairs_cap(monkeypatch):
    from regiondrag_core import mapping
    monkeypatch.setattr(mapping, "MAX_POINT_PAIRS", 3)
    with pytest.raises(RegionDragInputError, match="limit is 3"):
        point_pairs(np.zeros((4, 2)), np.zeros((4, 2)), (8, 8))


def test_drag_map_from_pairs_floor_divides_by_8():
    dm = drag_map_from_pairs(point_pairs([[15, 9], [0, 63]], [[40, 17], [63, 0]], (64, 64)), (8, 8))
    assert isinstance(dm, DragMap) and dm.latent_size == (8, 8) and dm.image_size == (64, 64) and dm.num_pairs == 1
    # rows in raster order of the target: (7, 0) before (5, 2)
    assert dm.target_xy.tolist() == [[7, 0], [5, 2]] and dm.handle_xy.tolist() == [[0, 7], [1, 1]]
    assert dm.handle_xy.dtype == dm.target_xy.dtype == np.int64
    assert {tuple(p) for p in np.argwhere(dm.handle_union)[:, ::-1].tolist()} == {(1, 1), (0, 7)}
    assert {tuple(p) for p in np.argwhere(dm.target_union)[:, ::-1].tolist()} == {(5, 2), (7, 0)}


def test_drag_map_from_pairs_last_pair_wins_and_the_blur_keeps_every_handle():
    handle = [[8, 8], [16, 16], [24, 8], [0, 0]]
    target = [[40, 17], [47, 23], [41, 18], [8, 0]]   # the first three hit latent (5, 2)
    dm = drag_map_from_pairs(point_pairs(handle, target, (64, 64)), (8, 8))
    assert dm.target_xy.tolist() == [[1, 0], [5, 2]]
    assert dm.handle_xy.tolist() == [[0, 0], [3, 1]]   # (24, 8) // 8: the last of the three
    assert dm.handle_union.sum() == 4 and dm.handle_union[2, 2] and dm.handle_union[1, 1]
    assert dm.target_union.sum() == 2


def test_drag_map_from_pairs_crops_and_drops_off_grid_pairs():
    # 67 x 70 px -> latent 8 x 8 = 64 x 64 px: VAE Encode crops 1 row on top (67 % 8 = 3 -> 1) and 3 columns left
    H, W = 67, 70
    handle = [[3, 1], [2, 10], [66, 64], [67, 30], [10, 65], [20, 20]]
    target = [[10, 10], [10, 10], [66, 64], [20, 20], [30, 30], [69, 66]]
    dm = drag_map_from_pairs(point_pairs(handle, target, (H, W)), (8, 8))
    # kept: (3, 1) -> (10, 10) = latent (0, 0) -> (0, 1); (66, 64) -> itself = latent (7, 7)
    # dropped: x 2 (left of the crop), x 67 (right), y 65 (below), target x 69 (right)
    assert dm.target_xy.tolist() == [[0, 1], [7, 7]] and dm.handle_xy.tolist() == [[0, 0], [7, 7]]
    assert dm.handle_union.sum() == 2 and dm.target_union.sum() == 2


def test_drag_map_from_pairs_errors():
    pairs = point_pairs([[2, 2]], [[4, 4]], (67, 70))
    with pytest.raises(RegionDragInputError, match="none of the 1 point pairs") as e:
        drag_map_from_pairs(pairs, (8, 8), input_name="drag_points")
    assert e.value.input_name == "drag_points"
    with pytest.raises(RegionDragInputError, match="8×") as e:
        drag_map_from_pairs(point_pairs([[2, 2]], [[4, 4]], (64, 64)), (9, 8))
    assert e.value.input_name == "latent"
    with pytest.raises(RegionDragInputError):
        drag_map_from_pairs(point_pairs([[2, 2]], [[4, 4]], (72, 64)), (8, 8))


def test_dense_pairs_of_a_translation_give_the_region_maps_drag_map():
    """An 8-aligned rectangle moved by (16, 8) px: its dense pixel pairs give build_drag_map's map of the two
    regions (Algorithm 1 on the downsampled rectangles is the same translation)."""
    H = W = 64
    handle = np.zeros((H, W), bool)
    handle[16:40, 8:32] = True
    target = np.roll(np.roll(handle, 8, axis=0), 16, axis=1)
    ys, xs = np.nonzero(handle)
    hp = np.stack([xs, ys], axis=1)
    dm = drag_map_from_pairs(point_pairs(hp, hp + (16, 8), (H, W)), (8, 8))
    ref = build_drag_map([RegionPair(handle=handle, target=target)], (H, W), (8, 8))
    for field in ("handle_xy", "target_xy", "handle_union", "target_union"):
        assert np.array_equal(getattr(dm, field), getattr(ref, field)), field
    assert np.array_equal(dm.handle_index(), ref.handle_index())


# -------------------------------------------------------------------- the released evaluator


def _case_inputs(case):
    (H, W), C, levels = case["size"], case["channels"], case["levels"]
    fs = features(case["src_seed"], C, H, W, levels)
    ft = features(case["trg_seed"], C, H, W, levels)
    assert _sha(fs) == case["src_sha256"] and _sha(ft) == case["trg_sha256"]
    dtype = getattr(torch, case["points_dtype"])
    return fs, ft, torch.tensor(case["src"], dtype=dtype), torch.tensor(case["trg"], dtype=dtype)


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=[c["name"] for c in GOLDEN["cases"]])
def test_create_mask_and_nn_get_matches_are_the_released_bits(case):
    fs, ft, src, trg = _case_inputs(case)
    mask = create_mask(src, trg, tuple(case["size"]))
    assert mask.dtype == torch.bool and list(mask.shape) == case["mask_shape"]
    assert np.packbits(mask.numpy().reshape(-1)).tobytes().hex() == case["mask_bits"]
    matches = nn_get_matches(fs, ft, src, l2_norm=case["l2_norm"], mask=mask if case["use_mask"] else None)
    assert matches.dtype == torch.float32 and matches.tolist() == case["matches"]


def test_the_golden_covers_clamp_ties_and_borders():
    """The golden's cases exercise what they are named for."""
    by = {c["name"]: c for c in GOLDEN["cases"]}
    c = by["ties: features in {-1, 0, 1}, dot product, no mask"]
    fs, ft, src, _ = _case_inputs(c)
    sim = torch.mm(fs[0, :, src[:, 1], src[:, 0]].t(), ft.view(fs.shape[1], -1))
    assert ((sim == sim.max(dim=1, keepdim=True).values).sum(dim=1) > 1).all()   # argmax picks among ties
    c = by["one pair, short drag: radius clamped to 5"]
    radius = float(np.hypot(*np.subtract(c["src"][0], c["trg"][0])) / 2 ** 0.5)
    assert radius < 5
    assert any(0 in p or c["size"][1] - 1 in p for p in by["points on the borders"]["src"])


@pytest.mark.parametrize("case", GOLDEN["distances"], ids=[c["name"] for c in GOLDEN["distances"]])
def test_mean_distance_and_dift_input_are_the_released_compute_distance(case):
    (C, h, w), (H, W) = case["features"], case["size"]
    fs, ft = features(case["src_seed"], C, h, w), features(case["trg_seed"], C, h, w)
    assert _sha(fs) == case["src_sha256"] and _sha(ft) == case["trg_sha256"]
    md, matches = mean_distance(fs, ft, np.array(case["src"]), np.array(case["trg"]), (H, W))
    assert md == case["md"] and isinstance(md, float)
    assert matches.dtype == np.int64 and matches.tolist() == case["matches"]
    seed = case["picture_seed"]
    for i, img in enumerate((picture(seed, H, W), picture(seed + 1, H, W))):
        assert _sha(img) == case["picture_sha256"][i]
        x = dift_input(img, GOLDEN["dift_size"])
        assert x.dtype == torch.float32 and tuple(x.shape) == (1, 3, 768, 768)
        assert _sha(x.half()) == case["dift_input_sha256"][i]


def test_mean_distance_known_answer():
    """One-hot features: each handle's feature reappears once inside its disc (and once, stronger, far
    outside it, where the mask hides it); MD is the mean of |target - match| with x / W, y / H."""
    H, W, C = 24, 32, 4
    handle = np.array([[5, 6], [20, 12]])
    target = np.array([[9, 8], [26, 18]])
    expect = np.array([[10, 10], [23, 15]])   # inside the discs (radius 5 and 6)
    src = torch.zeros(1, C, H, W)
    trg = torch.zeros(1, C, H, W)
    src[0, 3] = 1.0
    trg[0, 3] = 1.0                                      # background: the same direction everywhere...
    for i, ((hx, hy), (mx, my)) in enumerate(zip(handle, expect)):
        src[0, :, hy, hx] = 0
        src[0, i, hy, hx] = 1.0                          # ...but handle i points along axis i
        trg[0, :, my, mx] = 0
        trg[0, i, my, mx] = 1.0                          # its match: cosine 1 at `expect`
    trg[0, :, 0, W - 1] = 0
    trg[0, 0, 0, W - 1] = 1.0                            # also cosine 1 for handle 0, outside its disc
    md, matches = mean_distance(src, trg, handle, target, (H, W))
    assert matches.tolist() == expect.tolist()
    d = (target - expect) / np.array([W, H])
    assert md == pytest.approx(float(np.linalg.norm(d, axis=1).mean()), rel=1e-6)
    # features at a lower resolution are resized (nearest) to the image first
    md2, m2 = mean_distance(src[..., ::2, ::2], trg[..., ::2, ::2], handle, target, (H // 2 * 2, W // 2 * 2))
    assert isinstance(md2, float) and m2.shape == (2, 2)


def test_mean_distance_and_dift_input_refuse_bad_inputs():
    f = torch.zeros(1, 4, 8, 8)
    with pytest.raises(RegionDragInputError):
        mean_distance(f, torch.zeros(1, 3, 8, 8), [[1, 1]], [[2, 2]], (8, 8))
    with pytest.raises(RegionDragInputError):
        mean_distance(f, f, [[1, 1]], [[2, 2], [3, 3]], (8, 8))
    with pytest.raises(RegionDragInputError, match="outside"):
        mean_distance(f, f, [[1, 1]], [[8, 2]], (8, 8))
    with pytest.raises(RegionDragInputError):
        dift_input(np.zeros((8, 8, 3), np.float32))
    x = dift_input(np.array([[[0, 255, 127]]], np.uint8), 4)
    assert x.min().item() == -1 and x.max().item() == 1 and tuple(x.shape) == (1, 3, 4, 4)


def test_side_by_side_draws_at_the_points():
    for S in (64, 512):
        img = np.full((S, S, 3), 128, np.uint8)
        h, t, m = np.array([[S // 8, S // 8]]), np.array([[S // 2, S // 2]]), np.array([[S // 2 + S // 8, S // 4]])
        out = side_by_side(img, img, h, t, m, border=10)
        assert out.dtype == np.uint8 and out.shape == (S, 2 * S + 10, 3)
        assert (out[:, S:S + 10] == 255).all()
        assert tuple(out[S // 8, S // 8]) == dragbench.HANDLE_RGB
        assert tuple(out[S // 2, S // 2]) == dragbench.TARGET_RGB
        assert tuple(out[S // 2, S + 10 + S // 2]) == dragbench.TARGET_RGB
        assert tuple(out[S // 4, S + 10 + S // 2 + S // 8]) == dragbench.MATCH_RGB
        assert (out[S - 2, 2] == 128).all()   # untouched far from the marks
    small = side_by_side(img, img[::2, ::2], h, t, m)   # an edited image of another size is resized
    assert small.shape == (512, 1034, 3)
    unmatched = side_by_side(img, img, h, t, None)
    assert tuple(unmatched[S // 4, S + 10 + S // 2 + S // 8]) != dragbench.MATCH_RGB


# ------------------------------------------------------------------------ folders and the set


def test_find_samples_sr_dr_and_both(tmp_path):
    make_synthetic_set(tmp_path, n_sr=2, n_dr=3, categories=("animals", "art_work"), size=32)
    sr, dr = tmp_path / "dragbench-sr", tmp_path / "dragbench-dr"
    assert [p.relative_to(sr).as_posix() for p in find_samples(sr)] == ["sample_000", "sample_001"]
    assert [p.relative_to(dr).as_posix() for p in find_samples(dr)] == [
        "animals/sample_000", "animals/sample_002", "art_work/sample_001"]
    both = find_samples(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in both] == [
        "dragbench-dr/animals/sample_000", "dragbench-dr/animals/sample_002", "dragbench-dr/art_work/sample_001",
        "dragbench-sr/sample_000", "dragbench-sr/sample_001"]
    assert [sample_category(tmp_path, p) for p in both] == ["animals", "animals", "art_work", None, None]
    assert sample_category(dr, dr / "art_work" / "sample_001") == "art_work"
    assert sample_category(sr, sr / "sample_001") is None
    s = read_sample(both[2], tmp_path)
    assert s.name == "dragbench-dr/art_work/sample_001" and s.category == "art_work"
    with pytest.raises(RegionDragInputError, match="not a folder"):
        find_samples(tmp_path / "nope")


def test_links_out_of_the_root_are_not_followed(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    make_synthetic_set(root, n_sr=1, n_dr=0, size=32)
    make_synthetic_set(outside, n_sr=1, n_dr=0, size=32)
    sr = root / "dragbench-sr"
    os.symlink(outside / "dragbench-sr" / "sample_000", sr / "linked")                    # a folder link
    (sr / "half").mkdir()
    for name in (IMAGE_FILE, REGION_FILE, SCORE_FILE):                                     # file links
        os.symlink(outside / "dragbench-sr" / "sample_000" / name, sr / "half" / name)
    os.symlink(sr / "sample_000", sr / "inside")                                           # inside: fine
    assert [p.name for p in find_samples(sr)] == ["inside", "sample_000"]
    with pytest.raises(RegionDragInputError, match="not inside"):
        read_sample(sr / "linked", sr)
    with pytest.raises(RegionDragInputError, match="link out of"):
        read_sample(sr / "half", sr)
    with pytest.raises(RegionDragInputError, match="not inside"):
        read_sample(outside / "dragbench-sr" / "sample_000", sr)


def test_the_synthetic_set_is_deterministic_and_well_formed(tmp_path):
    a = make_synthetic_set(tmp_path / "a", n_sr=3, n_dr=5, size=48, seed=7)
    b = make_synthetic_set(tmp_path / "b", n_sr=3, n_dr=5, size=48, seed=7)
    c = make_synthetic_set(tmp_path / "c", n_sr=3, n_dr=5, size=48, seed=8)
    d = make_synthetic_set(tmp_path / "d", n_sr=1, n_dr=0, size=48, seed=7)
    assert a == find_samples(tmp_path / "a") and len(a) == 8
    files = (IMAGE_FILE, REGION_FILE, SCORE_FILE)
    for pa, pb in zip(a, b):
        assert all((pa / f).read_bytes() == (pb / f).read_bytes() for f in files)
    assert any((pa / IMAGE_FILE).read_bytes() != (pc / IMAGE_FILE).read_bytes() for pa, pc in zip(a, c))
    sr0 = tmp_path / "a" / "dragbench-sr" / "sample_000"
    assert all((sr0 / f).read_bytes() == (d[0] / f).read_bytes() for f in files)   # independent of the count
    full = 0
    for folder in a:
        s = read_sample(folder, tmp_path / "a")
        assert s.image.shape == (48, 48, 3) and s.drag.image_size == (48, 48)
        shift = s.drag.target - s.drag.handle
        assert (shift == shift[0]).all() and shift[0].any()                            # one translation
        assert len(np.unique(s.drag.handle, axis=0)) == len(s.drag) > 20               # every handle pixel once
        assert 1 <= len(s.score) <= 3
        dense = {tuple(h) + tuple(t) for h, t in zip(s.drag.handle, s.drag.target)}
        assert all(tuple(h) + tuple(t) in dense for h, t in zip(s.score.handle, s.score.target))
        assert s.mask[s.drag.handle[:, 1], s.drag.handle[:, 0]].all()
        assert s.mask[s.drag.target[:, 1], s.drag.target[:, 0]].all()
        full += bool(s.mask.all())
        assert drag_map_from_pairs(s.drag, (6, 6)).num_points > 0
    assert 0 < full < len(a)


def test_point_pairs_is_frozen():
    p = point_pairs([[1, 2]], [[3, 4]], (8, 8))
    assert isinstance(p, PointPairs)
    with pytest.raises(AttributeError):
        p.handle = None


def test_resolve_inside_refuses_every_way_out(tmp_path):
    from regiondrag_core.dragbench import resolve_inside
    base, outside = tmp_path / "input", tmp_path / "elsewhere"
    (base / "sets" / "a").mkdir(parents=True)
    outside.mkdir()
    os.symlink(outside, base / "link_out")
    assert resolve_inside(base, "sets/a") == (base / "sets" / "a").resolve()
    for rel in (str(outside), "sets/../../elsewhere", "link_out", "c:/x", "sets\x00"):
        with pytest.raises(RegionDragInputError, match="input folder"):
            resolve_inside(base, rel, "folder")
