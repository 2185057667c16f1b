"""Test tiers: pure tests (no ComfyUI) and host tests (``@pytest.mark.host``) that run inside a real
ComfyUI found as a user's install is: this pack inside ``ComfyUI/custom_nodes/``, or ``COMFYUI_PATH``.
Host tests skip, with the reason printed, where no ComfyUI is found.

``REGIONDRAG_REQUIRE_HOST=1`` (set by ``.ci/run`` inside each host) makes the run fail when no ComfyUI
is found, when no host test ran, or when any test skipped for a reason that is not declared here
(``DECLARED_SKIPS``: GPU-only tests on a CPU machine, soaks that are run by hand)."""
from __future__ import annotations

import os
import sys

import pytest

from support import COMFYUI, REPO, cache_dir as _cache_dir, sd15_prompt_and_latent, start_server

NO_HOST_REASON = ("ComfyUI not found: install this pack into ComfyUI/custom_nodes/ or set COMFYUI_PATH "
                  "to a ComfyUI folder (with its requirements installed) to run the host tests")
REQUIRE_HOST = os.environ.get("REGIONDRAG_REQUIRE_HOST", "") not in ("", "0")
# Skip reasons that may appear in a strict (CI) run. Everything else is a defect of the run.
NEEDS_CUDA = "needs CUDA"
SOAK = "soak:"
DECLARED_SKIPS = (NEEDS_CUDA, SOAK)

_skips: list = []      # (nodeid, reason) of every skipped test
_host_ran = [0]        # host tests whose body ran (passed or failed)


def pytest_configure(config):
    if REQUIRE_HOST and COMFYUI is None:
        raise pytest.UsageError("REGIONDRAG_REQUIRE_HOST is set but " + NO_HOST_REASON)


def pytest_collection_modifyitems(config, items):
    # memory_heavy tests go first, before any other test loads a model into this process or starts the
    # session's ComfyUI server: on a 24 GB machine a second full-size SDXL does not fit beside those.
    items.sort(key=lambda item: 0 if "memory_heavy" in item.keywords else 1)   # stable: order kept otherwise
    for item in items:
        if "gpu" in item.keywords:
            import torch
            if not torch.cuda.is_available():
                item.add_marker(pytest.mark.skip(reason=f"{NEEDS_CUDA}: GPU-only test on a machine without CUDA"))
        if "soak" in item.keywords and os.environ.get("REGIONDRAG_SOAK", "") in ("", "0"):
            item.add_marker(pytest.mark.skip(reason=f"{SOAK} long-running, run by hand with REGIONDRAG_SOAK=1"))
        if COMFYUI is None and "host" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=NO_HOST_REASON))


def _skip_reason(rep) -> str:
    lr = rep.longrepr
    text = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
    return text[len("Skipped: "):] if text.startswith("Skipped: ") else text


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _skips.append((report.nodeid, _skip_reason(report)))
    elif report.when == "call" and "host" in report.keywords:
        _host_ran[0] += 1


def _strict_problems() -> list:
    problems = [f"skipped for an undeclared reason: {nodeid}: {reason}"
                for nodeid, reason in _skips if not reason.startswith(DECLARED_SKIPS)]
    if _host_ran[0] == 0:
        problems.append(f"no host test ran inside ComfyUI at {COMFYUI}")
    return problems


def pytest_sessionfinish(session, exitstatus):
    if REQUIRE_HOST and exitstatus in (0, 5) and _strict_problems():
        session.exitstatus = 1


def pytest_report_header(config):
    return f"ComfyUI host: {COMFYUI or 'none (' + NO_HOST_REASON + ')'}"


def _host_version() -> str:
    try:
        with open(os.path.join(COMFYUI, "comfyui_version.py")) as f:
            return f.read().split('"')[1]
    except (OSError, IndexError):
        return "unknown"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    counts = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for rep in terminalreporter.stats.get(outcome, []):
            if "host" in getattr(rep, "keywords", {}) and rep.when in ("call", "setup"):
                if outcome == "skipped" or rep.when == "call" or outcome in ("failed", "error"):
                    counts[outcome] = counts.get(outcome, 0) + 1
    if COMFYUI is None:
        terminalreporter.write_line(
            f"RegionDrag host tests: none ran, {counts.get('skipped', 0)} skipped - no ComfyUI found "
            "(install the pack into ComfyUI/custom_nodes/, set COMFYUI_PATH, or run .ci/run)")
    else:
        terminalreporter.write_line(
            "RegionDrag host tests: ran {} (passed {}, failed {}), skipped {} - ComfyUI {} at {}".format(
                counts.get("passed", 0) + counts.get("failed", 0) + counts.get("error", 0), counts.get("passed", 0),
                counts.get("failed", 0) + counts.get("error", 0), counts.get("skipped", 0), _host_version(),
                COMFYUI))
    if REQUIRE_HOST:
        problems = _strict_problems()
        for p in problems:
            terminalreporter.write_line(f"RegionDrag strict host run: FAIL: {p}")
        if not problems:
            declared = len(_skips)
            terminalreporter.write_line(f"RegionDrag strict host run: OK ({declared} declared skips)")


# --------------------------------------------------------------------------- host fixtures

CKPT_NAME = "random_sd15.safetensors"


@pytest.fixture(scope="session")
def comfyui():
    """ComfyUI imported in this process (CPU where no GPU), with this pack loaded by ComfyUI's own loader."""
    import asyncio
    import types

    import comfy_host
    comfy_host.import_comfy()
    import folder_paths
    import nodes as comfy_nodes

    try:
        asyncio.get_running_loop()
        in_loop = True
    except RuntimeError:
        in_loop = False
    if in_loop:  # a test module left an event loop running in this thread (e.g. Playwright's sync API)
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            ok = pool.submit(asyncio.run, comfy_nodes.load_custom_node(REPO)).result()
    else:
        ok = asyncio.run(comfy_nodes.load_custom_node(REPO))
    if not ok:
        pytest.fail("ComfyUI failed to load the pack (see the log above)")
    pack = sys.modules[REPO.replace(".", "_x_")]
    folder_paths.add_model_folder_path("checkpoints", _cache_dir())
    return types.SimpleNamespace(pack=pack, nodes=comfy_nodes, NODES=comfy_nodes.NODE_CLASS_MAPPINGS,
                                 core=pack.regiondrag_core, root=COMFYUI)


@pytest.fixture(scope="session")
def sd15_checkpoint():
    """Path of the random-weight SD1.5 checkpoint (written once, about a minute, then cached)."""
    import random_checkpoints
    return random_checkpoints.write_random_checkpoint("sd15", os.path.join(_cache_dir(), CKPT_NAME))


@pytest.fixture(scope="session")
def sd15(comfyui, sd15_checkpoint):
    """(MODEL, CLIP, VAE) loaded by ComfyUI's CheckpointLoaderSimple from the random checkpoint."""
    model, clip, vae = comfyui.nodes.CheckpointLoaderSimple().load_checkpoint(CKPT_NAME)[:3]
    return model, clip, vae


@pytest.fixture(scope="session")
def addon_files():
    """{ComfyUI model folder: path} of the random SD1.5 ControlNet and kohya LoRA (written once, cached)."""
    import random_addons
    cache = _cache_dir()
    return {"controlnet": random_addons.write_random_controlnet_sd15(os.path.join(cache, "random_controlnet_sd15.safetensors")),
            "loras": random_addons.write_random_lora_sd15(os.path.join(cache, "random_lora_sd15.safetensors"))}


@pytest.fixture(scope="session")
def comfy_server(request, sd15_checkpoint):
    """A real ComfyUI server (``main.py``, CPU where no GPU) on a free loopback port with only this pack."""
    return start_server(request, [sd15_checkpoint])


@pytest.fixture(scope="module")
def sd15_inputs(sd15, comfyui):
    """The random SD1.5 model, a prompt and a 128x128-pixel (16x16) latent."""
    return sd15_prompt_and_latent(sd15, comfyui, 16)


@pytest.fixture(scope="module")
def api(comfyui):
    """(the ``comfyui`` fixture, the pack's sampling node module, regiondrag_core) for in-process tests."""
    return comfyui, comfyui.pack.nodes.sampling_nodes, comfyui.core
