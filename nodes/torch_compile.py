"""TorchCompileModel support: the patched clone gets a torch.compile of its own via ComfyUI's compile wrapper."""
from __future__ import annotations

import logging

import torch

import comfy.patcher_extension
from comfy_api.torch_helpers.torch_compile import (COMPILE_KEY, TORCH_COMPILE_KWARGS as COMPILE_KWARGS,
                                                   set_torch_compile_wrapper)

log = logging.getLogger("RegionDrag")

_backends: dict = {}   # one backend object per configuration (ComfyUI runs one prompt at a time)


def recompile_for_patches(m) -> bool:
    """Give the patched clone ``m`` a torch.compile of its own when the user's MODEL is compiled.

    TorchCompileModel compiles the UNet once for every sampler that uses the MODEL. ComfyUI 0.8
    also tells torch.compile to ignore ``transformer_options`` when it checks whether a compiled
    graph still fits a call, and torch shares compiled graphs between compiles of the same module
    with an equal backend. A graph first traced without RegionDrag's attention patch would then
    run the edit without it: no keys/values captured, none swapped in. So the clone gets the same
    compile through a backend object of RegionDrag's own: its graphs are traced with the patch,
    are checked against it, and are shared by every RegionDrag run (one warm-up, not one per edit).
    Returns True when ``m`` is compiled.
    """
    kwargs = m.model_options.get(COMPILE_KWARGS)
    if not kwargs or not m.get_wrappers(comfy.patcher_extension.WrappersMP.APPLY_MODEL, COMPILE_KEY):
        return False
    # The user's compile goes first: if ours cannot be set up, the edit runs uncompiled, never through
    # graphs traced without the patch.
    m.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, COMPILE_KEY)
    try:
        backend = _own_backend(kwargs.get("backend", "inductor"), kwargs.get("mode"),
                               kwargs.get("options"), kwargs.get("dynamic"))
        # mode and options are in the backend object; ComfyUI's wrapper compiles the UNet with it and
        # records these kwargs on the clone.
        set_torch_compile_wrapper(m, backend=backend, fullgraph=bool(kwargs.get("fullgraph", False)),
                                  dynamic=kwargs.get("dynamic"))
    except (ImportError, AttributeError, RuntimeError, ValueError, TypeError) as e:
        log.warning("RegionDrag: cannot compile the UNet the way the MODEL asks (%s: %s); "
                    "this edit runs it uncompiled.", type(e).__name__, e)
        return False
    return True


def _own_backend(name, mode=None, options=None, dynamic=None):
    """A torch.compile backend that behaves as ``name`` (with ``mode``/``options``) but is RegionDrag's.

    One object per configuration for the whole process, so compiled graphs are reused across edits.
    ``guard_filter_fn`` is dropped: it is what lets a graph run with patches it was not traced with.
    """
    options = {k: v for k, v in (options or {}).items() if k != "guard_filter_fn"}
    key = (str(name), mode, dynamic, repr(sorted(options.items())))
    if key in _backends:
        return _backends[key]
    if name == "inductor":
        from torch._inductor import list_mode_options
        from torch._inductor.compile_fx import compile_fx
        config = dict(list_mode_options(mode, dynamic)) if mode and mode != "default" else {}
        config.update(options)

        def backend(gm, example_inputs):
            return compile_fx(gm, example_inputs, config_patches=config)
    else:
        inner = torch._dynamo.lookup_backend(name) if isinstance(name, str) else name

        def backend(gm, example_inputs):
            return inner(gm, example_inputs)
    backend.__name__ = f"regiondrag_{getattr(name, '__name__', name)}"
    _backends[key] = backend
    return backend


def mark_static(t: torch.Tensor) -> None:
    """Staging buffers keep their address across steps: CUDA graphs need not copy them in."""
    if t.is_cuda:
        torch._dynamo.mark_static_address(t, guard=False)
