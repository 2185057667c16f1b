"""The benchmark's report: the ratios between its figures, the budgets they are held to, and the
printed report (``benchmark.py`` prints it to stdout; the JSON carries the same figures).
"""
from __future__ import annotations

import os
import sys

# ------------------------------------------------------------------------------------- budgets

# key: (label, limit). A run passes a budget when its figure is at most the limit; the label says which
# figure, and {limit} in it is filled in from the limit. The GPU budgets apply on CUDA, the CPU budgets
# on the CPU, the K/V budget everywhere.
BUDGETS = {
    "gpu_full_edit": ("GPU: full edit <= {limit:g} x ComfyUI 20-step CFG 7.5 sampler", 0.6),
    "gpu_full_edit_sdxl": ("GPU, SDXL: full edit <= {limit:g} x ComfyUI 20-step CFG 7.5 sampler", 0.8),
    "gpu_re_edit": ("GPU: re-edit <= {limit:.2f} x its floor (10 bare batch-1 UNet calls + VAE decode)", 1.10),
    "gpu_fast_full_edit": ("GPU fast path: full edit <= {limit:.2f} s (H100/H200)", 0.20),   # with --compile
    "gpu_fast_re_edit": ("GPU fast path: re-edit <= {limit:.2f} s (H100/H200)", 0.15),       # with --compile
    "cpu_full_edit": ("CPU: full edit <= {limit:.2f} x (bare calls + VAE encode + decode)", 1.10),
    "cpu_re_edit": ("CPU: re-edit <= {limit:.2f} x its floor (10 bare batch-1 UNet calls + VAE decode)", 1.10),
    "kv_cache": ("K/V cache, SD1.5 512x512, 10 steps, fp16 <= {limit:g} GB", 0.5),   # GB = 10^9 bytes
}
# The image side (fp16 UNet on CUDA) each device's budgets are set for; other runs get a note.
GPU_SIDE = 512
GPU_SIDE_SDXL = 1024   # SDXL's full-edit budget
CPU_SIDE = 256


def sd15_kv_bytes(latent_h: int, latent_w: int, levels: int, element_size: int = 2) -> int:
    """K/V bytes SD1.5 caches for ``levels`` model calls: keys and values of every self-attention layer.

    Tokens at UNet level L are ceil(h/2^L) x ceil(w/2^L), channels 320 * (1, 2, 4, 4)[L]; levels 0-2
    have 2 input and 3 output layers each, the middle block (level 3) one. Linear in the latent area.
    """
    def tokens(level):
        return -(-latent_h // 2 ** level) * -(-latent_w // 2 ** level)
    per_call = sum(5 * tokens(lv) * 320 * m for lv, m in ((0, 1), (1, 2), (2, 4))) + tokens(3) * 1280
    return 2 * per_call * element_size * levels


# -------------------------------------------------------------------------------------- ratios

def ratio_table(t: dict, parts: dict) -> dict:
    floor = t["bare_calls"] + parts["vae_encode"] + parts["vae_decode"]
    return {
        "full_edit_over_floor": t["full_edit"] / floor,
        "re_edit_over_full_edit": t["re_edit"] / t["full_edit"],
        "re_edit_cp_over_re_edit": t["re_edit_cp"] / t["re_edit"],
        "re_edit_over_its_floor": t["re_edit"] / (t["bare_calls"] / 2 + parts["vae_decode"]),
        "inversion_batched_over_sequential": t["inversion_batched"] / t["inversion_sequential"],
        "full_edit_over_comfy_sampler": t["full_edit"] / t["comfy_sampler"],
        "full_edit_over_comfy_sampler_plus_decode": t["full_edit"] / (t["comfy_sampler"] + parts["vae_decode"]),
        "kv_cpu_over_full_edit": t["full_edit_kv_cpu"] / t["full_edit"],
        "cfg_over_full_edit": t["full_edit_cfg"] / t["full_edit"],
        "inversion_over_its_bare_calls": parts["inversion"] / (t["bare_calls"] / 2),
        "denoising_over_its_bare_calls": parts["denoising"] / (t["bare_calls"] / 2),
    }


def budgets(r: dict, cuda: bool) -> list[dict]:
    """The budgets that apply to this run's device, each checked against the run's figure, with a note
    when the run's size or dtype is not the one the budget is set for."""
    out = []

    def add(key, value, note=""):
        label, limit = BUDGETS[key]
        out.append({"budget": label.format(limit=limit), "value": value, "limit": limit, "pass": value <= limit,
                    "note": note})

    ra = r["ratios"]
    if cuda:
        def fp16_at(side):
            return "" if (r["size"] == side and r["unet_dtype"] == "float16") else \
                f"budget is for {side}x{side} fp16; this run: {r['size']}x{r['size']} {r['unet_dtype']}"
        note = fp16_at(GPU_SIDE)
        if r["family"] == "sdxl":   # SDXL's full edit has its own budget, at its native size
            add("gpu_full_edit_sdxl", ra["full_edit_over_comfy_sampler"], fp16_at(GPU_SIDE_SDXL))
        else:
            add("gpu_full_edit", ra["full_edit_over_comfy_sampler"], note)
        add("gpu_re_edit", ra["re_edit_over_its_floor"], note)
        if r["compile"]:
            card = note + ("; " if note else "") + f"card: {r['device_name']}"
            add("gpu_fast_full_edit", r["median_s"]["full_edit"], card)
            add("gpu_fast_re_edit", r["median_s"]["re_edit"], card)
    else:
        note = "" if r["size"] == CPU_SIDE else \
            f"budget is for {CPU_SIDE}x{CPU_SIDE}; this run: {r['size']}x{r['size']}"
        add("cpu_full_edit", ra["full_edit_over_floor"], note)
        add("cpu_re_edit", ra["re_edit_over_its_floor"], note)
    kv = r["kv_cache"]
    if r["sd15_attention_layout"]:
        add("kv_cache", kv["bytes_fp16_512px_10_steps"] / 1e9, "scaled from this run by latent area and level count"
            if (r["size"] != 512 or r["levels"] != 10 or kv["dtype"] != "float16") else "")
    else:
        add("kv_cache", kv["sd15_expected_bytes_fp16_512px_10_steps"] / 1e9,
            "computed for SD1.5's layers: the checkpoint's self-attention layout is not "
            f"SD1.5's; its own cache scales to {kv['bytes_fp16_512px_10_steps'] / 1e9:.3f} GB")
    return out




# -------------------------------------------------------------------------------------- report

def report(r: dict, write=None) -> None:
    write = write or (lambda s: sys.stdout.write(s + "\n"))
    med, parts, ra = r["median_s"], r["full_edit_parts_median_s"], r["ratios"]
    mb = lambda b: f"{b / 1e6:,.1f} MB"  # noqa: E731
    spread = lambda k: f"[{min(r['runs_s'][k]):.3f} .. {max(r['runs_s'][k]):.3f}]"  # noqa: E731
    write("")
    write(f"RegionDrag benchmark - ComfyUI {r['comfyui_version']}, torch {r['torch']}, {r['device_name']} "
          f"({r['device']}, {r['threads']} threads), attention {r['attention']}")
    write(f"model: {os.path.basename(r['checkpoint'])}, UNet {r['unet_dtype']}"
          + (f" (compute {r['unet_manual_cast']})" if r["unet_manual_cast"] else "")
          + f"; image {r['size']}x{r['size']} (latent {r['latent'][1]}x{r['latent'][0]}); "
          f"steps {r['steps']}, start_t {r['start_t']}: {r['levels']} inversion + {r['levels']} denoising calls; "
          f"median of {r['repeats']} after a warm-up")
    if r["vram_limit"]:
        v = r["vram_limit"]
        write(f"card made small: {v['gb']:g} GB of the {v['card_gb']:.1f} GiB (ComfyUI --reserve-vram "
              f"{v['reserve_vram_gb']:.1f}, PyTorch memory fraction {v['memory_fraction']:.3f}); both the edit "
              "and the KSampler completed within it")
    if r["compile"]:
        w = r["warm_up_s"]
        write(f"compiled: ComfyUI TorchCompileModel, backend {r['compile']}; warm-up (compiling included): "
              f"first full edit {w['first_full_edit']:.1f} s, first KSampler {w['first_comfy_sampler']:.1f} s; "
              "the bare calls run the uncompiled UNet")
    write("")
    write(f"{'figure':<54}{'median s':>10}   min .. max")
    rows = [
        ("full edit (encode + invert + map + denoise + decode)", "full_edit"),
        ("re-edit, inversion cached (map + denoise + decode)", "re_edit"),
        ("re-edit, CP then Encode (+ preview encode, invert)", "re_edit_cp"),
        ("full edit, kv_cache='cpu'", "full_edit_kv_cpu"),
        (f"full edit at CFG {r['edit_cfg']:g} (negative prompt, both nodes)", "full_edit_cfg"),
        (f"bare UNet calls, batch 1 (x{r['model_calls']})", "bare_calls"),
        (f"inversion alone, sequential (inversion_batch 1: {r['levels']} calls)", "inversion_sequential"),
        (f"inversion alone, batched (inversion_batch {r['levels']}: 1 call)", "inversion_batched"),
        (f"bare UNet call, batch {r['levels']} (the inversion's latents)", "bare_batched"),
        (f"ComfyUI KSampler, {r['sampler_steps']} steps, CFG {r['sampler_cfg']}, euler/normal", "comfy_sampler"),
    ]
    for label, k in rows:
        write(f"{label:<54}{med[k]:>10.3f}   {spread(k)}")
    lv = r.get("live")
    if lv:
        write(f"{'live re-edit, ' + str(lv['size']) + 'x' + str(lv['size']) + ', server: post -> image':<54}"
              f"{lv['post_to_image_s']:>10.3f}   [{min(lv['runs_post_to_image_s']):.3f} .. "
              f"{max(lv['runs_post_to_image_s']):.3f}]")
    write("full edit, parts: " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
    write(f"floor = bare calls + VAE encode + VAE decode = {r['floor_s']:.3f} s; re-edit floor = "
          f"{r['levels']} bare calls + VAE decode = {r['re_edit_floor_s']:.3f} s")
    if r.get("live_error"):
        write(f"live re-edit: not measured ({r['live_error'].splitlines()[0][:300]})")
    if lv:
        write(f"live re-edit: the changed shapes posted to a ComfyUI server of its own (the live graph, Preview "
              f"Image at the end), timed to the decoded image: {lv['post_to_image_s']:.3f} s (to the executed "
              f"message {lv['post_to_executed_s']:.3f} s), median of {lv['repeats']}, the inversion cached in "
              f"every one; first run with the inversion {lv['first_run_s']:.2f} s")
    write(f"the full edit's inversion ran in chunks of {r['default_inversion_chunk']} level(s) "
          "(inversion_batch 0 = auto: 1 on the CPU, as many as fit on a GPU)")
    write("")
    rm = r["ratios_per_round_median"]
    write(f"{'ratios':<46}{'of medians':>11}{'per round':>11}")
    n = r["levels"]
    for label, k in (("full edit / floor", "full_edit_over_floor"),
                     ("re-edit / full edit", "re_edit_over_full_edit"),
                     ("re-edit CP then Encode / Encode then CP", "re_edit_cp_over_re_edit"),
                     ("re-edit / its floor", "re_edit_over_its_floor"),
                     ("inversion batched / sequential", "inversion_batched_over_sequential"),
                     ("full edit / ComfyUI sampler", "full_edit_over_comfy_sampler"),
                     ("full edit / (ComfyUI sampler + VAE decode)", "full_edit_over_comfy_sampler_plus_decode"),
                     ("full edit kv_cache='cpu' / full edit", "kv_cpu_over_full_edit"),
                     (f"full edit CFG {r['edit_cfg']:g} / CFG 1", "cfg_over_full_edit"),
                     (f"inversion / its {n} bare calls", "inversion_over_its_bare_calls"),
                     (f"denoising / its {n} bare calls", "denoising_over_its_bare_calls")):
        write(f"  {label:<44}{ra[k]:>11.3f}{rm[k]:>11.3f}")
    write("  (per round: each ratio within one round, median over the rounds)")
    if r["max_spread_between_rounds"] > 1.3:
        write(f"  WARNING: a figure varied {r['max_spread_between_rounds']:.1f}x between rounds: other work was "
              "slowing this machine; the ratios are unreliable, rerun when it is idle.")
    if r["device"] == "cpu":
        write("  (kv_cache='cpu' is a no-op on the CPU, the cache is in host memory already: timed once)")
    kv = r["kv_cache"]
    write("")
    write(f"K/V cache: {mb(kv['bytes'])} ({kv['dtype']})"
          + (f", {mb(kv['bytes_fp16'])} at fp16" if kv["dtype"] != "float16" else "")
          + f"; cached latents + noise {mb(kv['latents_bytes'])}")
    write(f"K/V cache scaled to 512x512, 10 steps, fp16: {mb(kv['bytes_fp16_512px_10_steps'])}"
          + ("" if r["size"] == 512 else f" (K/V scales with latent area: x{(512 / r['size']) ** 2:g} from "
             f"{r['size']}x{r['size']})"))
    if r["sd15_attention_layout"]:
        write(f"  expected for SD1.5's 16 self-attention layers: {mb(kv['sd15_expected_bytes'])} at this size "
              f"and dtype, {mb(kv['sd15_expected_bytes_fp16_512px_10_steps'])} at 512x512, 10 steps, fp16")
    write(f"  estimated before the inversion (kv_cache auto decides on it): {mb(kv['estimate_bytes'])}")
    if kv["placement_log"]:
        write(f"  placement (the full edit, kv_cache auto): {kv['placement_log'].split(': ', 1)[1]}")
    gib = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
    write(f"K/V cache of this {r['family']} UNet at {kv['native_size']}x{kv['native_size']}, 10 steps, fp16, per "
          "kv_layers: " + "; ".join(f"{c} {v['layers']} layers {gib(v['bytes'])}"
                                    for c, v in kv["native_10_steps_fp16_per_layer_choice"].items()))
    if not r["sd15_attention_layout"] and r["family"] == "sd15":
        write("  WARNING: the checkpoint's UNet is not SD1.5-shaped: self-attention in "
              + " ".join(f"{n}{i}" for n, i in r["self_attention_blocks"])
              + "; SD1.5 has input1 input2 input4 input5 input7 input8 middle0 output3..output11. "
              "Timings and cache size are not SD1.5's.")
    pm = r["peak_memory"]
    if "rss_after_model_load" in pm:   # a high-water mark for the whole process: one figure
        write(f"peak memory ({pm['kind']}): {mb(max(pm['bytes'].values()))} "
              f"(already {mb(pm['rss_after_model_load'])} after loading the checkpoint)")
    else:
        write(f"peak GPU memory: full edit {mb(pm['bytes'].get('full_edit', 0))} vs ComfyUI KSampler "
              f"{mb(pm['bytes'].get('comfy_sampler', 0))}")
        write(f"peak memory ({pm['kind']}, per figure): "
              + ", ".join(f"{k} {mb(v)}" for k, v in pm["bytes"].items()))
    write("")
    for bgt in r["budgets"]:
        write(f"{'PASS' if bgt['pass'] else 'FAIL'}  {bgt['budget']}: {bgt['value']:.3f}"
              + (f"  ({bgt['note']})" if bgt["note"] else ""))
    write(f"(benchmark wall time {r['wall_s']:.0f} s, checkpoint load {r['checkpoint_load_s']:.1f} s)")
