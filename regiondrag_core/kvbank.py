"""Mutual self-attention: keys/values captured during inversion, swapped in during denoising.

The host calls an attention-replace function with projected ``q, k, v`` of shape
[batch, tokens, heads * dim_head] and an ``extra_options`` dict that names the layer
(``block``, ``block_index``), the batch chunks (``cond_or_uncond``) and ``n_heads``.
:class:`AttentionSwap` is the framework-agnostic half: the node layer wraps its
``__call__`` in a closure and registers it on a cloned model. The level (which cached
latent z_k the model is being evaluated on) is set by the sampler before every model call.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Hashable, Optional

import torch

LayerKey = tuple  # (block name, block number, transformer index), e.g. ("input", 1, 0)


class KVBank:
    """Keys/values by (level, layer, cond_or_uncond chunk). Kept in the model's dtype.

    ``storage_device=None`` keeps each tensor where the model produced it (fast);
    ``torch.device("cpu")`` offloads to host memory (pinned when produced on CUDA) and
    copies back asynchronously at use, for large images or small GPUs.
    """

    def __init__(self, storage_device: Optional[torch.device] = None):
        self.storage_device = storage_device
        self.entries: dict[tuple[int, LayerKey, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def _store(self, t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        if self.storage_device is None or t.device == self.storage_device:
            return t
        out = torch.empty(t.shape, dtype=t.dtype, device=self.storage_device,
                          pin_memory=t.is_cuda and self.storage_device.type == "cpu")
        out.copy_(t, non_blocking=True)
        return out

    def put(self, level: int, layer: LayerKey, chunk: int, k: torch.Tensor, v: torch.Tensor) -> None:
        self.entries[(level, layer, chunk)] = (self._store(k), self._store(v))

    def get(self, level: int, layer: LayerKey, chunk: int, device: torch.device):
        k, v = self.entries[(level, layer, chunk)]
        if k.device != device:
            k, v = k.to(device, non_blocking=True), v.to(device, non_blocking=True)
        return k, v

    def has(self, level: int, layer: LayerKey, chunk: int) -> bool:
        return (level, layer, chunk) in self.entries

    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size()
                   for k, v in self.entries.values())


AttentionFn = Callable[..., torch.Tensor]  # (q, k, v, heads, attn_precision=...) -> out


class AttentionSwap:
    """One run's attention patch: ``mode`` "capture" (inversion) or "replace" (denoising).

    ``level`` must be set by the sampler before each model call; a call with no level set
    (the patched model used outside the sampler) computes plain self-attention.
    ``calls`` counts (level, layer) pairs so tests can check every layer at every step.
    """

    def __init__(self, bank: KVBank, mode: str, attention: AttentionFn, enabled: bool = True):
        if mode not in ("capture", "replace"):
            raise ValueError(f"unknown AttentionSwap mode {mode!r}")
        self.bank = bank
        self.mode = mode
        self.attention = attention
        self.enabled = enabled
        self.level: Optional[int] = None
        self.calls: Counter = Counter()

    @staticmethod
    def layer_key(extra_options: dict) -> LayerKey:
        block = extra_options.get("block") or ("?", 0)
        return (block[0], int(block[1]), int(extra_options.get("block_index", 0)))

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra_options: dict) -> torch.Tensor:
        heads = extra_options["n_heads"]
        precision = extra_options.get("attn_precision")
        level = self.level
        if level is not None and self.enabled:
            layer = self.layer_key(extra_options)
            chunks: list[Hashable] = list(extra_options.get("cond_or_uncond") or [0])
            if q.shape[0] % len(chunks):
                raise ValueError(f"batch {q.shape[0]} does not split into chunks {chunks}")
            if self.mode == "capture":
                for c, kc, vc in zip(chunks, k.chunk(len(chunks)), v.chunk(len(chunks))):
                    self.bank.put(level, layer, int(c), kc, vc)
            else:
                k, v = self._cached(level, layer, chunks, k, v)
            self.calls[(level, layer)] += 1
        return self.attention(q, k, v, heads, attn_precision=precision)

    def _cached(self, level, layer, chunks, k, v):
        ks, vs = [], []
        for c in chunks:
            c = int(c)
            if not self.bank.has(level, layer, c):
                # The inversion ran the positive prompt only (chunk 0); reuse it for others.
                c = 0
            if not self.bank.has(level, layer, c):
                raise KeyError(f"no cached keys/values for layer {layer} at level {level}")
            kc, vc = self.bank.get(level, layer, c, k.device)
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
