"""Stop (interrupt) during the inversion and during the denoising.

Through a real server: the prompt is queued, the test waits on the websocket until the targeted
node has reported progress, then POSTs ``/interrupt``. After each Stop the next edit must give the
latent an edit with no Stop before it gave (bit for bit), and the user's MODEL must sample with
ComfyUI's plain KSampler exactly as before. In-process (no timing at all): the interrupt is raised
from inside the UNet call / the denoising loop, and the MODEL's patches and options are compared
before and after.
"""
from __future__ import annotations

import asyncio
import json
import queue
import threading

import pytest
import torch

from comfy_client import PromptError, cached_nodes
from graphs import CKPT, CLIP, DRAG, INV, SAVE, good_graph, load_saved_latent, write_inputs

pytestmark = pytest.mark.host

LONG_STEPS = 40               # 20 inversion + 20 denoising UNet calls: the Stop (after 3) lands inside a phase
KS, NEG, EMPTY = "20", "21", "22"


def ksampler_graph(seed: int, prefix: str) -> dict:
    """ComfyUI's own KSampler on the same (cached) checkpoint MODEL."""
    g = good_graph("unused.png", prefix=prefix)
    g = {k: g[k] for k in (CKPT, CLIP)}
    g[NEG] = {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": [CKPT, 1]}}
    g[EMPTY] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    g[KS] = {"class_type": "KSampler", "inputs": {
        "model": [CKPT, 0], "seed": seed, "steps": 3, "cfg": 4.0, "sampler_name": "euler", "scheduler": "normal",
        "positive": [CLIP, 0], "negative": [NEG, 0], "latent_image": [EMPTY, 0], "denoise": 1.0}}
    g[SAVE] = {"class_type": "SaveLatent", "inputs": {"samples": [KS, 0], "filename_prefix": prefix}}
    return g


class Events:
    """The server's websocket messages for one client id, collected on a background thread."""

    def __init__(self, url: str, client_id: str):
        self.q: queue.Queue = queue.Queue()
        self._ready = threading.Event()
        self._error = None
        self._url = url.replace("http://", "ws://") + f"/ws?clientId={client_id}"
        threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True).start()
        if not self._ready.wait(60):
            raise RuntimeError(f"websocket did not connect: {self._error}")

    async def _run(self):
        import aiohttp
        try:
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(self._url, max_msg_size=0) as ws:
                    self._ready.set()
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            self.q.put(json.loads(msg.data))
        except Exception as e:  # noqa: BLE001  (reported by the waiting test)
            self._error = e
            self._ready.set()

    def wait_progress(self, prompt_id: str, node: str, at_least: int, timeout: float = 900):
        """Block until ``node`` of ``prompt_id`` reports progress ``value >= at_least``."""
        while True:
            msg = self.q.get(timeout=timeout)
            data = msg.get("data") or {}
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            if msg.get("type") == "progress" and str(data.get("node")) == node and data["value"] >= at_least:
                return data
            if msg.get("type") in ("execution_error", "execution_success", "execution_interrupted"):
                raise AssertionError(f"the prompt ended before {node} reached step {at_least}: {msg}")


def _wait_interrupted(client, prompt_id):
    try:
        entry = client.wait(prompt_id, timeout=900)
    except PromptError as e:
        entry = e.body
    kinds = [name for name, _ in entry.get("status", {}).get("messages", [])]
    return "execution_interrupted" in kinds, kinds


@pytest.mark.compat
def test_stop_during_inversion_and_denoising_through_the_server(comfy_server):
    server, client = comfy_server, comfy_server.client
    ctx = write_inputs(server)
    info = client.get("/object_info/DDPMInvertAndCache")["DDPMInvertAndCache"]["input"]
    one_level = "inversion_batch" in {**info.get("required", {}), **info.get("optional", {})}

    ks_seeds = (5, 6)
    ref_ks = {s: load_saved_latent(server, client.run(ksampler_graph(s, f"stop/ks_ref{s}"), timeout=900))
              for s in ks_seeds}
    ref_edit = load_saved_latent(server, client.run(good_graph(ctx["image"], prefix="stop/ref"), timeout=900))

    events = Events(server.url, client.client_id)
    for k, (phase, node) in enumerate((("inversion", INV), ("denoising", DRAG))):
        g = good_graph(ctx["image"], prefix=f"stop/long_{phase}")
        g[INV]["inputs"]["steps"] = LONG_STEPS
        if one_level:
            g[INV]["inputs"]["inversion_batch"] = 1     # one progress step per inversion level
        pid = client.queue(g)
        events.wait_progress(pid, node, 3)
        client.post("/interrupt", {})
        interrupted, kinds = _wait_interrupted(client, pid)
        assert interrupted, f"Stop during the {phase} did not interrupt the prompt: {kinds}"

        entry = client.run(good_graph(ctx["image"], prefix=f"stop/after_{phase}"), timeout=900)
        assert INV not in cached_nodes(entry) and DRAG not in cached_nodes(entry)
        assert load_saved_latent(server, entry) == ref_edit, f"the edit after a Stop during the {phase} differs"

        seed = ks_seeds[k % 2]
        entry = client.run(ksampler_graph(seed, f"stop/ks_after_{phase}"), timeout=900)
        assert KS not in cached_nodes(entry)
        assert load_saved_latent(server, entry) == ref_ks[seed], \
            f"the plain KSampler on the user's MODEL changed after a Stop during the {phase}"


# ------------------------------------------------------------------------------ in-process


def _model_state(model):
    """Everything through which a patch could stay on a ModelPatcher (function reprs include ids)."""
    opts = model.model_options
    return (repr(sorted(opts.keys())), repr(opts.get("transformer_options", {})),
            repr({k: v for k, v in opts.items() if k != "transformer_options"}),
            sorted(model.patches.keys()), repr(model.object_patches),
            repr(getattr(model, "wrappers", None)), repr(getattr(model, "callbacks", None)),
            repr(getattr(model, "attachments", None)))


@pytest.mark.parametrize("phase", ["inversion", "denoising"])
def test_stop_in_process_leaves_no_patch_and_same_sampling(comfyui, sd15, phase):
    import comfy.model_management
    import comfy.samplers  # noqa: F401
    sn = comfyui.pack.nodes.sampling_nodes
    core = comfyui.core
    model, clip, _ = sd15
    positive = comfyui.nodes.CLIPTextEncode().encode(clip, "a landscape")[0]
    negative = comfyui.nodes.CLIPTextEncode().encode(clip, "")[0]
    lat = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))}
    empty = {"samples": torch.zeros(1, 4, 8, 8)}

    def ksample():
        return comfyui.nodes.common_ksampler(model, 5, 2, 4.0, "euler", "normal", positive, negative, empty,
                                             denoise=1.0)[0]["samples"]

    m = torch.zeros(64, 64, dtype=torch.bool)
    m[8:24, 8:24] = True
    t = torch.roll(m, (24, 24), (0, 1))
    dmap = core.mapping.build_drag_map([core.masks.RegionPair(handle=m.numpy(), target=t.numpy())], (64, 64), (8, 8))
    ref_edit = sn.run_drag(model, sn.run_inversion(model, positive, lat, 10, 0.5, 1), dmap, positive, 0.2, 1.0, 2)[0]
    ref_ks = ksample()
    before = _model_state(model)

    if phase == "inversion":
        calls = {"n": 0}

        def stop_on_third_call(apply_model, args):
            calls["n"] += 1
            if calls["n"] == 3:
                raise comfy.model_management.InterruptProcessingException()
            return apply_model(args["input"], args["timestep"], **args["c"])

        wrapped = model.clone()
        wrapped.set_model_unet_function_wrapper(stop_on_third_call)
        wrapped_before = _model_state(wrapped)
        import inspect
        one_level = {"inversion_batch": 1} if "inversion_batch" in inspect.signature(sn.run_inversion).parameters \
            else {}
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            sn.run_inversion(wrapped, positive, lat, 40, 0.5, 1, **one_level)
        assert calls["n"] == 3
        assert _model_state(wrapped) == wrapped_before
    else:
        inv = sn.run_inversion(model, positive, lat, 40, 0.5, 1)

        def stop_at(level, *args, **kwargs):
            if level <= inv.levels - 2:
                raise comfy.model_management.InterruptProcessingException()

        with pytest.raises(comfy.model_management.InterruptProcessingException):
            sn.run_drag(model, inv, dmap, positive, 0.2, 1.0, 2, on_level=stop_at)

    assert _model_state(model) == before, "a patch or option stayed on the user's MODEL after the Stop"
    assert torch.equal(ksample(), ref_ks)
    again = sn.run_drag(model, sn.run_inversion(model, positive, lat, 10, 0.5, 1), dmap, positive, 0.2, 1.0, 2)[0]
    assert torch.equal(again, ref_edit)
