"""The results of a DragBench run (scripts/dragbench.py), kept in its ``--out`` folder.

    OUT/settings.json            the edit and score settings the rows were made with
    OUT/samples/<name>.json      one row per finished sample, written atomically: resume reads these
    OUT/images/<name>.png        the edited image (and <name>_comparison.png when scored)
    OUT/results.json, .csv       every row, sorted by name
    OUT/summary.json             counts, means (overall and per category), seconds, throughput
    OUT/contact_sheet.png        a thumbnail per sample with its name (failed and bad ones as labelled tiles)

``<name>`` is the sample's path inside the dataset (SR: ``<id>``, DR: ``<category>/<id>``). A row is
complete when its status is "ok" (and its image is there) or "bad" (the sample's files are broken: it
is never queued); "failed" rows are retried by the next run. Stdlib and Pillow only.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from pathlib import Path

OK, FAILED, BAD = "ok", "failed", "bad"
COMPLETE = (OK, BAD)
CSV_FIELDS = ("name", "category", "status", "md", "lpips", "seconds", "server", "message")


# ----------------------------------------------------------------------------- files
def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, value) -> None:
    write_atomic(path, (json.dumps(value, indent=1, sort_keys=True, allow_nan=False) + "\n").encode())


def row_path(out, name: str) -> Path:
    return Path(out) / "samples" / f"{name}.json"


def image_path(out, name: str, kind: str = "edited") -> Path:
    return Path(out) / "images" / (f"{name}.png" if kind == "edited" else f"{name}_{kind}.png")


def write_row(out, row: dict) -> None:
    write_json(row_path(out, row["name"]), row)


def read_row(out, name: str) -> dict | None:
    """The sample's row, or None when there is none (or it cannot be read: then the sample runs again)."""
    try:
        row = json.loads(row_path(out, name).read_text())
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) and row.get("name") == name else None


def is_complete(out, row: dict | None) -> bool:
    """An "ok" row whose edited image is on disk, or a "bad" row."""
    if not row or row.get("status") not in COMPLETE:
        return False
    return row["status"] == BAD or image_path(out, row["name"]).is_file()


def load_rows(out, names) -> dict:
    """{name: row} of the samples that have a row in ``out`` (complete or not)."""
    rows = {}
    for name in names:
        row = read_row(out, name)
        if row is not None:
            rows[name] = row
    return rows


def settings_problem(out, settings: dict) -> str | None:
    """Why ``out`` cannot take rows made with ``settings`` (it holds rows made with others), or None."""
    try:
        old = json.loads((Path(out) / "settings.json").read_text())
    except (OSError, ValueError):
        return None
    diff = [f"{k} {settings.get(k)!r} here, {old.get(k)!r} there" for k in sorted(set(old) | set(settings))
            if old.get(k) != settings.get(k)]
    if not diff:
        return None
    return (f"{out} holds results made with other settings ({'; '.join(diff)}). Use another --out, or --force "
            "to redo every sample with these settings.")


# ----------------------------------------------------------------------------- tables and summary
def _finite(v):
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _means(rows) -> dict:
    ok = [r for r in rows if r.get("status") == OK]
    out = {"samples": len(rows), OK: len(ok), FAILED: sum(r.get("status") == FAILED for r in rows),
           BAD: sum(r.get("status") == BAD for r in rows)}
    for key in ("md", "lpips"):
        vals = [r[key] for r in ok if _finite(r.get(key))]
        out[key] = statistics.fmean(vals) if vals else None
        out[f"{key}_x100"] = round(100 * out[key], 2) if vals else None
        out[f"{key}_scored"] = len(vals)
    secs = [r["seconds"] for r in ok if _finite(r.get("seconds"))]
    out["seconds_mean"] = statistics.fmean(secs) if secs else None
    out["seconds_median"] = statistics.median(secs) if secs else None
    return out


def summarize(rows, names, run: dict | None = None) -> dict:
    """Counts and means over the rows (MD and LPIPS over "ok" rows that were scored), per category when the
    dataset has categories (DR), per server, and ``run`` (this run's throughput) as given."""
    rows = list(rows)
    summary = _means(rows)
    summary["samples"] = len(names)
    summary["missing"] = len(names) - len(rows)
    cats = sorted({r["category"] for r in rows if r.get("category")})
    if cats:
        summary["categories"] = {c: _means([r for r in rows if r.get("category") == c]) for c in cats}
    servers = {}
    for r in rows:
        if r.get("status") in (OK, FAILED) and r.get("server"):
            s = servers.setdefault(r["server"], {OK: 0, FAILED: 0})
            s[r["status"]] += 1
    summary["servers"] = servers
    if run is not None:
        summary["run"] = run
    return summary


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def write_tables(out, rows, summary: dict) -> None:
    """results.json, results.csv and summary.json (rows sorted by name)."""
    rows = sorted(rows, key=lambda r: r["name"])
    write_json(Path(out) / "results.json", rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for r in rows:
        w.writerow([_cell(r.get(k)) for k in CSV_FIELDS])
    write_atomic(Path(out) / "results.csv", buf.getvalue().encode())
    write_json(Path(out) / "summary.json", summary)


# ----------------------------------------------------------------------------- contact sheet
TILE_COLOURS = {FAILED: (120, 30, 30), BAD: (60, 60, 60)}


def contact_sheet(out, rows, path=None, thumb: int = 160, columns: int = 0) -> Path | None:
    """A grid of thumbnails, one per row (the comparison image when the sample was scored, else the edited
    image; failed and bad samples as coloured tiles with their status), each captioned with its name."""
    from PIL import Image, ImageDraw
    rows = sorted(rows, key=lambda r: r["name"])
    if not rows:
        return None
    columns = columns or max(1, min(10, math.ceil(math.sqrt(len(rows)))))
    label = 14
    sheet = Image.new("RGB", (columns * thumb, math.ceil(len(rows) / columns) * (thumb + label)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, r in enumerate(rows):
        x, y = (i % columns) * thumb, (i // columns) * (thumb + label)
        tile = None
        if r.get("status") == OK:
            for kind in ("comparison", "edited"):
                p = image_path(out, r["name"], kind)
                if p.is_file():
                    try:
                        with Image.open(p) as im:
                            tile = im.convert("RGB")
                    except OSError:
                        continue
                    break
        if tile is None:
            tile = Image.new("RGB", (thumb, thumb), TILE_COLOURS.get(r.get("status"), (200, 200, 200)))
            ImageDraw.Draw(tile).text((6, thumb // 2 - 6), str(r.get("status", "?")), fill=(255, 255, 255))
        scale = thumb / max(tile.size)   # fit the tile; small images (tests) are enlarged, pixels kept sharp
        tile = tile.resize((max(1, round(tile.width * scale)), max(1, round(tile.height * scale))),
                           Image.LANCZOS if scale < 1 else Image.NEAREST)
        sheet.paste(tile, (x + (thumb - tile.width) // 2, y + (thumb - tile.height) // 2))
        draw.text((x + 2, y + thumb + 1), _fit(draw, r["name"], thumb - 4), fill=(0, 0, 0))
    path = Path(path or Path(out) / "contact_sheet.png")
    buf = io.BytesIO()
    sheet.save(buf, "PNG")
    write_atomic(path, buf.getvalue())
    return path


def _fit(draw, text: str, width: int) -> str:
    """``text`` in ASCII (any font draws it), shortened from the left ("..." + its end) to fit ``width`` px."""
    text = text.encode("ascii", "replace").decode()
    if draw.textlength(text) <= width:
        return text
    while len(text) > 1 and draw.textlength("..." + text) > width:
        text = text[1:]
    return "..." + text
