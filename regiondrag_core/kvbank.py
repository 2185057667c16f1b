"""Mutual self-attention: keys/values captured during inversion, swapped in during denoising.

The host calls an attention-replace function with projected ``q, k, v`` of shape
[batch, tokens, heads * dim_head] and an ``extra_options`` dict that names the layer
(``block``, ``block_index``), the batch chunks (``cond_or_uncond``, and ``uuids``: which
conditioning entry each chunk belongs to) and ``n_heads``.

Keys/values are filed per conditioning *entry*, not per batch position: the host may batch several
entries of one prompt into one call (Conditioning Combine), or run them in calls of their own (areas,
masks, low free memory), and in a different order from one step to the next. The host tells the swap
the entries' ids in the prompt's order (:meth:`AttentionSwap.set_entries`), so entry *i* of the
denoising meets entry *i*'s keys/values from the inversion however either half was batched.

Keys/values are also filed per *pass*: one sampling step may call the UNet more than once for the
same entry (Perturbed-Attention Guidance's perturbed pass, Self-Attention Guidance's degraded pass,
a guider's extra calls). The n-th call of a step that holds entry *e* is pass n of *e*
(:meth:`AttentionSwap.enter_call` counts them per step), so each pass of the denoising meets the
keys/values of the same pass of the inversion, and any deterministic multi-pass guidance retraces
the inversion exactly. The cache then holds one set of keys/values per pass that runs.
:class:`AttentionSwap` is the framework-agnostic half: the node layer wraps its
``__call__`` in a closure and registers it on a cloned model.

The sampler brackets every model call with :meth:`AttentionSwap.begin` / :meth:`~AttentionSwap.end`.
Inside the call the patch's Python behaviour is the same at every level: in "replace" mode it reads
per-layer *staging* buffers that ``begin`` filled with the level's cached keys/values (same tensors,
same addresses, every step); in "capture" mode it only records what it saw, and ``end`` files it in
the bank. So a compiled UNet (torch.compile, CUDA graphs) runs one graph for every level instead of
recompiling per level, and the bookkeeping stays right whether or not the call was compiled.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Hashable, Iterable, Optional

import torch

LayerKey = tuple  # (block name, block number, transformer index), e.g. ("input", 1, 0)

# Which self-attention layers share keys/values, by UNet block name. "all" is the paper (and the
# authors' code): every self-attention layer at every step. Fewer layers cache less and copy less per
# step, at the price of weaker identity preservation in the layers left out.
KV_LAYER_CHOICES = {
    "all": ("input", "middle", "output"),
    "decoder only": ("output",),
    "encoder + middle": ("input", "middle"),
}


def choose_layers(blocks: Iterable[tuple], choice: str) -> frozenset:
    """The (block name, number) pairs of ``blocks`` that the layer choice ``choice`` keeps."""
    if choice not in KV_LAYER_CHOICES:
        raise ValueError(f"unknown layer choice {choice!r}; one of {', '.join(KV_LAYER_CHOICES)}")
    names = KV_LAYER_CHOICES[choice]
    return frozenset((str(b[0]), int(b[1])) for b in blocks if b[0] in names)


@dataclass(frozen=True)
class AttentionLayer:
    """One self-attention layer's shape, as far as its cached keys/values go."""

    key: LayerKey    # (block name, number, transformer index)
    divisor: int     # its token grid is the latent's, each side divided by this (1, 2, 4, 8) and rounded up
    kv_width: int    # key channels + value channels (to_k and to_v output features)


def kv_cache_bytes(layers: Iterable[AttentionLayer], latent_hw: tuple, levels: int, itemsize: int,
                   entries: int = 1, passes: int = 1) -> int:
    """Bytes of keys and values ``layers`` cache for ``levels`` inversion steps of a latent of
    ``latent_hw`` (h, w), ``entries`` conditioning entries, ``itemsize`` bytes per element, each entry
    seen by ``passes`` UNet passes per step.

    Each layer holds ceil(h/d) * ceil(w/d) tokens (a stride-2 convolution rounds up) times its key and
    value widths, once per step, per conditioning entry and per pass: what :class:`KVBank` will hold."""
    h, w = (int(x) for x in latent_hw)
    if h < 1 or w < 1 or levels < 0 or itemsize < 1 or entries < 0 or passes < 1:
        raise ValueError(f"bad cache shape: latent {latent_hw}, {levels} levels, itemsize {itemsize}, "
                         f"{entries} entries, {passes} passes")
    per_step = 0
    for layer in layers:
        d = int(layer.divisor)
        if d < 1:
            raise ValueError(f"layer {layer.key}: divisor {d} < 1")
        per_step += -(-h // d) * -(-w // d) * int(layer.kv_width)
    return per_step * int(itemsize) * int(levels) * int(entries) * int(passes)


class KVBank(torch.nn.Module):
    """Keys/values by (level, layer, conditioning entry, pass), kept in the model's dtype.

    The tensors are frozen parameters of one child module per level, so a host can hand the bank to
    its memory manager as a model of its own: ComfyUI loads, offloads and partially offloads it level
    by level, as it does a UNet's layers. Readers look tensors up through :meth:`get` at use and
    never keep them, since the host may have moved them since. Written only while an inversion
    runs; :meth:`freeze` makes it read-only once the INVERSION that holds it is built.
    ``storage_device=None`` keeps each tensor on the device the model produced it on (fast);
    ``torch.device("cpu")`` keeps them in host memory (pinned when produced on CUDA) and the
    sampler copies one level at a time into staging buffers, for large images or small GPUs.
    """

    def __init__(self, storage_device: Optional[torch.device] = None):
        super().__init__()
        self.storage_device = storage_device
        self.per_level = torch.nn.ModuleDict()
        self._names: dict[tuple[int, LayerKey, int, int], tuple[str, str]] = {}
        self.frozen = False

    def _store(self, t: torch.Tensor) -> torch.nn.Parameter:
        """A copy the model cannot overwrite (a compiled call may reuse its output memory)."""
        t = t.detach()
        device = t.device if self.storage_device is None else self.storage_device
        out = torch.empty(t.shape, dtype=t.dtype, device=device,
                          pin_memory=t.is_cuda and device.type == "cpu")
        out.copy_(t, non_blocking=True)
        return torch.nn.Parameter(out, requires_grad=False)

    def put(self, level: int, layer: LayerKey, chunk: int, k: torch.Tensor, v: torch.Tensor,
            pass_index: int = 0) -> None:
        if self.frozen:
            raise RuntimeError("this K/V bank belongs to a finished inversion and is read-only")
        key = (int(level), tuple(layer), int(chunk), int(pass_index))
        lvl = str(key[0])
        if lvl not in self.per_level:
            self.per_level[lvl] = torch.nn.Module()
        module = self.per_level[lvl]
        _, stem = self._names.setdefault(key, (lvl, f"e{sum(1 for x in self._names.values() if x[0] == lvl)}"))
        module.register_parameter(stem + "_k", self._store(k))
        module.register_parameter(stem + "_v", self._store(v))

    def place(self, storage_device: Optional[torch.device]) -> None:
        """Choose where the tensors will live (None: where the model makes them); before the first put."""
        if self._names:
            raise RuntimeError("the K/V bank already holds tensors; choose its placement before filling it")
        self.storage_device = storage_device

    def freeze(self) -> "KVBank":
        self.frozen = True
        return self

    def get(self, level: int, layer: LayerKey, chunk: int, pass_index: int = 0):
        """(k, v) of one entry and pass where they live now, or None."""
        found = self._names.get((int(level), tuple(layer), int(chunk), int(pass_index)))
        if found is None:
            return None
        module = self.per_level[found[0]]
        return getattr(module, found[1] + "_k"), getattr(module, found[1] + "_v")

    def keys(self):
        return self._names.keys()

    @property
    def entries(self) -> dict:
        """{(level, layer, chunk, pass): (k, v)}, read now (a snapshot: the host may move the tensors later)."""
        return {key: self.get(*key) for key in self._names}

    def level_entries(self, level: int):
        return [((layer, chunk, p), self.get(lvl, layer, chunk, p)) for lvl, layer, chunk, p in self._names
                if lvl == level]

    def passes(self) -> int:
        """The most UNet passes any entry made in one step (1 for plain sampling)."""
        return 1 + max((key[3] for key in self._names), default=0)

    def nbytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.parameters())


def stage(bank: KVBank, level: int, device: torch.device, staging: dict,
          on_buffer: Optional[Callable[[torch.Tensor], None]] = None) -> dict:
    """Copy level ``level``'s keys/values into ``staging`` ((layer, entry, pass) -> (k, v) on ``device``).

    The buffers are re-used while shape, dtype and device stay the same, so every step (and every
    edit that passes the same ``staging``) reads the same addresses. ``on_buffer`` is shown every
    buffer before it is filled."""
    for key, (k, v) in bank.level_entries(level):
        buf = staging.get(key)
        if buf is None or buf[0].shape != k.shape or buf[0].device != device or buf[0].dtype != k.dtype:
            buf = (torch.empty(k.shape, dtype=k.dtype, device=device),
                   torch.empty(v.shape, dtype=v.dtype, device=device))
            staging[key] = buf
        if on_buffer is not None:
            on_buffer(buf[0])
            on_buffer(buf[1])
        buf[0].copy_(k, non_blocking=True)
        buf[1].copy_(v, non_blocking=True)
    return staging


AttentionFn = Callable[..., torch.Tensor]  # (q, k, v, heads, attn_precision=...) -> out


class AttentionSwap:
    """One run's attention patch: ``mode`` "capture" (inversion) or "replace" (denoising).

    Outside a :meth:`begin`/:meth:`end` bracket (the patched model used by anything but the sampler)
    it computes plain self-attention, and so does a layer whose block is not in ``layers`` (the
    inversion's layer choice; None = every layer the patch is called for): such a layer is neither
    captured, nor replaced, nor counted. ``calls`` counts (level, layer) pairs, filled in by ``end``, so
    tests and the nodes can check that every layer took part at every step.
    A capture call may hold several levels in its batch (a batched inversion): ``begin`` is told
    them in batch order and ``end`` files each level's slice of every chunk. A replace call holds
    one level; its keys/values are copied into ``staging`` (the run's own dict unless the host
    passes one to re-use across edits), never into the bank.
    ``on_buffer`` is shown every staging buffer it fills (the host marks them static for CUDA graphs).
    """

    def __init__(self, bank: KVBank, mode: str, attention: AttentionFn, enabled: bool = True,
                 on_buffer: Optional[Callable[[torch.Tensor], None]] = None, staging: Optional[dict] = None,
                 layers: Optional[frozenset] = None):
        if mode not in ("capture", "replace"):
            raise ValueError(f"unknown AttentionSwap mode {mode!r}")
        self.bank = bank
        self.mode = mode
        self.attention = attention
        self.enabled = enabled
        self.layers = None if layers is None else frozenset((str(b[0]), int(b[1])) for b in layers)
        self.on_buffer = on_buffer
        self.staging: dict = {} if staging is None else staging
        self.active = False
        self.levels: tuple = ()
        self.captured: dict = {}   # (layer, entry, pass) -> (k, v) seen in the current call, all its levels
        self.entry_ids: dict = {}  # host id of a conditioning entry (uuid) -> its index in the prompt
        self.call_entries: Optional[tuple] = None  # (entry, pass) of each batch chunk in the current UNet call
        self.seen: Counter = Counter()  # entry -> UNet calls of the current step that held it (its next pass)
        self.hit: dict = {}        # layer -> True for every layer that ran in the current call
        self.calls: Counter = Counter()

    def set_entries(self, ids) -> None:
        """The conditioning entries' host ids in the prompt's order (entry i keeps index i in both halves;
        the negative prompt's entries follow the positive's)."""
        self.entry_ids = {e: i for i, e in enumerate(ids)}

    def enter_call(self, ids, chunks=None) -> None:
        """Before a UNet call (outside any compiled graph): the host ids of its batch chunks' entries
        (``chunks``, the host's cond/uncond labels, where it names no ids), and so each chunk's pass:
        how many calls of this step held its entry before.

        The patch then reads plain (entry, pass) indices, so a compiled UNet is not specialised on the
        ids, which the host draws anew for every sampling run."""
        if self.entry_ids and ids is not None and all(i in self.entry_ids for i in ids):
            entries = [self.entry_ids[i] for i in ids]
        elif chunks is not None:
            entries = [int(c) for c in chunks]
        else:
            self.call_entries = None
            return
        keys = []
        for e in entries:
            keys.append((e, self.seen[e]))
            self.seen[e] += 1
        self.call_entries = tuple(keys)

    def _entries(self, extra_options: dict, chunks: list) -> list:
        """(entry, pass) of each batch chunk: as the host named them for this call, else (chunk, 0)."""
        if self.call_entries is not None and len(self.call_entries) == len(chunks):
            return list(self.call_entries)
        return [(int(c), 0) for c in chunks]

    @property
    def level(self) -> Optional[int]:
        return self.levels[0] if len(self.levels) == 1 else None

    def begin(self, levels, device: torch.device) -> None:
        """Before the model call on z_level (or a batch of levels, capture only): stage the level's
        cached keys/values (replace mode)."""
        levels = (int(levels),) if isinstance(levels, int) else tuple(int(x) for x in levels)
        if self.mode == "replace" and len(levels) != 1:
            raise ValueError(f"a replace call holds one level, got {levels}")
        if self.enabled and self.mode == "replace":
            stage(self.bank, levels[0], device, self.staging, self.on_buffer)
        self.captured.clear()
        self.hit.clear()
        self.seen.clear()
        self.call_entries = None
        self.levels = levels
        self.active = True

    def end(self, completed: bool = True) -> None:
        """After the model call: file captured keys/values in the bank, per level, and count the layers."""
        self.active = False
        if completed and self.levels:
            n = len(self.levels)
            for (layer, entry, pass_index), (k, v) in self.captured.items():
                if k.shape[0] % n:
                    raise ValueError(f"layer {layer}: a batch of {k.shape[0]} does not split into levels {self.levels}")
                for level, kl, vl in zip(self.levels, k.chunk(n), v.chunk(n)):
                    self.bank.put(level, layer, entry, kl, vl, pass_index)
            for layer in self.hit:
                for level in self.levels:
                    self.calls[(level, layer)] += 1
        self.captured.clear()
        self.hit.clear()
        self.seen.clear()
        self.call_entries = None
        self.levels = ()

    def levels_missing(self, layers: frozenset, levels) -> list:
        """Levels at which not every (block name, number) in ``layers`` ran through the patch."""
        seen: dict = {}
        for level, layer in self.calls:
            seen.setdefault(level, set()).add(tuple(layer[:2]))
        return [level for level in levels if not layers <= seen.get(level, set())]

    @staticmethod
    def layer_key(extra_options: dict) -> LayerKey:
        block = extra_options.get("block") or ("?", 0)
        return (block[0], int(block[1]), int(extra_options.get("block_index", 0)))

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra_options: dict,
                 inner: Optional[Callable] = None) -> torch.Tensor:
        """Self-attention with keys/values captured or replaced. ``inner(q, k, v, extra_options)``, when
        given, computes the attention (another pack's attn1 replace, or the host's attention with its
        ``transformer_options``); otherwise ``self.attention`` does."""
        layer = self.layer_key(extra_options) if self.active and self.enabled else None
        if layer is not None and (self.layers is None or layer[:2] in self.layers):
            chunks: list[Hashable] = list(extra_options.get("cond_or_uncond") or [0])
            if q.shape[0] % len(chunks):
                raise ValueError(f"batch {q.shape[0]} does not split into chunks {chunks}")
            entries = self._entries(extra_options, chunks)
            if self.mode == "capture":
                for (e, p), kc, vc in zip(entries, k.chunk(len(chunks)), v.chunk(len(chunks))):
                    self.captured[(layer, e, p)] = (kc, vc)
            else:
                k, v = self._staged_kv(layer, entries, k, v)
            self.hit[layer] = True
        if inner is not None:
            return inner(q, k, v, extra_options)
        return self.attention(q, k, v, extra_options["n_heads"], attn_precision=extra_options.get("attn_precision"))

    def _staged_kv(self, layer, entries, k, v):
        staged = self.staging
        ks, vs = [], []
        for e, p in entries:
            if (layer, e, p) not in staged:
                raise KVMismatch(e, p, layer, self.level)
            kc, vc = staged[(layer, e, p)]
            ks.append(kc)
            vs.append(vc)
        if len(ks) == 1:
            kc, vc = ks[0], vs[0]
        else:
            kc, vc = torch.cat(ks), torch.cat(vs)
        if kc.shape != k.shape:
            raise KVMismatch(layer=layer, level=self.level,
                             message=f"cached keys of layer {layer} have shape {tuple(kc.shape)}, the model "
                             f"computes {tuple(k.shape)}: the positive conditioning's areas or entries differ "
                             "from the inversion's")
        return kc.to(k.dtype), vc.to(v.dtype)


class KVMismatch(ValueError):
    """The denoising's conditioning does not match the keys/values the inversion cached.

    ``entry``/``pass_index`` name what was missing (None when the shapes differed): an entry past
    the inversion's means more (or negative) conditioning entries, a pass past it a model that calls
    the UNet more often per step than the one the inversion ran with."""

    def __init__(self, entry=None, pass_index=None, layer=None, level=None, message=None):
        self.entry, self.pass_index, self.layer, self.level = entry, pass_index, layer, level
        if message is None:
            what = f"conditioning entry {entry + 1}" + (f", UNet pass {pass_index + 1} of the step" if pass_index else "")
            message = f"the inversion cached no keys/values for {what} (layer {layer}, step {level})"
        super().__init__(message)
