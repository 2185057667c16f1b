"""regiondrag_core.kvbank: the K/V cache size estimate and the layer choices (no ComfyUI needed)."""
from __future__ import annotations

import pytest
import torch

from regiondrag_core.kvbank import (KV_LAYER_CHOICES, AttentionLayer, AttentionSwap, KVBank, choose_layers,
                                    kv_cache_bytes)

# SD1.5's self-attention layers as ComfyUI names them: (block, number, index), divisor, key + value width.
SD15 = ([AttentionLayer(("input", n, 0), d, 2 * c) for n, d, c in
         ((1, 1, 320), (2, 1, 320), (4, 2, 640), (5, 2, 640), (7, 4, 1280), (8, 4, 1280))]
        + [AttentionLayer(("middle", 0, 0), 8, 2 * 1280)]
        + [AttentionLayer(("output", n, 0), d, 2 * c) for n, d, c in
           ((3, 4, 1280), (4, 4, 1280), (5, 4, 1280), (6, 2, 640), (7, 2, 640), (8, 2, 640),
            (9, 1, 320), (10, 1, 320), (11, 1, 320))])
# SDXL: input 4, 5 (2 transformer blocks, 640 wide, latent/2), input 7, 8 and middle 0 (10 blocks, 1280,
# latent/4), output 0-2 (10 blocks, 1280, latent/4), output 3-5 (2 blocks, 640, latent/2).
SDXL = ([AttentionLayer(("input", n, i), 2, 1280) for n in (4, 5) for i in range(2)]
        + [AttentionLayer(("input", n, i), 4, 2560) for n in (7, 8) for i in range(10)]
        + [AttentionLayer(("middle", 0, i), 4, 2560) for i in range(10)]
        + [AttentionLayer(("output", n, i), 4, 2560) for n in (0, 1, 2) for i in range(10)]
        + [AttentionLayer(("output", n, i), 2, 1280) for n in (3, 4, 5) for i in range(2)])


def chosen(layers, choice):
    blocks = {tuple(a.key[:2]) for a in layers}
    keep = choose_layers(blocks, choice)
    return [a for a in layers if tuple(a.key[:2]) in keep]


def test_sd15_layer_list_is_the_unet():
    assert len(SD15) == 16


def test_sd15_512_all_layers_is_the_known_figure():
    """SD1.5 at 512x512 (latent 64), 10 steps, fp16: 11,550,720 key elements a step, 0.43 GiB in all."""
    assert kv_cache_bytes(SD15, (64, 64), 10, 2) == 10 * 46_202_880
    assert kv_cache_bytes(SD15, (64, 64), 1, 4) == 2 * 46_202_880   # fp32: twice


@pytest.mark.parametrize("choice, layers, gib", [("all", 70, 3.91), ("decoder only", 36, 2.05),
                                                 ("encoder + middle", 34, 1.86)])
def test_sdxl_1024_per_layer_choice(choice, layers, gib):
    """SDXL at 1024x1024 (latent 128), 10 steps, fp16: every choice's layer count and size; the two
    smaller choices partition the 70 layers."""
    picked = chosen(SDXL, choice)
    assert len(picked) == layers
    n = kv_cache_bytes(picked, (128, 128), 10, 2)
    assert round(n / 2**30, 2) == gib
    if choice == "all":
        assert n == 10 * 400 * 2**20
        assert n == sum(kv_cache_bytes(chosen(SDXL, c), (128, 128), 10, 2) for c in ("decoder only", "encoder + middle"))


def test_size_scales_with_area_steps_entries_and_rounds_odd_sides_up():
    base = kv_cache_bytes(SDXL, (64, 64), 1, 2)
    assert kv_cache_bytes(SDXL, (128, 128), 1, 2) == 4 * base
    assert kv_cache_bytes(SDXL, (64, 64), 10, 2, entries=2) == 20 * base
    assert kv_cache_bytes(SDXL, (64, 64), 10, 2, entries=2, passes=2) == 40 * base   # PAG: a second pass
    # a 9x9 latent: ceil(9/2) = 5, ceil(9/4) = 3 tokens a side
    one = [AttentionLayer(("input", 1, 0), 1, 2), AttentionLayer(("input", 4, 0), 2, 2),
           AttentionLayer(("input", 7, 0), 4, 2)]
    assert kv_cache_bytes(one, (9, 9), 1, 1) == 2 * (81 + 25 + 9)
    assert kv_cache_bytes([], (9, 9), 10, 2) == 0
    with pytest.raises(ValueError):
        kv_cache_bytes(one, (0, 9), 1, 1)


def test_layer_choices_and_unknown_choice():
    blocks = [("input", 1), ("middle", 0), ("output", 3)]
    assert choose_layers(blocks, "all") == frozenset(blocks)
    assert choose_layers(blocks, "decoder only") == {("output", 3)}
    assert choose_layers(blocks, "encoder + middle") == {("input", 1), ("middle", 0)}
    assert list(KV_LAYER_CHOICES)[0] == "all"
    with pytest.raises(ValueError, match="decoder only"):
        choose_layers(blocks, "decoder")


def _attn(q, k, v, heads, attn_precision=None):
    return torch.softmax(q @ k.transpose(-1, -2), -1) @ v


def test_swap_leaves_layers_outside_its_choice_plain_and_uncounted():
    """A layer outside ``layers`` computes plain attention with its own k, v: not captured, not replaced,
    not counted, and not reported missing."""
    bank = KVBank()
    chosen_layers = frozenset({("output", 3)})
    cap = AttentionSwap(bank, "capture", _attn, layers=chosen_layers)
    q, k, v = (torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    opts = {"n_heads": 1, "cond_or_uncond": [0]}
    cap.begin(1, torch.device("cpu"))
    cap(q, k, v, {**opts, "block": ("input", 1), "block_index": 0})
    cap(q, k, v, {**opts, "block": ("output", 3), "block_index": 0})
    cap.end()
    assert set(bank.keys()) == {(1, ("output", 3, 0), 0, 0)}
    assert set(cap.calls) == {(1, ("output", 3, 0))}
    assert cap.levels_missing(chosen_layers, [1]) == []
    bank.freeze()
    rep = AttentionSwap(bank, "replace", _attn, layers=chosen_layers)
    other_k, other_v = torch.randn(1, 4, 8), torch.randn(1, 4, 8)
    rep.begin(1, torch.device("cpu"))
    plain = rep(q, other_k, other_v, {**opts, "block": ("input", 1), "block_index": 0})
    swapped = rep(q, other_k, other_v, {**opts, "block": ("output", 3), "block_index": 0})
    rep.end()
    assert torch.equal(plain, _attn(q, other_k, other_v, 1))
    assert torch.equal(swapped, _attn(q, k, v, 1))
    assert set(rep.calls) == {(1, ("output", 3, 0))}


def test_bank_placement_is_chosen_before_it_fills():
    bank = KVBank()
    bank.place(torch.device("cpu"))
    assert bank.storage_device == torch.device("cpu")
    bank.put(1, ("input", 1, 0), 0, torch.zeros(1, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(RuntimeError):
        bank.place(None)
