"""scripts/dragbench.py's checks of its servers before queueing, its progress bar and its logging."""
from __future__ import annotations

import http.client
import json
import logging
import sys
import time
import urllib.parse
import urllib.request

log = logging.getLogger("RegionDrag.dragbench")


class ServerSetupError(RuntimeError):
    """A server answers but cannot run the graph (the pack or a checkpoint missing): nothing is queued."""


def _get_json(url: str, timeout: float):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def combo_options(spec) -> list:
    """A combo input's options from /object_info: ``[[...], {...}]`` (classic) or ``["COMBO", {"options": [...]}]``."""
    if isinstance(spec, (list, tuple)) and spec:
        if isinstance(spec[0], list):
            return list(spec[0])
        if len(spec) > 1 and isinstance(spec[1], dict):
            return list(spec[1].get("options") or [])
    return []


def check_servers(urls, settings: dict, nodes, timeout: float = 10) -> dict:
    """{url: answers} for every server. One that answers must have the pack's ``nodes`` and the
    checkpoints ``settings`` names, else :class:`ServerSetupError` says what is missing where. One that does
    not answer is logged; the run may still use it when it comes up (``--retry-dead``)."""
    alive, problems = {}, []
    for url in urls:
        base = url.rstrip("/")
        try:
            info = _get_json(base + "/object_info/CheckpointLoaderSimple", timeout)
            ckpts = combo_options(info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"])
            missing = [n for n in nodes if not _get_json(f"{base}/object_info/{urllib.parse.quote(n)}", timeout)]
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as e:
            log.warning("server %s does not answer as ComfyUI (%s): it gets samples only if it comes up later",
                        url, getattr(e, "reason", e))
            alive[url] = False
            continue
        alive[url] = True
        if missing:
            problems.append(f"server {url} has no {', '.join(missing)} node: install or update ComfyUI-RegionDrag "
                            "there and restart it.")
        for key in ("ckpt", "dift_ckpt"):
            name = settings.get(key)
            if name and name not in ckpts:
                shown = ", ".join(ckpts[:8]) + (", ..." if len(ckpts) > 8 else "") or "none"
                problems.append(f"server {url} lists no checkpoint {name!r} (--{key.replace('_', '-')}); put it in "
                                f"its models/checkpoints (it lists: {shown}).")
    if problems:
        raise ServerSetupError("\n".join(problems))
    return alive


# ----------------------------------------------------------------------------- progress and logging
def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class _TqdmHandler(logging.Handler):
    """Log lines printed above the progress bar instead of through it."""

    def emit(self, record):
        try:
            _tqdm().write(self.format(record), file=sys.stderr)
        except (OSError, ValueError, RecursionError):   # a logging call never raises (logging's convention)
            self.handleError(record)


def setup_logging(bar: bool = True) -> None:
    """INFO lines on stderr ("message" only), through tqdm when there is a bar to keep intact."""
    handler = _TqdmHandler() if bar and _tqdm() is not None and sys.stderr.isatty() else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


class Progress:
    """A tqdm bar (done / total, edits/s, ok, failed, bad (not queued), servers answering) on a terminal; elsewhere, or without
    tqdm, a log line at most every ``every_s`` seconds and at the end."""

    def __init__(self, total: int, bar: bool = True, every_s: float = 10.0, bad: int = 0):
        self.total, self.every_s, self.bad = total, every_s, bad
        self.ok = self.failed = self.done = 0
        self.alive = self.n_servers = 0
        self.t0 = self.last_log = time.monotonic()
        tqdm = _tqdm() if bar and sys.stderr.isatty() else None
        self.bar = tqdm(total=total, unit="edit", dynamic_ncols=True, smoothing=0.1) if tqdm else None

    def _postfix(self) -> str:
        return f"ok {self.ok}, failed {self.failed}, bad {self.bad}, servers {self.alive}/{self.n_servers}"

    def row(self, row: dict) -> None:
        self.done += 1
        self.ok += row.get("status") == "ok"
        self.failed += row.get("status") == "failed"
        if self.bar is not None:
            self.bar.set_postfix_str(self._postfix(), refresh=False)
            self.bar.update(1)
            return
        now = time.monotonic()
        if now - self.last_log >= self.every_s or self.done == self.total:
            self.last_log = now
            rate = self.done / max(now - self.t0, 1e-9)
            log.info("%d/%d samples, %s, %.3f edits/s", self.done, self.total, self._postfix(), rate)

    def servers(self, alive: int, total: int) -> None:
        self.alive, self.n_servers = alive, total
        if self.bar is not None:
            self.bar.set_postfix_str(self._postfix())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
