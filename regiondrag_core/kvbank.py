"""Mutual self-attention: keys/values captured during inversion, swapped in during denoising.

The host calls an attention-replace function with projected ``q, k, v`` of shape
[batch, tokens, heads * dim_head] and an ``extra_options`` dict that names the layer
(``block``, ``block_index``), the batch chunks (``cond_or_uncond``) and ``n_heads``.
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
from typing import Callable, Hashable, Optional

import torch

LayerKey = tuple  # (block name, block number, transformer index), e.g. ("input", 1, 0)


class KVBank:
    """Keys/values by (level, layer, cond_or_uncond chunk), kept in the model's dtype.

    ``storage_device=None`` keeps each tensor on the device the model produced it on (fast);
    ``torch.device("cpu")`` keeps them in host memory (pinned when produced on CUDA) and copies one
    level at a time back into the staging buffers, for large images or small GPUs.
    ``staging`` holds one level's keys/values on the model's device; it lives as long as the bank,
    so every edit from the same inversion reuses the same buffers.
    """

    def __init__(self, storage_device: Optional[torch.device] = None):
        self.storage_device = storage_device
        self.entries: dict[tuple[int, LayerKey, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.staging: dict[tuple[LayerKey, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def _store(self, t: torch.Tensor) -> torch.Tensor:
        """A copy the model cannot overwrite (a compiled call may reuse its output memory)."""
        t = t.detach()
        device = t.device if self.storage_device is None else self.storage_device
        out = torch.empty(t.shape, dtype=t.dtype, device=device,
                          pin_memory=t.is_cuda and device.type == "cpu")
        out.copy_(t, non_blocking=True)
        return out

    def put(self, level: int, layer: LayerKey, chunk: int, k: torch.Tensor, v: torch.Tensor) -> None:
        self.entries[(level, layer, chunk)] = (self._store(k), self._store(v))

    def stage(self, level: int, device: torch.device,
              on_buffer: Optional[Callable[[torch.Tensor], None]] = None) -> dict:
        """Copy level ``level``'s keys/values into the staging buffers on ``device``; returns them.

        ``on_buffer`` is shown every buffer before it is filled."""
        for (lvl, layer, chunk), (k, v) in self.entries.items():
            if lvl != level:
                continue
            buf = self.staging.get((layer, chunk))
            if buf is None or buf[0].shape != k.shape or buf[0].device != device or buf[0].dtype != k.dtype:
                buf = (torch.empty(k.shape, dtype=k.dtype, device=device),
                       torch.empty(v.shape, dtype=v.dtype, device=device))
                self.staging[(layer, chunk)] = buf
            if on_buffer is not None:
                on_buffer(buf[0])
                on_buffer(buf[1])
            buf[0].copy_(k, non_blocking=True)
            buf[1].copy_(v, non_blocking=True)
        return self.staging

    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size()
                   for k, v in self.entries.values())


AttentionFn = Callable[..., torch.Tensor]  # (q, k, v, heads, attn_precision=...) -> out


class AttentionSwap:
    """One run's attention patch: ``mode`` "capture" (inversion) or "replace" (denoising).

    Outside a :meth:`begin`/:meth:`end` bracket (the patched model used by anything but the sampler)
    it computes plain self-attention. ``calls`` counts (level, layer) pairs, filled in by ``end``, so
    tests and the nodes can check that every layer took part at every step.
    ``on_buffer`` is shown every staging buffer it fills (the host marks them static for CUDA graphs).
    """

    def __init__(self, bank: KVBank, mode: str, attention: AttentionFn, enabled: bool = True,
                 on_buffer: Optional[Callable[[torch.Tensor], None]] = None):
        if mode not in ("capture", "replace"):
            raise ValueError(f"unknown AttentionSwap mode {mode!r}")
        self.bank = bank
        self.mode = mode
        self.attention = attention
        self.enabled = enabled
        self.on_buffer = on_buffer
        self.active = False
        self.level: Optional[int] = None
        self.captured: dict = {}   # (layer, chunk) -> (k, v) seen in the current call
        self.hit: dict = {}        # layer -> True for every layer that ran in the current call
        self.calls: Counter = Counter()

    def begin(self, level: int, device: torch.device) -> None:
        """Before the model call on z_level: stage that level's cached keys/values (replace mode)."""
        if self.enabled and self.mode == "replace":
            self.bank.stage(level, device, self.on_buffer)
        self.captured.clear()
        self.hit.clear()
        self.level = level
        self.active = True

    def end(self, completed: bool = True) -> None:
        """After the model call: file captured keys/values in the bank and count the layers."""
        self.active = False
        if completed and self.level is not None:
            for (layer, chunk), (k, v) in self.captured.items():
                self.bank.put(self.level, layer, chunk, k, v)
            for layer in self.hit:
                self.calls[(self.level, layer)] += 1
        self.captured.clear()
        self.hit.clear()
        self.level = None

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

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra_options: dict) -> torch.Tensor:
        heads = extra_options["n_heads"]
        precision = extra_options.get("attn_precision")
        if self.active and self.enabled:
            layer = self.layer_key(extra_options)
            chunks: list[Hashable] = list(extra_options.get("cond_or_uncond") or [0])
            if q.shape[0] % len(chunks):
                raise ValueError(f"batch {q.shape[0]} does not split into chunks {chunks}")
            if self.mode == "capture":
                for c, kc, vc in zip(chunks, k.chunk(len(chunks)), v.chunk(len(chunks))):
                    self.captured[(layer, int(c))] = (kc, vc)
            else:
                k, v = self._staged_kv(layer, chunks, k, v)
            self.hit[layer] = True
        return self.attention(q, k, v, heads, attn_precision=precision)

    def _staged_kv(self, layer, chunks, k, v):
        staged = self.bank.staging
        ks, vs = [], []
        for c in chunks:
            key = (layer, int(c))
            if key not in staged:
                # The inversion ran the positive prompt only (chunk 0); reuse it for others.
                key = (layer, 0)
            if key not in staged:
                raise KeyError(f"no cached keys/values for layer {layer} at level {self.level}")
            kc, vc = staged[key]
            ks.append(kc)
            vs.append(vc)
        if len(ks) == 1:
            kc, vc = ks[0], vs[0]
        else:
            kc, vc = torch.cat(ks), torch.cat(vs)
        if kc.shape != k.shape:
            raise ValueError(f"cached keys of layer {layer} have shape {tuple(kc.shape)}, "
                             f"the model computes {tuple(k.shape)}")
        return kc.to(k.dtype), vc.to(v.dtype)
