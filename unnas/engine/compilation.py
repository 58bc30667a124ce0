"""Optional ``torch.compile`` of a loop's network (``COMPILE`` in training, ``SEARCH.COMPILE`` in the search).

The module's forward is compiled in place (:meth:`torch.nn.Module.compile`): the loop keeps the
same module object, its parameters and its ``state_dict`` keys, so checkpoints hold the plain
module's weights (no ``_orig_mod.`` prefixes), load into an uncompiled network and resume exactly;
submodules called on their own (the trunk of the fitness features, a P-DARTS stage's new
supernet) run eagerly.

Modes are ``torch.compile``'s: ``default``, ``reduce-overhead`` (CUDA graphs: the win for small
networks whose kernels are shorter than their launches) and ``max-autotune`` (also tries kernel
variants; long first steps). The first steps of a run pay the compilation, and so does every new
shape or mode (the last, smaller evaluation batch, eval vs training mode, inference vs autograd).

``UNNAS_COMPILE_BACKEND`` overrides the backend (default ``inductor``): the tests use ``aot_eager``,
which traces and runs the same graphs with the eager kernels and needs no C++ compiler.
"""
from __future__ import annotations

import logging
import os
import shutil

import torch

from unnas.config import ConfigError, check

log = logging.getLogger("unnas.engine")

COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
BACKEND_ENV = "UNNAS_COMPILE_BACKEND"


def check_compile_mode(key: str, mode: str) -> None:
    """One config line for a value that is no compile mode."""
    check(mode in COMPILE_MODES, f"{key} must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")


def compile_backend() -> str:
    return os.environ.get(BACKEND_ENV, "").strip() or "inductor"


def _cxx_compiler() -> str | None:
    """The C++ compiler inductor would use on the CPU, or None when it finds none."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
        return get_cpp_compiler()
    except ImportError:   # another torch layout: look where inductor looks by default
        return shutil.which(os.environ.get("CXX", "g++"))
    except Exception:     # InvalidCxxCompiler
        return None


def compile_unavailable(device: torch.device, backend: str | None = None) -> str | None:
    """Why ``torch.compile`` cannot compile for ``device`` here (what to do about it, as one
    sentence), or None when it can."""
    backend = backend or compile_backend()
    try:
        import torch._dynamo as dynamo
        if not dynamo.is_dynamo_supported():
            return "torch.compile is not supported on this Python/torch (torch._dynamo.is_dynamo_supported() is False)"
    except ImportError as exc:
        return f"torch.compile cannot be imported here ({exc})"
    if backend != "inductor":
        return None
    if device.type == "cpu" and _cxx_compiler() is None:
        return ("torch.compile's inductor backend needs a C++ compiler on the CPU and found none (g++ or $CXX); "
                "install one (e.g. apt-get install g++) or point CXX at it")
    if device.type == "cuda":
        from torch.utils._triton import has_triton
        if not has_triton():
            return "torch.compile's inductor backend needs Triton on a GPU and cannot use it; pip install triton"
    return None


def compile_module(module: torch.nn.Module, mode: str, device: torch.device, key: str = "COMPILE") -> bool:
    """Compile ``module``'s forward in place with ``mode`` (``none``: leave it eager). Raises one
    :class:`ConfigError` line, naming ``key`` and the fix, when compilation is unavailable here.
    Returns whether the module is now compiled."""
    check_compile_mode(key, mode)
    if mode == "none":
        return False
    backend = compile_backend()
    why = compile_unavailable(device, backend)
    if why is not None:
        raise ConfigError(f"{key} {mode}: {why}; or set {key} none")
    # torch.compile takes a mode only for inductor; other backends (the tests' aot_eager) take none
    module.compile(backend=backend, **({"mode": mode} if backend == "inductor" and mode != "default" else {}))
    log.info("%s %s: forward of %s compiled with torch.compile (backend %s); the first steps include compilation",
             key, mode, type(module).__name__, backend)
    return True
