"""A tiny client for ComfyUI's HTTP API (stdlib only): queue a prompt and wait for its history."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid


class PromptError(RuntimeError):
    """ComfyUI refused the prompt (validation) or its execution failed; ``body`` holds the reply."""

    def __init__(self, message, body):
        super().__init__(message)
        self.body = body


class ComfyClient:
    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.client_id = uuid.uuid4().hex

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=60) as r:
            data = r.read()
        return json.loads(data) if data else None

    def get_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=60) as r:
            return r.read()

    def post(self, path: str, payload):
        req = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                data = r.read()
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")
            raise PromptError(f"HTTP {e.code} from {path}: {body}", body) from None
        return json.loads(data) if data else None

    def queue(self, prompt: dict) -> str:
        return self.post("/prompt", {"prompt": prompt, "client_id": self.client_id})["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        """The history entry once the prompt finished; raises PromptError when execution failed."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                hist = self.get(f"/history/{prompt_id}")
            except (TimeoutError, urllib.error.URLError, ConnectionError):
                # a busy server (2 CPU cores, several jobs) can leave a poll unanswered; ask again
                time.sleep(1)
                continue
            if hist and prompt_id in hist:
                entry = hist[prompt_id]
                status = entry.get("status", {})
                if status.get("completed") or status.get("status_str") in ("success", "error"):
                    if status.get("status_str") == "error":
                        raise PromptError(execution_error(entry) or "execution failed", entry)
                    return entry
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")

    def run(self, prompt: dict, timeout: float = 600) -> dict:
        return self.wait(self.queue(prompt), timeout)


def execution_error(entry: dict) -> str | None:
    for name, data in entry.get("status", {}).get("messages", []):
        if name == "execution_error":
            return f"{data.get('node_type')}: {data.get('exception_message')}"
    return None


def cached_nodes(entry: dict) -> set:
    """Node ids ComfyUI served from its output cache for this prompt."""
    out = set()
    for name, data in entry.get("status", {}).get("messages", []):
        if name == "execution_cached":
            out.update(str(n) for n in data.get("nodes", []))
    return out
