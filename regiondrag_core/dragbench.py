"""DragBench-SR / DragBench-DR (the RegionDrag paper's benchmarks): reading samples safely, the released
evaluator's Mean Distance math, a side-by-side picture, and a small synthetic set in the same format.

A sample is a folder (``dragbench-sr/<id>/`` or ``dragbench-dr/<category>/<id>/``) holding

* ``original_image.png``;
* ``meta_data_region.pkl``: a dict ``{'prompt': str, 'mask': H×W editable area, 'points': [...]}``
  whose points are the dense region pairs, handle and target alternating (``points[0:-1:2]`` are
  the handles, ``points[1::2]`` the targets, as the released ``drag.get_meta_data`` reads them);
* ``meta_data.pkl``: the same keys with the sparse point pairs the benchmark scores.

The pickles are read by :func:`load_pickle`, which admits only the containers, numbers, strings and
numpy arrays such files hold; any other global (``os.system``, ``builtins.eval``, ...) is refused
before anything runs.

Mean Distance (:func:`mean_distance`) repeats the released ``region_utils/evaluator.py``
(``DragEvaluator.compute_distance`` with :func:`create_mask` and :func:`nn_get_matches`) operation for
operation, so on the same feature maps it gives the same matches and the same float, bit for bit
(pinned by tests/test_dragbench_core.py on tests/golden/released_evaluator.json). The DIFT features
themselves come from elsewhere; :func:`dift_input` makes the image tensor they are computed from.

Points are ``(x, y)`` pixel rows; sizes ``(H, W)``.
"""

from __future__ import annotations

import _compat_pickle
import io
import logging
import os
import pickle
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import RegionDragInputError
from .mapping import PointPairs, point_pairs
from .shapes import MAX_SIDE

log = logging.getLogger(__name__)

__all__ = [
    "load_pickle",
    "DragBenchSample",
    "read_sample",
    "find_samples",
    "sample_category",
    "create_mask",
    "nn_get_matches",
    "dift_input",
    "mean_distance",
    "side_by_side",
    "write_sample",
    "make_synthetic_set",
    "crop_to_multiple",
    "resolve_inside",
    "MAX_PICKLE_BYTES",
    "IMAGE_FILE",
    "REGION_FILE",
    "SCORE_FILE",
    "SET_FOLDERS",
]

MAX_PICKLE_BYTES = 256 * 2**20
IMAGE_FILE = "original_image.png"
REGION_FILE = "meta_data_region.pkl"
SCORE_FILE = "meta_data.pkl"
SET_FOLDERS = ("dragbench-sr", "dragbench-dr")


# ------------------------------------------------------------------------------ safe pickles


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (``encode(str, 'latin1')``), and nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError("_codecs.encode is admitted only as encode(str, 'latin1')")
    return text.encode("latin1")


_NUMPY_RECONSTRUCT = np.zeros(1).__reduce__()[0]      # numpy(._)core.multiarray._reconstruct
_NDARRAY = object()   # what "numpy.ndarray" loads as: only _reconstruct takes it (no ndarray(huge shape) call)


def _reconstruct(subtype, shape, typecode):
    """``_reconstruct(numpy.ndarray, (0,), b'b')``, the empty array a pickled array starts from (its data comes
    with the following BUILD, whose bytes numpy checks against the shape, so an array is never larger than
    the file). Any other shape or typecode is refused: ``_reconstruct(ndarray, (2**31,), b'O')`` would make
    a huge array from a few bytes."""
    if subtype is not _NDARRAY or tuple(shape) != (0,) or typecode != b"b":
        raise pickle.UnpicklingError("_reconstruct is admitted only as _reconstruct(numpy.ndarray, (0,), b'b')")
    return _NUMPY_RECONSTRUCT(np.ndarray, (0,), b"b")


def _plain_dtype(*args):
    """``numpy.dtype`` for plain data only: object dtypes (arrays of Python objects, whose BUILD takes a
    list instead of bytes) are refused."""
    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError("numpy.dtype is admitted only for plain data (no object dtype)")
    return dt


def _numpy_globals() -> dict:
    """The numpy callables an array, scalar or dtype pickles with, under numpy 1.x and 2.x module names."""
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]         # numpy(._)core.numeric._frombuffer (protocol 5)
    scalar = np.int64(0).__reduce__()[0]                 # numpy(._)core.multiarray.scalar
    out = {("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): _plain_dtype, ("_codecs", "encode"): _latin1_encode}
    for core in ("numpy.core", "numpy._core"):
        out[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        out[(f"{core}.multiarray", "scalar")] = scalar
        out[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return out


_ALLOWED = _numpy_globals()


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str):
        qualname = f"{module}.{name}"
        # Protocols 0-2 write Python 2 names (__builtin__.exec, commands.call); name the Python 3 one too.
        py3 = _compat_pickle.NAME_MAPPING.get((module, name))
        py3 = py3 or (_compat_pickle.IMPORT_MAPPING.get(module, module), name)
        if py3 != (module, name):
            qualname += f" ({py3[0]}.{py3[1]})"
        super().__init__(qualname)
        self.qualname = qualname


class _DragBenchUnpickler(pickle.Unpickler):
    """Admits only dicts, lists, tuples, str, int, float, bool, None (pickle opcodes, no globals) and numpy
    arrays, scalars and dtypes (:data:`_ALLOWED`). Every other global is refused before it is looked up."""

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _RefusedGlobal(module, name) from None


_BROKEN = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
           OverflowError, MemoryError, RecursionError)


def load_pickle(path, input_name: str = "folder"):
    """Unpickle a DragBench file safely. Files over :data:`MAX_PICKLE_BYTES`, missing, truncated or broken
    files, and files asking for anything but plain data and numpy arrays raise
    :class:`RegionDragInputError` naming the file (and the refused global); no code from the file runs."""
    path = Path(path)
    if not path.is_file():
        raise RegionDragInputError(input_name, f"{path} is missing.", "Point at a DragBench sample folder "
                                   f"({IMAGE_FILE}, {REGION_FILE}, {SCORE_FILE}).")
    size = path.stat().st_size
    if size > MAX_PICKLE_BYTES:
        raise RegionDragInputError(input_name, f"{path} is {size:,} bytes; a DragBench file is far below the "
                                   f"{MAX_PICKLE_BYTES:,}-byte limit.", "Use the benchmark's own files.")
    with open(path, "rb") as f:
        data = f.read(MAX_PICKLE_BYTES + 1)
    try:
        return _DragBenchUnpickler(io.BytesIO(data)).load()
    except _RefusedGlobal as e:
        raise RegionDragInputError(
            input_name, f"{path} asks to load {e.qualname}, which a DragBench file never holds; refused, nothing "
            "in the file was run.", "Use the benchmark's own files, or write them with plain lists and numpy "
            "arrays.") from None
    except _BROKEN as e:
        raise RegionDragInputError(input_name, f"{path} is not a readable pickle ({type(e).__name__}: {e}).",
                                   "Download or copy the file again.") from None


# ----------------------------------------------------------------------------- samples


@dataclass
class DragBenchSample:
    """One DragBench sample. ``name``: its path relative to the dataset root, '/'-separated;
    ``category``: the DragBench-DR category folder (None for SR); ``image``: uint8 ``[H, W, 3]`` RGB;
    ``mask``: bool ``[H, W]``, the editable area; ``drag``: the dense region pairs
    (``meta_data_region.pkl``); ``score``: the sparse pairs MD is measured on (``meta_data.pkl``)."""

    name: str
    category: str | None
    image: np.ndarray
    prompt: str
    mask: np.ndarray
    drag: PointPairs
    score: PointPairs
    folder: Path


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def resolve_inside(base, rel: str, input_name: str = "folder") -> Path:
    """``base / rel`` resolved, refused unless it stays inside ``base``: no absolute path, no ``..``, no
    drive or NUL, no symlink out (a shared ComfyUI server serves only its input folder)."""
    if not isinstance(rel, str):
        raise RegionDragInputError(input_name, "must be a folder name.", "Type the folder's name.")
    fix = ("Give a folder inside ComfyUI's input folder, by its name there (like 'drag_data/dragbench-sr'); "
           "copy or move the dataset into the input folder first.")
    p = Path(rel)
    if p.is_absolute() or rel.startswith(("/", "\\")) or ".." in p.parts or ":" in rel or "\x00" in rel:
        raise RegionDragInputError(input_name, f"{rel!r} is not a name inside ComfyUI's input folder.", fix)
    base = Path(base)
    if not _inside(base / p, base):
        raise RegionDragInputError(input_name, f"{rel!r} leads outside ComfyUI's input folder (a symlink?).", fix)
    return (base / p).resolve()


def _read_image(path: Path, input_name: str) -> np.ndarray:
    if not path.is_file():
        raise RegionDragInputError(input_name, f"{path} is missing.", "Point at a DragBench sample folder.")
    try:
        with Image.open(path) as im:
            W, H = im.size
            if not (0 < W <= MAX_SIDE and 0 < H <= MAX_SIDE):
                raise RegionDragInputError(input_name, f"{path} is {W}x{H} px; the limit is {MAX_SIDE} a side.",
                                           "Use a smaller image.")
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                raise RegionDragInputError(input_name, f"{path} is a {im.mode} (16-bit or float) image.",
                                           "Save it as 8-bit RGB.")
            rgb = np.array(im.convert("RGB") if im.mode != "RGB" else im)   # RGBA/LA: alpha dropped
    except RegionDragInputError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise RegionDragInputError(input_name, f"{path} is not a readable image ({e}).",
                                   "Copy the file again.") from None
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def _meta(path: Path, size, input_name: str):
    """``(prompt, mask bool [H, W], PointPairs)`` of one pickle, validated."""
    meta = load_pickle(path, input_name)
    if not isinstance(meta, dict):
        raise RegionDragInputError(input_name, f"{path} holds a {type(meta).__name__}, not a dict.",
                                   "A DragBench file is a dict with 'prompt', 'mask' and 'points'.")
    for key in ("prompt", "mask", "points"):
        if key not in meta:
            raise RegionDragInputError(input_name, f"{path} has no '{key}'.",
                                       "A DragBench file is a dict with 'prompt', 'mask' and 'points'.")
    prompt = meta["prompt"]
    if not isinstance(prompt, str):
        raise RegionDragInputError(input_name, f"{path}: 'prompt' is a {type(prompt).__name__}, not a string.",
                                   "Store the prompt as text.")
    mask = meta["mask"]
    mask = np.asarray(mask) if isinstance(mask, (np.ndarray, list, tuple)) else None
    H, W = size
    if mask is None or mask.dtype.kind not in "biuf" or mask.shape != (H, W):
        raise RegionDragInputError(
            input_name, f"{path}: 'mask' must be an {H}x{W} (H x W of {IMAGE_FILE}) array, got "
            f"{type(meta['mask']).__name__} {list(getattr(mask, 'shape', []))}.", "Store the mask at the image's size.")
    points = meta["points"]
    if not isinstance(points, (list, tuple, np.ndarray)):
        raise RegionDragInputError(input_name, f"{path}: 'points' is a {type(points).__name__}, not a list.",
                                   "Store 'points' as a list of [x, y], handle and target alternating.")
    if len(points) % 2:
        log.warning("%s: 'points' holds an odd number (%d); the last one has no target and is ignored, as the "
                    "released code does", path, len(points))
    try:
        pairs = point_pairs(points[0:-1:2], points[1::2], size, input_name)   # as released get_meta_data
    except RegionDragInputError as e:
        raise RegionDragInputError(input_name, f"{path}: 'points': {e.problem}", e.fix) from None
    return prompt, mask != 0, pairs


def read_sample(folder, root=None, input_name: str = "folder") -> DragBenchSample:
    """Read one sample folder. With ``root`` (the dataset folder), the sample's name is its path under
    ``root`` and its category :func:`sample_category`; the folder and its files must lie inside ``root``
    (symlinks out of it are refused). Without ``root`` the name is the folder's own name and the category
    None. Problems raise :class:`RegionDragInputError` naming the file and key."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RegionDragInputError(input_name, f"{folder} is not a folder.", "Point at a DragBench sample folder.")
    files = [folder / n for n in (IMAGE_FILE, REGION_FILE, SCORE_FILE)]
    if root is not None:
        root = Path(root)
        if not _inside(folder, root):
            raise RegionDragInputError(input_name, f"{folder} is not inside {root} (or is a link out of it).",
                                       "Pick a sample folder of the dataset.")
        for p in files:
            if p.exists() and not _inside(p, root):
                raise RegionDragInputError(input_name, f"{p} is a link out of {root}.",
                                           "Keep the samples' files inside the dataset folder.")
        name = _relative(root, folder).as_posix()
        category = sample_category(root, folder)
    else:
        name, category = folder.name, None
    image = _read_image(files[0], input_name)
    size = image.shape[:2]
    prompt, mask, drag = _meta(files[1], size, input_name)
    _, _, score = _meta(files[2], size, input_name)
    return DragBenchSample(name=name, category=category, image=image, prompt=prompt, mask=mask, drag=drag,
                           score=score, folder=folder)


def crop_to_multiple(sample: DragBenchSample, multiple: int = 8) -> DragBenchSample:
    """The sample cut to sides that are multiples of ``multiple``, centred, as VAE Encode crops an image
    (``(H % 8) // 2`` rows off the top): image and mask cut, points shifted, point pairs with a point
    outside the cut dropped (for the drag pairs and the score pairs alike). A sample that already fits
    comes back unchanged."""
    H, W = sample.image.shape[:2]
    h, w = H - H % multiple, W - W % multiple
    if (h, w) == (H, W):
        return sample
    if not h or not w:
        raise RegionDragInputError("folder", f"{sample.name}: the image is {W}x{H}, smaller than {multiple} px.",
                                   "Use images of at least 64x64 px.")
    top, left = (H % multiple) // 2, (W % multiple) // 2

    def cut(pp: PointPairs, what: str) -> PointPairs:
        off = np.array([left, top])
        hnd, trg = pp.handle - off, pp.target - off
        keep = ((hnd >= 0) & (hnd < [w, h])).all(1) & ((trg >= 0) & (trg < [w, h])).all(1)
        if not keep.any():
            raise RegionDragInputError("folder", f"{sample.name}: every {what} pair lies in the "
                                       f"{W - w}x{H - h} px cut off to make the image {w}x{h}.",
                                       "Use a sample whose points lie inside the image's centre.")
        return point_pairs(hnd[keep], trg[keep], (h, w))

    return dataclasses.replace(sample, image=sample.image[top:top + h, left:left + w],
                               mask=sample.mask[top:top + h, left:left + w],
                               drag=cut(sample.drag, "drag"), score=cut(sample.score, "score"))


def _relative(root: Path, folder: Path) -> Path:
    """``folder`` under ``root``: lexically when it is written under it, else after resolving both."""
    folder, root = Path(folder), Path(root)
    return folder.relative_to(root) if folder.is_relative_to(root) else folder.resolve().relative_to(root.resolve())


def sample_category(root, folder) -> str | None:
    """The DragBench-DR category of a sample folder under ``root``: the folder above the sample when it
    lies two levels below the set (``<set>/<category>/<id>``, the set being ``root`` or its
    ``dragbench-sr``/``dragbench-dr`` folder); None for ``<set>/<id>`` (SR)."""
    parts = _relative(root, folder).parts
    parts = parts[1:] if parts and parts[0] in SET_FOLDERS else parts
    return parts[0] if len(parts) == 2 else None


def _subfolders(folder: Path, root: Path):
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for e in entries:
        p = Path(e.path)
        if e.is_dir() and _inside(p, root):   # a link to a folder out of root is not followed
            yield p


def find_samples(root, input_name: str = "folder") -> list[Path]:
    """Sample folders (those holding ``original_image.png``) under ``root``: ``<root>/<id>/`` (SR),
    ``<root>/<category>/<id>/`` (DR), and the same below ``<root>/dragbench-sr`` and ``<root>/dragbench-dr``
    when ``root`` holds both sets. Sorted by their path under ``root``; links out of ``root`` are not
    followed. Paths are ``root / relative path`` (not resolved)."""
    root = Path(root)
    if not root.is_dir():
        raise RegionDragInputError(input_name, f"{root} is not a folder.", "Point at a DragBench folder.")
    bases = [root] + [root / n for n in SET_FOLDERS if (root / n).is_dir() and _inside(root / n, root)]
    found = set()
    for base in bases:
        for d1 in _subfolders(base, root):
            for d in [d1, *_subfolders(d1, root)]:
                image = d / IMAGE_FILE
                if image.is_file() and _inside(image, root):
                    found.add(d.relative_to(root).as_posix())
    return [root / rel for rel in sorted(found)]


# --------------------------------------------------------------------- the released evaluator


def create_mask(src_points, trg_points, img_size) -> torch.Tensor:
    """The released ``evaluator.create_mask``: bool ``[N, H, W]``, pixel within ``max(5, |src - trg| / sqrt 2)``
    (strictly) of point ``i``'s source or target. Points ``(N, 2)`` ``(x, y)`` tensors; ``img_size = (H, W)``.
    Same operations in the same order as released (float32), so the same bits."""
    src_points = src_points.float()
    trg_points = trg_points.float()
    h, w = img_size
    radius = ((src_points - trg_points).norm(dim=1) / (2 ** 0.5)).clamp(min=5)
    ys, xs = torch.meshgrid(torch.arange(h, device=src_points.device), torch.arange(w, device=src_points.device),
                            indexing="ij")
    ys = ys.expand(src_points.size(0), -1, -1)
    xs = xs.expand(src_points.size(0), -1, -1)
    d_src = ((xs - src_points[:, None, None, 0]) ** 2 + (ys - src_points[:, None, None, 1]) ** 2).sqrt()
    d_trg = ((xs - trg_points[:, None, None, 0]) ** 2 + (ys - trg_points[:, None, None, 1]) ** 2).sqrt()
    return (d_src < radius[:, None, None]) | (d_trg < radius[:, None, None])


def nn_get_matches(src_featmaps, trg_featmaps, query, l2_norm=True, mask=None) -> torch.Tensor:
    """The released ``evaluator.nn_get_matches``: for each query ``(x, y)`` (truncated to long), the
    ``(x, y)`` of the most similar feature of ``trg_featmaps`` (dot product, cosine with ``l2_norm``),
    within ``mask[i]`` when given (``[N, H, W]`` bool). Feature maps ``[1, C, H, W]``; returns float
    ``(N, 2)``; ties go to the first pixel in raster order (``argmax``)."""
    _, c, h, w = src_featmaps.shape
    query = query.long()
    src_feat = src_featmaps[0, :, query[:, 1], query[:, 0]]            # (C, N)
    if l2_norm:
        src_feat = F.normalize(src_feat, p=2, dim=0)
        trg_featmaps = F.normalize(trg_featmaps, p=2, dim=1)
    trg_featmaps = trg_featmaps.view(c, -1)                              # (C, H*W)
    similarity = torch.mm(src_feat.t(), trg_featmaps)                    # (N, H*W)
    if mask is not None:
        mask = mask.view(-1, h * w)
        similarity = torch.where(mask, similarity, torch.full_like(similarity, -torch.inf))
    best = similarity.argmax(dim=-1)                                     # (N,), ties: the first
    y_coords = best // w
    x_coords = best % w
    return torch.stack((x_coords, y_coords), dim=1).float()


def _rgb_uint8(image, input_name: str, what: str) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise RegionDragInputError(input_name, f"the {what} must be a uint8 [H, W, 3] RGB image, got "
                                   f"{img.dtype} {list(img.shape)}.", "Pass 8-bit RGB pixels.")
    return img


def dift_input(image_uint8_hwc, size: int = 768, input_name: str = "image") -> torch.Tensor:
    """The image tensor DIFT features are computed from, as the released evaluator makes it
    (``preprocess_image`` then ``F.interpolate(..., size=(size, size))``, nearest): float32
    ``[1, 3, size, size]`` in [-1, 1]. (The released code casts to float16 before the nearest resize;
    the resize only copies values, so ``dift_input(...).half()`` is its tensor bit for bit.)"""
    img = _rgb_uint8(image_uint8_hwc, input_name, "image")
    x = torch.from_numpy(np.array(img)).float() / 127.5 - 1
    x = x.unsqueeze(0).permute(0, 3, 1, 2)
    return F.interpolate(x, size=(size, size))


def mean_distance(src_featmap, trg_featmap, handle, target, image_size) -> tuple[float, np.ndarray]:
    """Mean Distance of one sample, the rest of the released ``DragEvaluator.compute_distance``: both
    feature maps ``[1, C, h, w]`` resized to ``image_size = (H, W)`` (nearest), each handle point's feature
    matched in the edited image's features within :func:`create_mask`'s discs (:func:`nn_get_matches`,
    cosine), and the mean over points of ``|target - match|`` with x divided by W and y by H.

    ``handle``, ``target``: ``(N, 2)`` ``(x, y)`` pixel points (cast to long as released). Returns
    ``(md, matches)``, matches int64 ``(N, 2)`` ``(x, y)`` in the edited image."""
    H, W = int(image_size[0]), int(image_size[1])
    src_kps = torch.as_tensor(np.asarray(handle)).to(torch.long)
    trg_kps = torch.as_tensor(np.asarray(target)).to(torch.long)
    if src_featmap.ndim != 4 or trg_featmap.ndim != 4 or src_featmap.shape[0] != 1 \
            or src_featmap.shape[:2] != trg_featmap.shape[:2]:
        raise RegionDragInputError("features", f"expected two [1, C, h, w] feature maps with the same C, got "
                                   f"{list(src_featmap.shape)} and {list(trg_featmap.shape)}.",
                                   "Pass the DIFT features of the original and of the edited image.")
    if src_kps.ndim != 2 or src_kps.shape[1] != 2 or src_kps.shape != trg_kps.shape or not len(src_kps):
        raise RegionDragInputError("points", f"expected (N, 2) handle and target points, N >= 1, got "
                                   f"{list(src_kps.shape)} and {list(trg_kps.shape)}.", "Give one target per handle.")
    inside = (src_kps >= 0).all() and (trg_kps >= 0).all() and (src_kps[:, 0] < W).all() \
        and (src_kps[:, 1] < H).all() and (trg_kps[:, 0] < W).all() and (trg_kps[:, 1] < H).all()
    if not inside:
        raise RegionDragInputError("points", f"a point lies outside the {W}x{H} image.",
                                   "Score with points inside the image.")
    src_kps, trg_kps = src_kps.to(src_featmap.device), trg_kps.to(src_featmap.device)
    src = F.interpolate(src_featmap, size=(H, W))
    trg = F.interpolate(trg_featmap, size=(H, W))
    mask = create_mask(src_kps, trg_kps, (H, W))
    pred = nn_get_matches(src, trg, src_kps, l2_norm=True, mask=mask)
    distance = trg_kps - pred
    distance[:, 0] /= W
    distance[:, 1] /= H
    return distance.norm(dim=-1).mean().item(), pred.long().cpu().numpy()


# ------------------------------------------------------------------------------- picture

HANDLE_RGB = (230, 30, 30)
TARGET_RGB = (30, 80, 255)
MATCH_RGB = (40, 220, 60)
ARROW_RGB = (255, 255, 255)


def _radius(scale: float) -> int:
    return max(1, round(3 * scale))


def _arrow(img, p, q, scale: float):
    """White arrow (dark edge) from ``p`` to the edge of the dot at ``q``."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    length = float(np.hypot(*(q - p)))
    gap = _radius(scale) + 1
    if length <= gap + 1:
        return
    q = q - (q - p) * gap / length
    tip = min(0.5, max(3.0, 6 * scale) / (length - gap))
    thick = max(1, round(scale))
    a, b = tuple(int(round(v)) for v in p), tuple(int(round(v)) for v in q)
    cv2.arrowedLine(img, a, b, (0, 0, 0), thick + 1, cv2.LINE_AA, tipLength=tip)
    cv2.arrowedLine(img, a, b, ARROW_RGB, thick, cv2.LINE_AA, tipLength=tip)


def _dot(img, p, color, scale: float):
    r = _radius(scale)
    p = tuple(int(v) for v in p)
    cv2.circle(img, p, r + 1, (255, 255, 255), -1, cv2.LINE_AA)
    cv2.circle(img, p, r, color, -1, cv2.LINE_AA)


def side_by_side(original, edited, handle, target, matches, border: int = 10) -> np.ndarray:
    """uint8 ``[H, 2W + border, 3]``: the original | a white border | the edited image. Left: handle
    points red, target points blue, arrows handle -> target. Right: target points blue, the matched
    points (``matches``, in the edited image; None: none) green, arrows match -> target. Marks and lines scale with
    the image (``max(H, W) / 256``), anti-aliased. An edited image of another size is resized to the
    original's first (as the released evaluator does)."""
    left = _rgb_uint8(original, "image", "original").copy()
    right = _rgb_uint8(edited, "image", "edited image")
    H, W = left.shape[:2]
    right = cv2.resize(right, (W, H)) if right.shape[:2] != (H, W) else right.copy()
    matches = np.zeros((0, 2)) if matches is None else matches
    handle, target, matches = (np.asarray(p, np.float64).reshape(-1, 2) for p in (handle, target, matches))
    scale = max(H, W) / 256
    for h, t in zip(handle, target):
        _arrow(left, h, t, scale)
    for m, t in zip(matches, target):
        _arrow(right, m, t, scale)
    for h, t in zip(handle, target):
        _dot(left, h, HANDLE_RGB, scale)
        _dot(left, t, TARGET_RGB, scale)
    for t in target:
        _dot(right, t, TARGET_RGB, scale)
    for m in matches:
        _dot(right, m, MATCH_RGB, scale)
    gap = np.full((H, int(border), 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)


# ------------------------------------------------------------------------------- writing


def _alternating(handle: np.ndarray, target: np.ndarray) -> list:
    return [[int(v) for v in p] for pair in zip(handle, target) for p in pair]


def write_sample(folder, image, prompt, mask, drag_handle, drag_target, score_handle, score_target) -> Path:
    """Write a sample folder in the DragBench format: ``original_image.png``, and ``meta_data_region.pkl`` /
    ``meta_data.pkl`` as dicts ``{'prompt': str, 'mask': np.uint8 [H, W] in {0, 1}, 'points': [[x, y], ...]}``
    with handle and target alternating (plain Python ints). Returns the folder."""
    img = _rgb_uint8(image, "image", "image")
    size = img.shape[:2]
    m = np.asarray(mask)
    if m.shape != size:
        raise RegionDragInputError("mask", f"the mask is {list(m.shape)} but the image is {list(size)}.",
                                   "Give an H x W mask of the image's size.")
    drag = point_pairs(drag_handle, drag_target, size)
    score = point_pairs(score_handle, score_target, size, "score_points")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(folder / IMAGE_FILE)
    m = (m != 0).astype(np.uint8)
    for name, pairs in ((REGION_FILE, drag), (SCORE_FILE, score)):
        meta = {"prompt": str(prompt), "mask": m, "points": _alternating(pairs.handle, pairs.target)}
        with open(folder / name, "wb") as f:
            pickle.dump(meta, f, protocol=4)
    return folder


# ------------------------------------------------------------------------------- synthetic set

_SHAPES = ("circle", "square", "ellipse", "triangle")
_COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 220), "yellow": (240, 210, 40),
            "purple": (150, 60, 190), "orange": (245, 140, 30), "white": (245, 245, 245), "black": (20, 20, 20)}


def _draw_shape(img, kind: str, cx: int, cy: int, r: int, colour) -> None:
    if kind == "circle":
        cv2.circle(img, (cx, cy), r, colour, -1)
    elif kind == "square":
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
    elif kind == "ellipse":
        cv2.ellipse(img, (cx, cy), (r, max(1, r // 2)), 30, 0, 360, colour, -1)
    else:
        pts = np.array([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], np.int32)
        cv2.fillPoly(img, [pts], colour)


def _synthetic(rng: np.random.Generator, size: int, full_mask: bool) -> dict:
    """One sample's picture, prompt, mask and points (see :func:`make_synthetic_set`)."""
    S = size
    yy, xx = np.mgrid[0:S, 0:S] / max(S - 1, 1)
    c0, c1 = rng.integers(40, 216, size=(2, 3))
    img = (c0 * (1 - (xx + yy)[..., None] / 2) + c1 * ((xx + yy)[..., None] / 2)).astype(np.uint8)
    img = np.ascontiguousarray(img)
    names = list(_COLOURS)
    for _ in range(int(rng.integers(1, 3))):   # distractors
        _draw_shape(img, _SHAPES[rng.integers(len(_SHAPES))], int(rng.integers(S)), int(rng.integers(S)),
                    int(rng.integers(S // 16 + 1, S // 6 + 2)), _COLOURS[names[rng.integers(len(names))]])
    kind, colour = _SHAPES[rng.integers(len(_SHAPES))], names[rng.integers(len(names))]
    r = int(rng.integers(S // 10 + 1, S // 5 + 2))
    cx, cy = (int(v) for v in rng.integers(r, S - r, size=2))
    handle = np.zeros((S, S), np.uint8)
    _draw_shape(handle, kind, cx, cy, r, 1)
    _draw_shape(img, kind, cx, cy, r, _COLOURS[colour])
    hy, hx = np.nonzero(handle)
    # The offset keeps the moved shape inside the image: |d| <= S/4 and within the free margin.
    lo = np.maximum(-(S // 4), [-hx.min(), -hy.min()])
    hi = np.minimum(S // 4, [S - 1 - hx.max(), S - 1 - hy.max()])
    while True:
        dx, dy = (int(v) for v in rng.integers(lo, hi + 1))
        if abs(dx) + abs(dy) >= max(2, S // 16):
            break
    hp = np.stack([hx, hy], axis=1).astype(np.int64)
    tp = hp + (dx, dy)
    keep = ((tp >= 0) & (tp < S)).all(axis=1)
    hp, tp = hp[keep], tp[keep]
    pick = rng.choice(len(hp), size=min(len(hp), int(rng.integers(1, 4))), replace=False)
    both = handle.copy()
    both[tp[:, 1], tp[:, 0]] = 1
    if full_mask:
        mask = np.ones((S, S), np.uint8)
    else:
        k = 2 * max(1, S // 16) + 1
        mask = cv2.dilate(both, np.ones((k, k), np.uint8))
    return {"image": img, "prompt": f"a {colour} {kind} on a gradient background", "mask": mask,
            "drag": (hp, tp), "score": (hp[np.sort(pick)], tp[np.sort(pick)])}


def make_synthetic_set(root, n_sr: int = 4, n_dr: int = 4, categories=("animals", "art_work", "other_objects"),
                       size: int = 64, seed: int = 0) -> list[Path]:
    """Write a small synthetic DragBench: ``root/dragbench-sr/sample_<i>/`` (``n_sr``) and
    ``root/dragbench-dr/<category>/sample_<i>/`` (``n_dr``, categories in turn). Each picture is a gradient
    with a few coloured shapes; one shape is the handle region, moved by a random offset (up to a quarter
    of the image) to its target. Dense points: every handle pixel with its shifted pixel (those landing in
    the image); score points: 1-3 of those pairs; mask: the handle and target dilated, or (every 4th sample
    of each set) the whole image. ``size`` x ``size`` px; the same ``seed`` writes the same files, and a sample
    does not depend on how many others are written. Returns the sample folders as :func:`find_samples`
    lists them."""
    root = Path(root)
    size = int(size)
    if not 16 <= size <= 2048:
        raise RegionDragInputError("size", f"{size} px is outside 16..2048.", "Pick a size such as 64 or 128.")
    jobs = [(root / SET_FOLDERS[0] / f"sample_{i:03d}", 0, i) for i in range(int(n_sr))]
    cats = tuple(categories) or ("other",)
    jobs += [(root / SET_FOLDERS[1] / cats[i % len(cats)] / f"sample_{i:03d}", 1, i) for i in range(int(n_dr))]
    for folder, kind, i in jobs:
        s = _synthetic(np.random.default_rng([int(seed), kind, i]), size, full_mask=i % 4 == 3)
        write_sample(folder, s["image"], s["prompt"], s["mask"], *s["drag"], *s["score"])
    log.info("wrote %d synthetic DragBench samples (%d SR, %d DR) of %dx%d px under %s",
             len(jobs), int(n_sr), int(n_dr), size, size, root)
    return sorted((f for f, _, _ in jobs), key=lambda p: p.relative_to(root).as_posix())
