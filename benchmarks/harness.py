"""Process harness of ``tools/bench.py``: one spawned child process per model, peak-memory marks,
and interleaved (A B A B ...) timing.

Each (model, configuration) lives in its own child, so its peak memory is its own: the peak RSS
(``VmHWM``, restarted by :func:`memory_mark` just before the model is built, after the imports and
the input batches) minus the RSS at that mark, and the absolute peak; on CUDA also
``torch.cuda.max_memory_allocated`` minus the memory allocated at the mark. The children of one
comparison stay alive side by side; each does ``warmup`` untimed repetitions, then the parent asks
them in turn for each of ``reps`` timed repetitions, so machine noise hits every model alike.

A child builds its model with ``spec["builder"]``, a ``"module:function"`` name (e.g.
``"benchmarks.search_step:build_ours"``) called as ``function(spec, device)``. It returns
``(step, info, count_flops)``: ``step()`` runs one step and returns its loss (a repetition is
``spec["steps"]`` calls); ``info`` is a dict that holds ``"baseline"`` (the :func:`memory_mark`)
and may hold ``"params"``, ``"warning"`` or anything else the report shows; ``count_flops()`` (or
None) gives the nominal FLOPs of one step. The child needs the repository root on ``sys.path``;
a spawned child starts with the parent's, so ``tools/bench.py`` putting the root there is enough.
"""
from __future__ import annotations

import contextlib
import importlib
import multiprocessing as mp
import resource
import sys
import time
import traceback
from pathlib import Path

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- child side: one model per process ------------------------------------------------------------
def _rss_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in KiB. Not ``ru_maxrss``: a spawned
    child inherits as its ru_maxrss the parent's RSS at the fork before its exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # no /proc: the best there is


def memory_mark(device: torch.device) -> dict:
    """Memory just before a model is built (the baseline of the peaks); restarts the peak RSS
    there, so the import's transient peak is not taken for the model's."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")   # VmHWM := VmRSS (Linux >= 4.0)
    mark = {"rss_kib": _rss_kib("VmRSS")}
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        mark["cuda_bytes"] = torch.cuda.memory_allocated(device)
    return mark


def memory_peak(device: torch.device) -> dict:
    peak = {"rss_kib": _rss_kib("VmHWM")}
    if device.type == "cuda":
        sync(device)
        peak["cuda_bytes"] = torch.cuda.max_memory_allocated(device)
    return peak


def resolve_builder(name: str):
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)


def child_main(conn, spec: dict) -> None:
    """Build one model, then answer the parent: "rep" -> one timed repetition, "done" -> the peak
    memory (and the nominal FLOPs of a step)."""
    try:
        torch.set_num_threads(spec["threads"])
        device = torch.device(spec["device"])
        t0 = time.perf_counter()
        step, info, count_flops = resolve_builder(spec["builder"])(spec, device)
        info["build_seconds"] = time.perf_counter() - t0
        conn.send(("ready", info))
        while conn.recv() == "rep":
            sync(device)
            t0 = time.perf_counter()
            for _ in range(spec["steps"]):
                loss = step()
            sync(device)
            conn.send(("rep", {"seconds": time.perf_counter() - t0, "loss": float(loss)}))
        peak = memory_peak(device)   # before counting FLOPs: fvcore's import and trace are not the model's
        flops = count_flops() if spec["flops"] and count_flops is not None else None
        conn.send(("done", {"peak": peak, "step_flops": flops}))
    except Exception:
        conn.send(("error", traceback.format_exc()))


# ---- parent side ---------------------------------------------------------------------------------
class ChildError(RuntimeError):
    pass


class Child:
    """A spawned process holding one model; the parent asks it for repetitions."""

    def __init__(self, ctx, name: str, spec: dict):
        self.name = name
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(target=child_main, args=(child_conn, spec), daemon=True)
        self.proc.start()
        child_conn.close()
        self.warmup, self.reps = [], []
        self.info = self._recv()

    def _recv(self):
        try:
            kind, payload = self.conn.recv()
        except EOFError:
            self.proc.join()
            raise ChildError(f"{self.name}: the child process died (exit code {self.proc.exitcode}; "
                             "out of memory?)") from None
        if kind == "error":
            self.proc.join()
            raise ChildError(f"{self.name}: {payload}")
        return payload

    def rep(self) -> dict:
        self.conn.send("rep")
        return self._recv()

    def finish(self) -> dict:
        self.conn.send("done")
        done = self._recv()
        self.proc.join()
        return done


def measure(named_specs: list, warmup: int, reps: int) -> dict:
    """Start one child per (name, spec) in order (a later one may load weights an earlier one
    saved), warm each up, then time them round-robin. -> {name: result or {"error": ...}}, a
    result being {"info", "warmup", "reps", "peak", "step_flops"}."""
    ctx = mp.get_context("spawn")
    results, live = {}, []

    def fail(child_or_name, exc):
        name = getattr(child_or_name, "name", child_or_name)
        print(f"bench: {exc}", file=sys.stderr)
        results[name] = {"error": str(exc).strip().splitlines()[-1]}
        if child_or_name in live:
            live.remove(child_or_name)

    for name, spec in named_specs:
        print(f"bench: building {name} ...", file=sys.stderr, flush=True)
        try:
            live.append(Child(ctx, name, spec))
        except ChildError as exc:
            fail(name, exc)
    for child in list(live):
        try:
            child.warmup = [child.rep() for _ in range(warmup)]
        except ChildError as exc:
            fail(child, exc)
    for _ in range(reps):
        for child in list(live):
            try:
                child.reps.append(child.rep())
            except ChildError as exc:
                fail(child, exc)
    for child in list(live):
        try:
            done = child.finish()
        except ChildError as exc:
            fail(child, exc)
            continue
        results[child.name] = {"info": child.info, "warmup": child.warmup, "reps": child.reps, **done}
    return results


# ---- in-process timing (the data section) --------------------------------------------------------
def time_calls(fn, warmup: int, reps: int) -> tuple[list, list]:
    """(warm-up seconds, timed seconds) of calls to ``fn``."""
    def once():
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    return [once() for _ in range(warmup)], [once() for _ in range(reps)]


@contextlib.contextmanager
def torch_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
