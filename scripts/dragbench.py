"""Edit and score a whole DragBench folder (or any folder in its format) over one or more ComfyUI servers.

    python scripts/dragbench.py ../../input/drag_data --server http://127.0.0.1:8188 \\
        --ckpt v1-5-pruned-emaonly.safetensors --dift-ckpt v2-1_768-ema-pruned.safetensors --out dragbench_results

Each sample becomes one API prompt queued on a server's own ``/prompt`` queue: ComfyUI does the work and
keeps its caches (the checkpoints load once per server); this command only keeps every server fed,
collects the results and writes the tables. The graph (``build_graph``), with the paper's settings by
default (20 steps, start_t 0.5, end_t 0.2, noise weight 1; seed 42 as the released ``run_eval.py``, which
in effect pastes at every step, ``--end-t 0``, and adds IP-Adapter Plus to the UNet):

    CheckpointLoaderSimple(--ckpt) -> DragBench Sample(folder, sample) -> CLIP Text Encode(its prompt)
    -> VAE Encode -> DDPM Invert-and-Cache -> Point Pairs to Drag Map(its dense pairs) -> RegionDrag KSampler
    (edit_mask: its editable area) -> VAE Decode -> ImageCompositeMasked(the original outside the editable
    area, as the released code keeps it) -> SaveImage, and unless --no-score DragBench Score (MD, LPIPS)
    with DIFT from a second CheckpointLoaderSimple(--dift-ckpt, SD2.1).

Where the data must be. The DragBench Sample node reads only inside the server's input folder. DATASET is
the local copy (this command lists its samples, checks each with the pack's restricted unpickler, and
names the results by their path in it); ``--input-folder`` is the same folder as the servers see it,
relative to their input folder (default: DATASET's own name). Servers on other machines each need a copy
there. DATASET may be one set (``dragbench-sr``: ``<id>/``; ``dragbench-dr``: ``<category>/<id>/``) or a
folder holding both (the released repo's ``drag_data``); the summary then has a line per set.

How a run goes.
* Bad samples (a missing file, a broken or hostile pickle, bad content) are found locally before anything
  is queued: a "bad" row with the reason; they are never queued and count as complete.
* Every live server keeps ``--window`` prompts (default 2) in its queue. A server that refuses
  connections, resets them, answers HTTP 5xx or is silent for ``--dead-after`` seconds is gone: its queued
  samples go to the others; it is asked again every ``--retry-dead`` seconds. A sample that ComfyUI
  refuses (HTTP 400) or whose execution fails is a "failed" row with ComfyUI's message; the run goes on,
  and the next run retries it. When no server answers the run stops (exit status 3); rows so far stay.
* Results go to ``--out``: one JSON file per finished sample, written atomically (what resume and "every
  sample exactly once" rest on; a sample finished twice counts once), its images fetched through
  ``/view`` (so they stay when the servers go), then results.json/.csv (name, category, status, md,
  lpips, seconds, server, message), summary.json (counts; mean MD and LPIPS overall, per set and per
  category; seconds per edit; this run's edits per second) and contact_sheet.png.
  ``seconds`` is ComfyUI's execution time of the sample's prompt: with scoring on it includes the
  scoring, and the first prompt on a server includes loading the checkpoints (hence the median too).
* Resume: a second run skips the samples whose rows are complete ("ok" with its image, or "bad") and says
  how many. Settings that change the results (checkpoints, steps, ...) are stored in OUT/settings.json; a
  run with other settings into the same OUT is refused (use another --out, or --force to redo all).
* Progress: a tqdm bar (samples done, failed, bad, edits/s) on a terminal; log lines elsewhere. The log
  also goes to OUT/dragbench.log.

Exit status: 0 every sample is "ok" or "bad" (bad samples are reported, not run); 1 some samples failed
(run again to retry them); 2 a usage problem (nothing queued); 3 stopped early (no server answers, or
Ctrl-C); the results written so far stay in every case.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from comfy_finder import PACK_DIR  # noqa: E402
import dragbench_results as res  # noqa: E402
from dragbench_pool import AllServersGone, Pool  # noqa: E402
from dragbench_servers import Progress, ServerSetupError, check_servers, setup_logging  # noqa: E402

if PACK_DIR not in sys.path:
    sys.path.append(PACK_DIR)   # regiondrag_core (plain torch/numpy/opencv, no ComfyUI)

log = logging.getLogger("RegionDrag.dragbench")

LPIPS_BACKBONES = {"pretrained": "AlexNet (pretrained)", "random": "random (testing only)"}
# node ids of the graph
CKPT, SAMPLE, TEXT, ENC, INV, PAIRS, DRAG, DEC, KEEP, SAVE, DIFT, SCORE, NEG = (str(i) for i in range(1, 14))
POLL_S = 0.25    # how often each server's history is asked for its queued prompts
EDIT_NODES = ("RegionDragBenchSample", "RegionDragPointPairs", "DDPMInvertAndCache", "RegionDragKSampler")
SCORE_NODES = ("RegionDragBenchScore",)

DEFAULTS = dict(ckpt=None, steps=20, start_t=0.5, end_t=0.2, noise_weight=1.0, seed=42, cfg=1.0, negative="",
                score=True, dift_ckpt=None, lpips_backbone="pretrained", dift_size=768, ensemble=8, timestep=261,
                dift_seed=0)


def build_graph(input_folder: str, sample: str, settings: dict, prefix: str) -> dict:
    """The API prompt that edits (and unless ``settings["score"]`` is false, scores) one sample:
    ``input_folder`` the dataset inside the server's input folder, ``sample`` the sample's path in it,
    ``settings`` as :data:`DEFAULTS`, ``prefix`` SaveImage's filename prefix."""
    s = {**DEFAULTS, **settings}
    seed = int(s["seed"])
    g = {   # the nodes and ids of example_workflows/api/regiondrag_dragbench_score_api.json, less its preview
        CKPT: {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": s["ckpt"]}},
        SAMPLE: {"class_type": "RegionDragBenchSample",
                 "inputs": {"folder": input_folder, "index": 0, "sample": sample}},
        TEXT: {"class_type": "CLIPTextEncode", "inputs": {"text": [SAMPLE, 1], "clip": [CKPT, 1]}},
        ENC: {"class_type": "VAEEncode", "inputs": {"pixels": [SAMPLE, 0], "vae": [CKPT, 2]}},
        INV: {"class_type": "DDPMInvertAndCache",
              "inputs": {"model": [CKPT, 0], "positive": [TEXT, 0], "latent": [ENC, 0], "steps": int(s["steps"]),
                         "start_t": float(s["start_t"]), "seed": seed}},
        PAIRS: {"class_type": "RegionDragPointPairs", "inputs": {"latent": [ENC, 0], "drag_points": [SAMPLE, 2]}},
        DRAG: {"class_type": "RegionDragKSampler",
               "inputs": {"model": [CKPT, 0], "inversion": [INV, 0], "drag_map": [PAIRS, 0], "positive": [TEXT, 0],
                          "end_t": float(s["end_t"]), "noise_weight": float(s["noise_weight"]), "seed": seed,
                          "edit_mask": [SAMPLE, 3]}},
        DEC: {"class_type": "VAEDecode", "inputs": {"samples": [DRAG, 0], "vae": [CKPT, 2]}},
        KEEP: {"class_type": "ImageCompositeMasked",
               "inputs": {"destination": [SAMPLE, 0], "source": [DEC, 0], "x": 0, "y": 0, "resize_source": False,
                          "mask": [SAMPLE, 3]}},
        SAVE: {"class_type": "SaveImage", "inputs": {"images": [KEEP, 0], "filename_prefix": prefix}},
    }
    if float(s["cfg"]) != 1.0:   # guidance needs a negative, the same on both RegionDrag nodes
        g[NEG] = {"class_type": "CLIPTextEncode", "inputs": {"text": s["negative"], "clip": [CKPT, 1]}}
        for node in (INV, DRAG):
            g[node]["inputs"].update(negative=[NEG, 0], cfg=float(s["cfg"]))
    if s["score"]:
        g[DIFT] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": s["dift_ckpt"]}}
        g[SCORE] = {"class_type": "RegionDragBenchScore",
                    "inputs": {"original": [SAMPLE, 0], "edited": [KEEP, 0], "score_points": [SAMPLE, 4],
                               "prompt": [SAMPLE, 1], "dift_model": [DIFT, 0], "dift_clip": [DIFT, 1],
                               "dift_vae": [DIFT, 2], "dift_size": int(s["dift_size"]),
                               "ensemble": int(s["ensemble"]), "timestep": int(s["timestep"]),
                               "dift_seed": int(s["dift_seed"]),
                               "lpips_backbone": LPIPS_BACKBONES[s["lpips_backbone"]]}}
    return g


def settings_from_args(args) -> dict:
    """What the results depend on (stored in OUT/settings.json)."""
    s = {k: getattr(args, k) for k in DEFAULTS if k != "score"}
    s["score"] = not args.no_score
    if not s["score"]:
        for k in ("dift_ckpt", "lpips_backbone", "dift_size", "ensemble", "timestep", "dift_seed"):
            s.pop(k)
    if s["cfg"] == 1.0:
        s.pop("negative")
    return s


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", metavar="DATASET", help="the dataset folder here (a DragBench set, or a folder "
                   "holding dragbench-sr and dragbench-dr)")
    p.add_argument("--server", action="append", required=True, metavar="URL",
                   help="a ComfyUI server with this pack, e.g. http://127.0.0.1:8188 (repeat for several)")
    p.add_argument("--out", required=True, metavar="DIR", help="results folder (created; a rerun resumes it)")
    p.add_argument("--input-folder", metavar="NAME",
                   help="DATASET as the servers see it, relative to their input folder (default: DATASET's name)")
    p.add_argument("--ckpt", required=True, metavar="NAME", help="the model to edit with (SD1.5 for the paper), "
                   "a checkpoint name as the servers list it")
    p.add_argument("--dift-ckpt", metavar="NAME", help="SD2.1 checkpoint for MD's DIFT features "
                   "(v2-1_768-ema-pruned.safetensors); needed unless --no-score")
    p.add_argument("--no-score", action="store_true", help="edit only: no MD/LPIPS (no --dift-ckpt needed)")
    p.add_argument("--lpips-backbone", choices=sorted(LPIPS_BACKBONES), default="pretrained",
                   help="LPIPS' AlexNet: pretrained (the paper's), or random to test offline (figures mean nothing)")
    for flag, typ, help_ in (("--steps", int, "DDPM steps over the 1000 training steps"),
                             ("--start-t", float, "inversion strength"), ("--end-t", float, "copy-paste stops below"),
                             ("--noise-weight", float, "alpha"), ("--seed", int, "seed of every node"),
                             ("--cfg", float, "guidance (1: the paper's; above 1 with --negative)"),
                             ("--dift-size", int, "DIFT image side"), ("--ensemble", int, "DIFT noise draws"),
                             ("--timestep", int, "DIFT timestep"), ("--dift-seed", int, "seed of DIFT's noise")):
        dest = flag[2:].replace("-", "_")
        p.add_argument(flag, type=typ, default=DEFAULTS[dest], help=f"{help_} (default {DEFAULTS[dest]})")
    p.add_argument("--negative", default="", help="negative prompt, with --cfg above 1 (default empty)")
    p.add_argument("--window", type=int, default=2, help="prompts kept queued per server (default 2)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds a sample may take once queued (default 3600)")
    p.add_argument("--dead-after", type=float, default=300,
                   help="seconds without any answer before a server counts as gone (default 300)")
    p.add_argument("--retry-dead", type=float, default=60,
                   help="ask a gone server again every this many seconds; 0: never (default 60)")
    p.add_argument("--force", action="store_true", help="redo every sample (drops OUT's earlier rows and images)")
    p.add_argument("--limit", type=int, default=0, help="only the first N samples (a smoke run)")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    args = p.parse_args(argv)
    args.server = list(dict.fromkeys(u.rstrip("/") for u in args.server))
    if not args.no_score and not args.dift_ckpt:
        p.error("--dift-ckpt is needed for scoring (SD2.1, e.g. v2-1_768-ema-pruned.safetensors), or pass --no-score")
    return args


def _set_of(name: str) -> str | None:
    from regiondrag_core.dragbench import SET_FOLDERS
    first = name.split("/", 1)[0]
    return first if first in SET_FOLDERS and "/" in name else None


def summarize(rows, names, run=None) -> dict:
    """:func:`dragbench_results.summarize`, plus a summary per set when DATASET holds both."""
    summary = res.summarize(rows, names, run)
    sets = sorted({s for s in map(_set_of, names) if s})
    if sets:
        summary["sets"] = {s: res.summarize([r for r in rows if _set_of(r["name"]) == s],
                                            [n for n in names if _set_of(n) == s]) for s in sets}
    return summary


def log_table(summary: dict) -> None:
    parts = [(k, v) for k, v in (summary.get("sets") or {}).items()] or [("all", summary)]
    log.info("%-14s %7s %5s %7s %6s %8s %10s %9s", "set", "samples", "ok", "failed", "bad", "MD x100", "LPIPS x100",
             "s/edit")
    def fmt(v):
        return "-" if v is None else f"{v:.2f}"
    for name, s in parts:
        log.info("%-14s %7d %5d %7d %6d %8s %10s %9s", name, s["samples"], s["ok"], s["failed"], s["bad"],
                 fmt(s["md_x100"]), fmt(s["lpips_x100"]), fmt(s["seconds_median"]))


def run(args) -> int:
    from regiondrag_core.dragbench import find_samples, read_sample, sample_category
    root, out = Path(args.dataset), Path(args.out)
    if not root.is_dir():
        log.error("DATASET %s is not a folder.", root)
        return 2
    folders = find_samples(root)
    if args.limit > 0:
        folders = folders[:args.limit]
    if not folders:
        log.error("%s holds no DragBench sample (a folder with original_image.png, meta_data_region.pkl and "
                  "meta_data.pkl).", root)
        return 2
    by_name = {f.relative_to(root).as_posix(): f for f in folders}
    names = list(by_name)
    category = {n: sample_category(root, f) for n, f in by_name.items()}
    settings = settings_from_args(args)
    problem = res.settings_problem(out, settings)
    if args.force:
        for sub in ("samples", "images"):
            shutil.rmtree(out / sub, ignore_errors=True)
        log.info("--force: earlier results in %s dropped; every sample runs", out)
    elif problem:
        log.error("%s", problem)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    res.write_json(out / "settings.json", settings)
    file_log = logging.FileHandler(out / "dragbench.log")
    file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(file_log)
    try:
        return _run(args, root, out, names, by_name, category, settings, read_sample)
    finally:
        logging.getLogger().removeHandler(file_log)
        file_log.close()


def _row(category):
    def row(name, status, server=None, **kw):
        r = dict(name=name, category=category.get(name), status=status, md=None, lpips=None, seconds=None,
                 server=server, message=None, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        r.update(kw)
        return r
    return row


def _run(args, root, out, names, by_name, category, settings, read_sample) -> int:
    rows = res.load_rows(out, names)
    complete = [n for n in names if res.is_complete(out, rows.get(n))]
    if complete:
        n_bad = sum(rows[n]["status"] == res.BAD for n in complete)
        log.info("skipped %d already complete (%d ok, %d bad) of %d samples in %s", len(complete),
                 len(complete) - n_bad, n_bad, len(names), out)
    row = _row(category)
    todo, n_bad = [], 0
    for n in names:
        if n in complete:
            continue
        try:
            read_sample(by_name[n], root=root, input_name="sample")
        except (OSError, ValueError) as e:   # RegionDragInputError is a ValueError
            rows[n] = row(n, res.BAD, message=str(e))
            res.write_row(out, rows[n])
            n_bad += 1
            log.warning("bad sample %s, not queued: %s", n, e)
            continue
        todo.append(n)
    log.info("queued %d sample(s) (%d bad, skipped %d complete) over %d server(s)", len(todo), n_bad,
             len(complete), len(args.server))
    code, run_info = 0, None
    if todo:
        code, run_info = _queue(args, out, todo, rows, row, settings, n_bad)
    final = [rows[n] for n in names if n in rows]
    summary = summarize(final, names, run_info)
    res.write_tables(out, final, summary)
    res.contact_sheet(out, final)
    log_table(summary)
    log.info("results: %s (results.csv, results.json, summary.json, contact_sheet.png)", out)
    if summary["failed"]:
        log.warning("%d sample(s) failed (their messages are in results.csv); run again to retry them",
                    summary["failed"])
    if code:
        return code
    return 1 if summary["failed"] or summary["missing"] else 0


def _queue(args, out, todo, rows, row, settings, n_bad=0):
    """Run ``todo`` over the servers; returns (exit status, this run's throughput)."""
    try:
        alive = check_servers(args.server, settings, EDIT_NODES + (SCORE_NODES if settings["score"] else ()))
    except ServerSetupError as e:
        log.error("%s", e)
        return 2, None
    if not any(alive.values()):
        log.error("no server answers (%s); nothing was queued.", ", ".join(args.server))
        return 3, None
    input_folder = (args.input_folder or Path(args.dataset).resolve().name).strip("/")
    run_id = time.strftime("%Y%m%d-%H%M%S")
    progress = Progress(len(todo), bar=not args.no_progress, bad=n_bad)
    progress.servers(sum(alive.values()), len(alive))
    finished_at = []

    def on_finished(done):
        r = done.row
        for kind, data in done.images.items():
            res.write_atomic(res.image_path(out, r["name"], kind), data)
            r[kind] = res.image_path(out, r["name"], kind).relative_to(out).as_posix()
        res.write_row(out, r)
        rows[r["name"]] = r
        finished_at.append(time.monotonic())
        progress.row(r)
        if r["status"] == res.FAILED:
            log.warning("%s failed on %s: %s", r["name"], r["server"], r["message"])

    pool = Pool(args.server, todo, lambda n: build_graph(input_folder, n, settings, f"regiondrag_bench/{run_id}/{n}"),
                row, on_finished, save_node=SAVE, score_node=SCORE if settings["score"] else None,
                on_servers=progress.servers, alive=alive, window=args.window, poll_s=POLL_S, timeout_s=args.timeout,
                dead_after_s=args.dead_after, retry_s=args.retry_dead)
    t0, code = time.monotonic(), 0
    try:
        pool.run()
    except AllServersGone as e:
        progress.close()
        log.error("%s", e)
        code = 3
    except KeyboardInterrupt:
        progress.close()
        log.error("interrupted: the finished samples are kept; run again to go on")
        code = 3
    progress.close()
    wall = (finished_at[-1] if finished_at else time.monotonic()) - t0
    this_run = [rows[n] for n in todo if n in rows]
    secs = [r["seconds"] for r in this_run if r["status"] == res.OK and r.get("seconds") is not None]
    info = {"queued": len(todo), "finished": len(this_run), "ok": sum(r["status"] == res.OK for r in this_run),
            "failed": sum(r["status"] == res.FAILED for r in this_run), "wall_s": round(wall, 3),
            "edits_per_s": round(len(this_run) / wall, 4) if wall > 0 else None,
            "seconds_median": statistics.median(secs) if secs else None, "servers": list(args.server)}
    log.info("this run: %d sample(s) in %.1f s over %d server(s): %s edits/s", len(this_run), wall,
             len(args.server), info["edits_per_s"])
    return code, info


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(bar=not args.no_progress)
    try:
        return run(args)
    except KeyboardInterrupt:
        log.error("interrupted")
        return 3


if __name__ == "__main__":
    sys.exit(main())
