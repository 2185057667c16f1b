"""Keep several ComfyUI servers fed with prompts, one per sample, through each server's own /prompt queue.

One thread per server keeps up to ``window`` of its prompts queued there (so ComfyUI's queue never runs
dry while a finished result is being fetched), polls ``/history/<id>`` for them and downloads the saved
images through ``/view``. The main thread (:meth:`Pool.run`) takes the finished samples in order of
arrival and hands them to ``on_row`` (which writes them) exactly once: a sample finished twice (queued
again after its server looked dead, then finished there after all) counts once.

What a server's failure costs:

* refused or reset connection, HTTP 5xx, a reply that is not HTTP, or no answer for ``dead_after_s``
  seconds: the server is *gone*; its queued samples go back to the front of the pending pool, and the
  other servers take them. Every ``retry_s`` seconds it is asked again (``/system_stats``); when it
  answers, the prompts it was given before are deleted from its queue and it is fed again.
* a prompt that vanished from a live server (in neither its queue nor its history twice in a row,
  e.g. the server restarted between two polls): queued again.
* a prompt ComfyUI refuses (HTTP 400: validation, ``node_errors``) or whose execution fails: the
  sample's own failure, a "failed" row with ComfyUI's message; not retried in this run.
* no result ``timeout_s`` seconds after queueing: a "failed" row; the prompt is deleted from the queue.
* a sample that was running on two servers as each went away (one that crashes its server) is a
  "failed" row, so it cannot take every server down in turn.

When every server has been gone for ``retry_s`` + 10 seconds (at once when ``retry_s`` is 0) the run stops
with :class:`AllServersGone`; the rows written so far stay. Stdlib only.
"""
from __future__ import annotations

import collections
import http.client
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field

from comfy_client import PromptError
from dragbench_results import FAILED, OK
from run_edit import describe_error

log = logging.getLogger("RegionDrag.dragbench")

QUEUE_CHECK_S = 5.0      # how often in-flight prompts missing from the history are looked up in /queue
MAX_LOSSES = 2           # servers a sample may take down with it before it counts as failed


class ServerGone(Exception):
    """The server stopped answering (its samples go to the others)."""


class AllServersGone(RuntimeError):
    """No server answers any more: the run stops; the rows written so far stay."""


class _Silent(Exception):
    """A request timed out, but the server has not been silent for ``dead_after_s`` yet: ask again later."""


class _Refused(Exception):
    """HTTP 4xx: ComfyUI answered and refused the request; ``body`` is its reply."""

    def __init__(self, code: int, body: str):
        super().__init__(f"HTTP {code}")
        self.body = body


@dataclass
class Flight:
    """A prompt queued on a server for one sample."""
    name: str
    prompt_id: str
    queued_at: float
    missing: int = 0


@dataclass
class Finished:
    """A sample's row and the image bytes that go with it (``{"edited": b"...", "comparison": b"..."}``)."""
    row: dict
    images: dict = field(default_factory=dict)


def _is_timeout(e: BaseException) -> bool:
    return isinstance(e, TimeoutError) or isinstance(getattr(e, "reason", None), TimeoutError)


def execution_message(entry: dict) -> str | None:
    """ComfyUI's error for a prompt that failed while running ("Node (node id): message"), else None."""
    status = entry.get("status") or {}
    for name, data in status.get("messages") or []:
        if name == "execution_error":
            return f"{data.get('node_type')} (node {data.get('node_id')}): {data.get('exception_message', '').strip()}"
        if name == "execution_interrupted":
            return f"interrupted at {data.get('node_type')} (node {data.get('node_id')})"
    if status.get("status_str") == "error":
        return "ComfyUI reports the prompt failed (no message)"
    return None


def execution_seconds(entry: dict) -> float | None:
    """Seconds from ComfyUI's execution_start to its execution_success/error message, where it gives them."""
    stamps = {}
    for name, data in (entry.get("status") or {}).get("messages") or []:
        if isinstance(data, dict) and isinstance(data.get("timestamp"), (int, float)):
            stamps[name] = data["timestamp"]
    end = stamps.get("execution_success", stamps.get("execution_error"))
    if "execution_start" in stamps and end is not None and end >= stamps["execution_start"]:
        return (end - stamps["execution_start"]) / 1000.0
    return None


class ServerWorker(threading.Thread):
    """Feeds one server: keeps ``window`` prompts queued, polls their history, reports finished samples."""

    def __init__(self, pool: "Pool", url: str, alive: bool = True):
        super().__init__(name=f"dragbench {url}", daemon=True)
        self.pool, self.url = pool, url.rstrip("/")
        self.alive = alive
        self.flights: dict[str, Flight] = {}
        self.abandoned: list[str] = []
        self.client_id = uuid.uuid4().hex
        now = time.monotonic()
        self.last_answer = self.last_probe = self.last_queue_check = now
        self.last_done = 0.0

    # -------------------------------------------------------------- HTTP
    def _request(self, path: str, payload=None, timeout: float | None = None):
        """The reply's bytes; raises _Refused (4xx), _Silent (a timeout, not yet for long) or ServerGone."""
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.pool.request_timeout_s) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            self.last_answer = time.monotonic()
            text = e.read().decode(errors="replace")
            if 400 <= e.code < 500:
                raise _Refused(e.code, text) from None
            raise ServerGone(f"HTTP {e.code} from {path}: {text[:300]}") from None
        except (OSError, http.client.HTTPException) as e:
            if _is_timeout(e) and time.monotonic() - self.last_answer < self.pool.dead_after_s:
                raise _Silent(str(e)) from None
            raise ServerGone(f"{type(e).__name__}: {getattr(e, 'reason', e)}") from None
        self.last_answer = time.monotonic()
        return body

    def _json(self, path: str, payload=None):
        body = self._request(path, payload)
        try:
            return json.loads(body) if body else None
        except ValueError:
            raise ServerGone(f"{path} answered something that is not JSON: {body[:200]!r}") from None

    # -------------------------------------------------------------- the loop
    def run(self):
        while not self.pool.stopping.is_set():
            if self.alive:
                try:
                    self._feed()
                    self._poll()
                except ServerGone as e:
                    self._gone(str(e))
            else:
                self._probe()
            self.pool.stopping.wait(self.pool.poll_s)
        self._forget_flights()

    def _feed(self):
        while len(self.flights) < self.pool.window and not self.pool.stopping.is_set():
            name = self.pool.take()
            if name is None:
                return
            try:
                reply = self._json("/prompt", {"prompt": self.pool.build(name), "client_id": self.client_id})
            except _Refused as e:
                message = describe_error(PromptError(str(e), e.body))
                self.pool.finish(self, Finished(self.pool.row(name, FAILED, self.url, message=message)))
                continue
            except _Silent:
                self.pool.give_back([name])   # it may be queued after all: a second result is dropped
                return
            except ServerGone:
                self.pool.give_back([name])
                raise
            pid = (reply or {}).get("prompt_id")
            if not pid:
                self.pool.give_back([name])
                raise ServerGone(f"/prompt answered without a prompt_id: {str(reply)[:200]}")
            self.flights[pid] = Flight(name, pid, time.monotonic())

    def _poll(self):
        for pid, fl in list(self.flights.items()):
            try:
                hist = self._json(f"/history/{urllib.parse.quote(pid)}")
            except (_Silent, _Refused):
                return
            entry = hist.get(pid) if isinstance(hist, dict) else None
            if entry is None:
                if time.monotonic() - fl.queued_at > self.pool.timeout_s:
                    del self.flights[pid]
                    self._delete_queued([pid])
                    self.pool.finish(self, Finished(self.pool.row(
                        fl.name, FAILED, self.url, message=f"no result after {self.pool.timeout_s:.0f} s (--timeout)")))
                continue
            done = self._finished(fl, entry)   # may raise ServerGone while downloading: the flight stays, and goes back
            del self.flights[pid]
            self.last_done = time.monotonic()
            self.pool.finish(self, done)
        if self.flights and time.monotonic() - self.last_queue_check >= QUEUE_CHECK_S:
            self._check_lost()

    def _finished(self, fl: Flight, entry: dict) -> Finished:
        seconds = execution_seconds(entry)
        if seconds is None:   # older ComfyUI: from the later of its queueing and the previous result here
            seconds = time.monotonic() - max(fl.queued_at, self.last_done)
        kw = dict(seconds=round(seconds, 3), prompt_id=fl.prompt_id)
        message = execution_message(entry)
        if message:
            return Finished(self.pool.row(fl.name, FAILED, self.url, message=message, **kw))
        outputs = entry.get("outputs") or {}
        saved = (outputs.get(self.pool.save_node) or {}).get("images") or []
        if not saved:
            return Finished(self.pool.row(fl.name, FAILED, self.url, message="ComfyUI's history holds no saved "
                                          f"image (node {self.pool.save_node})", **kw))
        images = {"edited": self._view(saved[0])}
        score = (outputs.get(self.pool.score_node) or {}) if self.pool.score_node else {}
        values = (score.get("regiondrag_score") or [{}])[0]
        if score.get("images"):
            images["comparison"] = self._view(score["images"][0])
        row = self.pool.row(fl.name, OK, self.url, md=values.get("md"), lpips=values.get("lpips"), **kw)
        return Finished(row, images)

    def _view(self, img: dict) -> bytes:
        q = urllib.parse.urlencode({"filename": img.get("filename", ""), "subfolder": img.get("subfolder", ""),
                                    "type": img.get("type", "output")})
        for _ in range(3):
            try:
                return self._request(f"/view?{q}")
            except _Silent:
                continue
            except _Refused as e:
                raise ServerGone(f"/view refused {img.get('filename')}: {e.body[:200]}") from None
        raise ServerGone(f"/view of {img.get('filename')} timed out")

    def _check_lost(self):
        self.last_queue_check = time.monotonic()
        try:
            q = self._json("/queue") or {}
        except (_Silent, _Refused):
            return
        queued = {item[1] for key in ("queue_running", "queue_pending") for item in q.get(key) or []
                  if isinstance(item, list) and len(item) > 1}
        for pid, fl in list(self.flights.items()):
            fl.missing = 0 if pid in queued else fl.missing + 1
            if fl.missing >= 2:
                log.warning("server %s: the prompt for %s is in neither its queue nor its history (restarted?); "
                            "queued again", self.url, fl.name)
                del self.flights[pid]
                self.pool.give_back([fl.name])

    def _delete_queued(self, pids):
        """Best effort: drop our prompts still waiting in the server's queue (not the one running)."""
        if not pids:
            return
        try:
            self._request("/queue", {"delete": list(pids)}, timeout=5)
        except (_Silent, _Refused, ServerGone):
            pass

    def _gone(self, reason: str):
        names = [fl.name for fl in self.flights.values()]   # oldest first: the first was likely running
        self.abandoned += list(self.flights)
        self.flights.clear()
        self.alive = False
        self.last_probe = time.monotonic()
        self.pool.server_gone(self, reason, names)

    def _probe(self):
        if self.pool.retry_s <= 0 or time.monotonic() - self.last_probe < self.pool.retry_s:
            return
        self.last_probe = time.monotonic()
        try:
            self._request("/system_stats", timeout=5)
        except (_Silent, _Refused, ServerGone):
            return
        self._delete_queued(self.abandoned)
        self.abandoned = []
        self.alive = True
        self.pool.server_back(self)

    def _forget_flights(self):
        if self.alive and self.flights:   # stopped early (Ctrl-C, or the other servers gone): leave no work queued
            self._delete_queued(list(self.flights))
            self.pool.give_back([fl.name for fl in self.flights.values()])
            self.flights.clear()


class Pool:
    """Runs ``names`` over ``urls``: ``build(name)`` gives a sample's API prompt, ``row(...)`` a result row,
    ``on_finished(Finished)`` (main thread) writes it; ``on_servers(alive, total)`` hears of server changes."""

    def __init__(self, urls, names, build, row, on_finished, *, save_node: str, score_node: str | None = None,
                 on_servers=None, alive=None, window: int = 2, poll_s: float = 0.25, timeout_s: float = 3600,
                 dead_after_s: float = 300, retry_s: float = 60, request_timeout_s: float = 30):
        self.build, self.row, self.on_finished, self.on_servers = build, row, on_finished, on_servers
        self.save_node, self.score_node = save_node, score_node
        self.window, self.poll_s, self.timeout_s = max(1, int(window)), poll_s, timeout_s
        self.dead_after_s, self.retry_s, self.request_timeout_s = dead_after_s, retry_s, request_timeout_s
        self.names = list(names)
        self.pending = collections.deque(self.names)
        self.done: set = set()
        self.losses: dict = {}   # sample -> servers that went away while it was (likely) running there
        self.lock = threading.Lock()
        self.events: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        alive = alive or {}
        self.workers = [ServerWorker(self, u, alive.get(u, True)) for u in urls]

    # -------------------------------------------------------------- called by the workers
    def take(self) -> str | None:
        with self.lock:
            while self.pending:
                name = self.pending.popleft()
                if name not in self.done:
                    return name
        return None

    def give_back(self, names) -> None:
        with self.lock:
            for name in reversed(list(names)):
                if name not in self.done and name not in self.pending:
                    self.pending.appendleft(name)

    def finish(self, worker: ServerWorker, done: Finished) -> None:
        name = done.row["name"]
        with self.lock:
            if name in self.done:
                log.debug("%s finished again on %s: dropped (its first result counts)", name, worker.url)
                return
            self.done.add(name)
        self.events.put(done)

    def server_gone(self, worker: ServerWorker, reason: str, names) -> None:
        names = list(names)
        if names:   # a sample that was running on each of MAX_LOSSES servers as they went away fails
            self.losses[names[0]] = self.losses.get(names[0], 0) + 1
            if self.losses[names[0]] >= MAX_LOSSES:
                first = names.pop(0)
                self.finish(worker, Finished(self.row(
                    first, FAILED, worker.url, message=f"{MAX_LOSSES} servers went away while running it "
                    f"(the last: {reason}); not retried in this run")))
        self.give_back(names)
        alive = sum(w.alive for w in self.workers)
        log.warning("server %s gone (%s): %d queued sample(s) go to the %d other server(s) still answering",
                    worker.url, reason, len(names), alive)
        if self.on_servers:
            self.on_servers(alive, len(self.workers))

    def server_back(self, worker: ServerWorker) -> None:
        log.info("server %s answers again: feeding it", worker.url)
        if self.on_servers:
            self.on_servers(sum(w.alive for w in self.workers), len(self.workers))

    # -------------------------------------------------------------- the main thread
    def run(self) -> None:
        """Until every sample has a row; raises AllServersGone when no server answers (rows so far kept)."""
        all_gone_since = None
        for w in self.workers:
            w.start()
        try:
            while True:
                try:
                    self.on_finished(self.events.get(timeout=0.2))
                    continue
                except queue.Empty:
                    pass
                with self.lock:
                    if len(self.done) == len(self.names):
                        return
                if any(w.alive for w in self.workers):
                    all_gone_since = None
                    continue
                all_gone_since = all_gone_since or time.monotonic()
                patience = self.retry_s + 10 if self.retry_s > 0 else 0   # time for each server's next probe
                if time.monotonic() - all_gone_since >= patience:
                    with self.lock:
                        left = len(self.names) - len(self.done)
                    raise AllServersGone(f"no server answers any more ({', '.join(w.url for w in self.workers)}); "
                                         f"{left} sample(s) not done. Start a server and run the command again: "
                                         "finished samples are kept and skipped.")
        finally:
            self.stopping.set()
            for w in self.workers:
                w.join(timeout=self.request_timeout_s + 5)
            while not self.events.empty():   # finished while stopping: keep them
                self.on_finished(self.events.get_nowait())
