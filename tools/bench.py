#!/usr/bin/env python
"""Throughput and peak memory of the search step, the pretext-target pipeline and retraining.

    python tools/bench.py                                       # all sections, CPU defaults (< 5 min on 2 cores)
    python tools/bench.py --json /tmp/unnas_bench/bench.json    # also write every raw timing
    python tools/bench.py --only search --reps 7                # ours vs textbook DARTS only
    python tools/bench.py --only search --order second          # second-order (unrolled) steps
    python tools/bench.py --only search --partial-channels 8 --edge-norm
    python tools/bench.py --only search --sweep                 # batch / width / image size (opt-in, > 5 min)
    python tools/bench.py --only data                           # pretext targets: col vs skimage+sklearn, rot, jig
    python tools/bench.py --only train                          # DARTS_V2 retraining step
    python tools/bench.py --device cuda --amp bf16 --channels-last

Sections (``--only search,data,train``; default all):

* **search**: one search step = an architecture step on one batch plus a weight step on another
  batch of the same size (first order unless ``--order second``); images/s = batch / step time.
  "ours" is the package's supernet driven by :class:`unnas.search.bilevel.BilevelStep` with the
  search config's optimisers; "textbook" is ``benchmarks/textbook_supernet.py`` (all 8 ops per
  edge, NCHW fp32) stepped as the DARTS code does: ``loss.backward()`` computes every gradient in
  the architecture step, and the alphas stay in the weight step's graph. Both start from the same
  trunk, head and alpha values and see the same two fixed batches (built by the task's
  ``make_batch`` outside the timing); the first architecture losses are printed so a broken
  weight mapping shows. With PC-DARTS in the space (``build_supernet(partial_channels=...)``) a
  "pc-darts K" row is added. ``--sweep`` repeats ours vs textbook over batch 16/32/64, width
  8/16/32 and image size 16/32/48 (one varied at a time around ``--batch/--width/--size``).
* **data**: images/s of pretext-target construction (``make_batch``, uint8 images in memory):
  colorization at 224 px, ours on a batch vs the release's recipe one image at a time
  (scikit-image ``rgb2lab`` + scikit-learn ``NearestNeighbors`` ball tree on our 313 ab bins),
  both on one thread; rot and jig (G 2) at 32 px and jig G 3 at 255 px. Loading/decoding is
  ``benchmarks/bench_data.py``'s job (docs/benchmarks.md), not repeated here.
* **train**: forward + backward + SGD step of a fixed genotype's network (``--genotype``, default
  DARTS_V2; CIFAR stem, no auxiliary head) at ``--width/--depth/--batch/--size``.

The data section runs on the CPU in this process; the others follow ``--device``.

Method. Each (model, configuration) lives in its own spawned child process, so its peak memory is
its own: the peak RSS (``VmHWM``, restarted just before the model is built, after the imports and
the input batches) minus the RSS at that point, and the absolute peak; on CUDA also
``torch.cuda.max_memory_allocated`` minus the memory allocated before building. The children of
one comparison stay alive side by side; each does ``--warmup`` untimed repetitions, then the parent
asks them in turn (A B A B ...) for ``--reps`` timed repetitions of ``--steps`` steps, so machine
noise hits every model alike. Tables give the median images/s and the min-max range; ``--json``
keeps every repetition's seconds. The default 1 warm-up + 3 repetitions keep the default run under
5 minutes on 2 cores (one default-size step, 1 thread on a busy machine: ours ~18 s, textbook ~32 s).
On CUDA (or with ``--flops``) the nominal FLOPs of a step are 2 x fvcore multiply-adds of one
forward x 3 (forward + backward) x passes (search: 2 per first-order step, 5 per second-order
step; retraining: 1), the same count for every implementation; the fraction of peak uses
``--peak-tflops`` or a built-in dense peak for H100/H200/A100 (bf16, or TF32 for fp32 since
PyTorch runs fp32 convolutions in TF32 by default).

Memory format: ours uses channels-last (model and inputs) when the search config has a
``CHANNELS_LAST`` key (``SEARCH.``, ``MODEL.`` or top level), i.e. when the searcher can convert,
or a ``MEMORY_FORMAT`` key set to ``channels_last``; retraining follows the train config's
``CHANNELS_LAST``. ``--channels-last`` / ``--no-channels-last`` force either way; the textbook
stays NCHW fp32.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import inspect
import json
import multiprocessing as mp
import os
import platform
import resource
import shlex
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search_spaces import get_space  # noqa: E402
from search_spaces.darts.network import build_network  # noqa: E402
from search_spaces.darts.stems import choose_stem  # noqa: E402
from search_spaces.darts.supernet import SearchModel  # noqa: E402
from search_spaces.darts.zoo import resolve_genotype  # noqa: E402
from unnas.data import DataInfo  # noqa: E402
from unnas.search.bilevel import BilevelStep  # noqa: E402
from unnas.search.config import search_defaults  # noqa: E402
from unnas.tasks import build_task  # noqa: E402
from unnas.train.config import train_defaults  # noqa: E402

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NUM_CLASSES = 10
# Dense peak TFLOP/s (SXM parts) by compute dtype; "fp32" is the TF32 tensor-core peak.
PEAK_TFLOPS = {"H200": {"bf16": 989.0, "fp32": 494.7}, "H100": {"bf16": 989.0, "fp32": 494.7},
               "A100": {"bf16": 312.0, "fp32": 156.0}}
SWEEP = {"batch": (16, 32, 64), "width": (8, 16, 32), "size": (16, 32, 48)}


# ---- helpers shared by the parent and the children ----------------------------------------------
def data_info(size: int) -> DataInfo:
    mean, std = (CIFAR_MEAN, CIFAR_STD) if size <= 64 else (IMAGENET_MEAN, IMAGENET_STD)
    return DataInfo(num_classes=NUM_CLASSES, image_size=size, mean=mean, std=std)


def photo_like(n: int, size: int, seed: int) -> torch.Tensor:
    """uint8 (n, 3, size, size): smooth random colours plus some texture, like a photo (noise
    images would put every pixel on a saturated colour, which no data set looks like)."""
    g = torch.Generator().manual_seed(seed)
    low = max(size // 16, 2)
    img = F.interpolate(torch.rand(n, 3, low, low, generator=g) * 255, size=(size, size), mode="bicubic",
                        align_corners=False)
    img += torch.randint(-12, 13, img.shape, generator=g)
    return img.clamp(0, 255).to(torch.uint8)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, amp: str):
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def search_channels_last() -> tuple[bool, str]:
    """(channels-last?, why) for ours, from the search config's memory-format key: a
    ``CHANNELS_LAST`` key means the searcher can convert, so ours does; a ``MEMORY_FORMAT`` key
    says which format by its value."""
    cfg = search_defaults()
    for prefix, node in (("SEARCH.", cfg.SEARCH), ("MODEL.", cfg.MODEL), ("", cfg)):
        if "CHANNELS_LAST" in node:
            return True, f"{prefix}CHANNELS_LAST exists"
        if "MEMORY_FORMAT" in node:
            value = str(node.MEMORY_FORMAT).lower()
            return value in ("channels_last", "nhwc"), f"{prefix}MEMORY_FORMAT = {value}"
    return False, "no memory-format key in the search config"


def pc_darts_support() -> dict:
    """Which PC-DARTS options the space's builders accept (the search config checks the same way)."""
    space = get_space("darts")
    return {"partial_channels": "partial_channels" in inspect.signature(space.build_supernet).parameters,
            "edge_normalization": "edge_normalization" in inspect.signature(space.new_arch_parameters).parameters}


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


def _memory_mark(device: torch.device) -> dict:
    """Memory just before a model is built (the baseline of the peaks); restarts the peak RSS
    there, so the import's transient peak is not taken for the model's."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")   # VmHWM := VmRSS (Linux >= 4.0)
    mark = {"rss_kib": _rss_kib("VmRSS")}
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        mark["cuda_bytes"] = torch.cuda.memory_allocated(device)
    return mark


def _memory_peak(device: torch.device) -> dict:
    peak = {"rss_kib": _rss_kib("VmHWM")}
    if device.type == "cuda":
        _sync(device)
        peak["cuda_bytes"] = torch.cuda.max_memory_allocated(device)
    return peak


def _task_batches(spec: dict, device: torch.device):
    """The task and two fixed (inputs, targets) batches: architecture half, weight half."""
    task = build_task(spec["task"], data_info(spec["size"]))
    g = torch.Generator().manual_seed(spec["seed"])
    batches = []
    for half in range(2):
        images = photo_like(spec["batch"], spec["size"], spec["seed"] + half).to(device)
        labels = torch.randint(0, NUM_CLASSES, (spec["batch"],), generator=g).to(device)
        gen = torch.Generator(device=device).manual_seed(spec["seed"] + half)
        batches.append(task.make_batch(images, labels, True, gen))
    return task, batches


def _nominal_flops(model, weights, x, batch: int, per_sample: int, passes: int) -> float | None:
    """2 x fvcore MACs of one forward x 3 (forward + backward) x passes; counted on one source
    image's inputs and scaled to the batch, so the count costs little memory."""
    class Forward(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, inp):
            return self.model(inp, weights) if weights is not None else self.model(inp)

    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # torch.jit deprecation notes from fvcore's import and tracer
            from fvcore.nn import FlopCountAnalysis
            fca = FlopCountAnalysis(Forward(), (x[:per_sample],))
            fca.unsupported_ops_warnings(False)
            fca.uncalled_modules_warnings(False)
            macs = fca.total()
    except Exception as exc:  # a fused kernel fvcore cannot trace: report no FLOPs rather than fail
        print(f"bench: FLOP count failed ({type(exc).__name__}: {exc})", file=sys.stderr)
        return None
    return 2.0 * macs * batch * 3 * passes


def build_ours(spec: dict, device: torch.device):
    """Our supernet with BilevelStep, as unnas.search.searcher builds it."""
    cfg = search_defaults()
    task, ((xa, ya), (x, y)) = _task_batches(spec, device)
    if spec["channels_last"]:
        xa, x = (t.contiguous(memory_format=torch.channels_last) for t in (xa, x))
    mark = _memory_mark(device)
    space = get_space("darts")
    extra = {"partial_channels": spec["partial_channels"]} if spec["partial_channels"] > 1 else {}
    arch_kwargs = {"edge_normalization": True} if spec["edge_norm"] else {}
    torch.manual_seed(spec["seed"])
    trunk = space.build_supernet(task.in_channels, spec["width"], spec["depth"], choose_stem("auto", spec["size"]),
                                 task.single_reduction, **extra)
    model = SearchModel(trunk, task.build_head(trunk.out_channels)).to(device)
    arch = space.new_arch_parameters(generator=torch.Generator().manual_seed(spec["seed"] + 1),
                                     **arch_kwargs).to(device)
    if spec.get("state_out"):   # the textbook child starts from these weights
        torch.save({"trunk": model.trunk.state_dict(), "head": model.head.state_dict(),
                    "arch": arch.state_dict()}, spec["state_out"])
    if spec["channels_last"]:
        model.to(memory_format=torch.channels_last)
    w_opt = torch.optim.SGD(model.parameters(), lr=cfg.OPTIM.LR, momentum=cfg.OPTIM.MOMENTUM,
                            weight_decay=cfg.OPTIM.WEIGHT_DECAY, nesterov=cfg.OPTIM.NESTEROV)
    a_opt = torch.optim.Adam(arch.parameters(), lr=cfg.ARCH.LR, betas=tuple(cfg.ARCH.BETAS),
                             weight_decay=cfg.ARCH.WEIGHT_DECAY)
    bilevel = BilevelStep(model, arch, task, w_opt, a_opt, spec["order"], cfg.OPTIM.GRAD_CLIP, cfg.ARCH.UNROLL_LR)
    second = spec["order"] == "second"

    def step():
        with _autocast(device, spec["amp"]):
            loss = (bilevel.arch_step(xa, ya, x, y, cfg.OPTIM.LR) if second else bilevel.arch_step(xa, ya))
            bilevel.weight_step(x, y)
        return loss

    def count_flops():
        with torch.no_grad():
            weights = arch.weights()
        return _nominal_flops(model, weights, x, spec["batch"], task.images_per_sample, 5 if second else 2)

    return step, {"params": sum(p.numel() for p in model.parameters()), "baseline": mark}, count_flops


def darts_unrolled_backward(model, alphas: list, loss_of, w_opt, train: tuple, val: tuple, eta: float):
    """DARTS' Architect._backward_step_unrolled: a virtual SGD step (momentum, weight decay) on a
    deep copy of the model, the validation loss there, and the finite-difference Hessian-vector
    product with R = 0.01 / ||v||; leaves the architecture gradient in ``alphas``' ``.grad``.
    ``loss_of(net, inputs, targets)``; returns the unrolled validation loss."""
    params = list(model.parameters())
    group = w_opt.param_groups[0]
    theta = torch.nn.utils.parameters_to_vector(params).detach()
    moment = torch.cat([w_opt.state[p]["momentum_buffer"].view(-1) if "momentum_buffer" in w_opt.state[p]
                        else torch.zeros_like(p).view(-1) for p in params]) * group["momentum"]
    dtheta = torch.nn.utils.parameters_to_vector(torch.autograd.grad(loss_of(model, *train), params))
    unrolled = copy.deepcopy(model)
    torch.nn.utils.vector_to_parameters(theta - eta * (moment + dtheta + group["weight_decay"] * theta),
                                        unrolled.parameters())
    loss = loss_of(unrolled, *val)
    loss.backward()
    vector = [p.grad for p in unrolled.parameters()]
    r = 0.01 / float(torch.nn.utils.parameters_to_vector(vector).norm())
    implicit = []
    for sign in (1.0, -2.0):    # w + R v, then w - R v
        with torch.no_grad():
            for p, v in zip(params, vector):
                p.add_(v, alpha=sign * r)
        implicit.append(torch.autograd.grad(loss_of(model, *train), alphas))
    with torch.no_grad():
        for p, v in zip(params, vector):
            p.add_(v, alpha=r)
        for a, gp, gm in zip(alphas, *implicit):
            a.grad.sub_(eta * (gp - gm) / (2 * r))
    return loss


def build_textbook(spec: dict, device: torch.device):
    """The textbook supernet stepped as the DARTS release does (train_search.py / architect.py)."""
    from benchmarks.textbook_supernet import TextbookArch, TextbookModel, TextbookTrunk, load_from_ours

    cfg = search_defaults()
    task, ((xa, ya), (x, y)) = _task_batches(spec, device)
    mark = _memory_mark(device)
    torch.manual_seed(spec["seed"])
    trunk = TextbookTrunk(task.in_channels, spec["width"], spec["depth"], choose_stem("auto", spec["size"]),
                          task.single_reduction)
    head = task.build_head(trunk.out_channels)   # ours' head class; its weights are loaded below
    arch = TextbookArch()
    info = {"baseline": mark}
    try:   # our layout is being rewritten: a failed mapping must not stop the benchmark
        state = torch.load(spec["state_in"], map_location="cpu")
        load_from_ours(trunk, state["trunk"])
        head.load_state_dict(state["head"])
        with torch.no_grad():
            arch.alpha_normal.copy_(state["arch"]["alpha_normal"])
            arch.alpha_reduce.copy_(state["arch"]["alpha_reduce"])
        del state
    except Exception as exc:
        info["warning"] = (f"textbook does NOT share ours' weights ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); it uses its own init")
        print(f"bench: warning: {info['warning']}", file=sys.stderr)
    model = TextbookModel(trunk, head).to(device)
    arch.to(device)
    params = list(model.parameters())
    info["params"] = sum(p.numel() for p in params)
    w_opt = torch.optim.SGD(params, lr=cfg.OPTIM.LR, momentum=cfg.OPTIM.MOMENTUM, weight_decay=cfg.OPTIM.WEIGHT_DECAY)
    a_opt = torch.optim.Adam(arch.parameters(), lr=cfg.ARCH.LR, betas=tuple(cfg.ARCH.BETAS),
                             weight_decay=cfg.ARCH.WEIGHT_DECAY)

    def loss_of(net, inputs, targets):
        return task.loss(net(inputs, arch.weights()), targets)

    def step():
        # architecture step (Architect.step)
        a_opt.zero_grad()
        if spec["order"] == "second":
            loss = darts_unrolled_backward(model, list(arch.parameters()), loss_of, w_opt, (x, y), (xa, ya),
                                           cfg.OPTIM.LR)
        else:
            loss = loss_of(model, xa, ya)
            loss.backward()           # every gradient, the weights' included, as DARTS does
        a_opt.step()
        # weight step (train_search.train): the alphas stay in the graph
        w_opt.zero_grad()
        loss_of(model, x, y).backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.OPTIM.GRAD_CLIP)
        w_opt.step()
        return loss.detach()

    return step, info, None    # FLOPs: ours' count stands for both


def build_train(spec: dict, device: torch.device):
    """A fixed genotype's network, stepped as unnas.train.trainer does (no aux head, no drop-path)."""
    cfg = train_defaults()
    task, (_, (x, y)) = _task_batches(spec, device)
    if spec["channels_last"]:
        x = x.contiguous(memory_format=torch.channels_last)
    mark = _memory_mark(device)
    torch.manual_seed(spec["seed"])
    net = build_network(resolve_genotype(spec["genotype"]), task.build_head, task.num_outputs, task.in_channels,
                        spec["width"], spec["depth"], choose_stem("auto", spec["size"]), task.single_reduction,
                        auxiliary=False).to(device)
    if spec["channels_last"]:
        net.to(memory_format=torch.channels_last)
    net.train()
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=cfg.OPTIM.LR, momentum=cfg.OPTIM.MOMENTUM,
                          weight_decay=cfg.OPTIM.WEIGHT_DECAY, nesterov=cfg.OPTIM.NESTEROV)

    def step():
        with _autocast(device, spec["amp"]):
            loss = task.loss(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.OPTIM.GRAD_CLIP)
        opt.step()
        return loss.detach()

    def count_flops():
        return _nominal_flops(net, None, x, spec["batch"], task.images_per_sample, 1)

    return step, {"params": sum(p.numel() for p in params), "baseline": mark}, count_flops


BUILDERS = {"ours": build_ours, "textbook": build_textbook, "train": build_train}


def _child_main(conn, spec: dict) -> None:
    """Build one model, then answer the parent: "rep" -> one timed repetition, "done" -> the peak
    memory (and the nominal FLOPs of a step)."""
    try:
        torch.set_num_threads(spec["threads"])
        device = torch.device(spec["device"])
        t0 = time.perf_counter()
        step, info, count_flops = BUILDERS[spec["builder"]](spec, device)
        info["build_seconds"] = time.perf_counter() - t0
        conn.send(("ready", info))
        while conn.recv() == "rep":
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(spec["steps"]):
                loss = step()
            _sync(device)
            conn.send(("rep", {"seconds": time.perf_counter() - t0, "loss": float(loss)}))
        peak = _memory_peak(device)   # before counting FLOPs: fvcore's import and trace are not the model's
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
        self.proc = ctx.Process(target=_child_main, args=(child_conn, spec), daemon=True)
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
    saved), warm each up, then time them round-robin. -> {name: result or {"error": ...}}."""
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


def _summary(seconds: list, images: int) -> dict:
    ips = [images / s for s in seconds]
    q = statistics.quantiles(ips, n=4) if len(ips) > 1 else [ips[0]] * 3
    return {"median": statistics.median(ips), "min": min(ips), "max": max(ips), "iqr": q[2] - q[0]}


def _row(section: str, name: str, config: str, result: dict, images_per_rep: int, notes: str = "") -> dict:
    """A table/JSON row from a child's result (``images_per_rep``: images one repetition processes)."""
    row = {"section": section, "name": name, "config": config, "ratio": None, "notes": notes}
    if "error" in result:
        row.update(error=result["error"], notes=f"FAILED: {result['error']}")
        return row
    seconds = [r["seconds"] for r in result["reps"]]
    base, peak = result["info"]["baseline"], result["peak"]
    row.update(images_per_rep=images_per_rep, rep_seconds=seconds, warmup_seconds=[r["seconds"] for r in result["warmup"]],
               first_loss=(result["warmup"] or result["reps"])[0]["loss"],
               images_per_s=_summary(seconds, images_per_rep), params=result["info"].get("params"),
               build_seconds=result["info"]["build_seconds"],
               peak_rss_mib=peak["rss_kib"] / 1024, peak_rss_delta_mib=(peak["rss_kib"] - base["rss_kib"]) / 1024)
    if "cuda_bytes" in peak:
        row.update(peak_cuda_mib=peak["cuda_bytes"] / 2 ** 20,
                   peak_cuda_delta_mib=(peak["cuda_bytes"] - base["cuda_bytes"]) / 2 ** 20)
    if result["info"].get("warning"):
        row["notes"] = "; ".join(filter(None, (notes, result["info"]["warning"])))
    return row


def _add_flops(row: dict, flops: float | None, batch: int, peak_tflops: float | None) -> None:
    """Achieved nominal FLOP/s (and the fraction of ``peak_tflops``) from a row's median."""
    if not flops or "rep_seconds" not in row:
        return
    row["step_flops"] = flops
    row["tflops"] = flops * row["images_per_s"]["median"] / batch / 1e12
    note = (f"{row['tflops']:.2f} TFLOP/s nominal" if row["tflops"] >= 1
            else f"{row['tflops'] * 1e3:.2f} GFLOP/s nominal")
    if peak_tflops:
        row["peak_fraction"] = row["tflops"] / peak_tflops
        note += f" = {100 * row['peak_fraction']:.1f}% of {peak_tflops:g}"
    row["notes"] = "; ".join(filter(None, (row["notes"], note)))


def _base_spec(args, **kw) -> dict:
    spec = dict(task=args.task, width=args.width, depth=args.depth, batch=args.batch, size=args.size,
                order=args.order, device=args.device, threads=args.threads, seed=args.seed, steps=args.steps,
                amp="none", channels_last=False, partial_channels=1, edge_norm=False, flops=False)
    spec.update(kw)
    return spec


def search_configs(args) -> list[dict]:
    """The (batch, width, size) points to measure: the flags' one first, then the sweep around it."""
    base = {"batch": args.batch, "width": args.width, "size": args.size}
    if not args.sweep:
        return [base]
    points = [base] + [{**base, key: v} for key, values in SWEEP.items() for v in values]
    return [dict(t) for t in dict.fromkeys(tuple(c.items()) for c in points)]   # drop repeats, keep order


def search_section(args, plan: dict, tmp: Path) -> list[dict]:
    rows = []
    for i, point in enumerate(search_configs(args)):
        sub = argparse.Namespace(**{**vars(args), **point})
        state = str(tmp / f"ours_{i}.pt")
        ours = _base_spec(sub, builder="ours", amp=args.amp, channels_last=plan["search_channels_last"],
                          flops=plan["flops"])
        named = [("ours", {**ours, "state_out": state}),
                 ("textbook", _base_spec(sub, builder="textbook", state_in=state))]
        if plan["pc"] and i == 0:   # PC-DARTS at the flags' point only
            named.append((plan["pc"]["name"], {**ours, **plan["pc"]["kw"]}))
        results = measure(named, args.warmup, args.reps)
        dtype = "bf16" if args.amp == "bf16" else "fp32"
        config = (f"{args.task}, width {sub.width}, depth {args.depth}, batch {sub.batch}, {sub.size}x{sub.size}, "
                  f"{args.order} order, {args.device}")
        ours_notes = "; ".join(filter(None, [f"channels-last {'on' if plan['search_channels_last'] else 'off'}",
                                             "bf16 autocast" if args.amp == "bf16" else ""]))
        group = {name: _row("sweep" if args.sweep else "search", name, config, results[name], sub.batch * args.steps,
                            notes="NCHW fp32, DARTS step" if name == "textbook" else ours_notes)
                 for name, _ in named}
        textbook = group["textbook"]
        for name, row in group.items():
            if "rep_seconds" in row and "rep_seconds" in textbook:
                row["ratio"] = row["images_per_s"]["median"] / textbook["images_per_s"]["median"]
            # the nominal FLOP count is the same for both implementations: the textbook gets ours'
            flops = results["ours" if name == "textbook" else name].get("step_flops")
            _add_flops(row, flops, sub.batch, plan["peak_tflops"]["fp32" if name == "textbook" else dtype])
        if "first_loss" in group["ours"] and "first_loss" in textbook:
            print(f"bench: first architecture loss ours {group['ours']['first_loss']:.6f} textbook "
                  f"{textbook['first_loss']:.6f} (shared weights, fp32: equal up to float rounding)", file=sys.stderr)
        rows += group.values()
    return rows


def _time_calls(fn, warmup: int, reps: int) -> tuple[list, list]:
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


def _data_row(name: str, config: str, warm: list, seconds: list, images: int, notes: str = "", **extra) -> dict:
    return {"section": "data", "name": name, "config": config, "images_per_rep": images, "rep_seconds": seconds,
            "warmup_seconds": warm, "images_per_s": _summary(seconds, images), "ratio": None, "notes": notes, **extra}


def data_section(args) -> list[dict]:
    return colorization_rows(args) + pretext_rows(args)


def colorization_rows(args) -> list[dict]:
    """col make_batch on a batch vs the release's recipe image by image, both on one thread."""
    n, size = args.images, args.col_size
    images = photo_like(n, size, args.seed)
    task = build_task("col", data_info(size))
    gen = torch.Generator().manual_seed(args.seed)
    with torch_threads(1):
        # the first call builds or loads the per-colour table: a one-off cost, reported apart
        t0 = time.perf_counter()
        _, ours_targets = task.make_batch(images, None, True, gen)
        first = time.perf_counter() - t0
        warm, secs = _time_calls(lambda: task.make_batch(images, None, True, gen), max(args.warmup - 1, 0), args.reps)
        ours = _data_row("col ours", f"{size}x{size}, batch {n}, 1 thread", [first, *warm], secs, n,
                         f"make_batch; first call {first:.1f} s (table build/load)")
        try:
            from skimage.color import rgb2lab
            from sklearn.neighbors import NearestNeighbors
        except ImportError as exc:
            print(f"bench: colorization reference skipped ({exc}); pip install scikit-image scikit-learn",
                  file=sys.stderr)
            return [ours]
        from unnas.tasks.lab_bins import ab_bins

        knn = NearestNeighbors(n_neighbors=1, algorithm="ball_tree").fit(ab_bins().astype(float))
        ref_images = images[:min(args.ref_images, n)].permute(0, 2, 3, 1).numpy()

        def reference():
            """The release's recipe, one image at a time: L input and nearest-bin targets."""
            out = []
            for img in ref_images:
                lab = rgb2lab(img)
                l_input = (lab[..., 0] / 100.0 - task.l_mean) / task.l_std
                out.append((l_input, knn.kneighbors(lab[..., 1:].reshape(-1, 2), return_distance=False)
                            .reshape(img.shape[:2])))
            return out

        warm, secs = _time_calls(reference, args.warmup, args.reps)
    ref_targets = torch.as_tensor(np.stack([t for _, t in reference()]))
    agree = float((ref_targets == ours_targets[:len(ref_images)]).double().mean())
    ref = _data_row("col reference", f"{size}x{size}, {len(ref_images)} images one by one, 1 thread", warm, secs,
                    len(ref_images), "skimage rgb2lab + sklearn NearestNeighbors (ball tree)", target_agreement=agree)
    ours["ratio"] = ours["images_per_s"]["median"] / ref["images_per_s"]["median"]
    ours["notes"] += f"; same targets on {100 * agree:.3f}% of pixels; goal >= 20x"
    return [ours, ref]


def pretext_rows(args) -> list[dict]:
    """rot and jig make_batch at 32 px (and jig G 3 at --jig-size), --threads threads."""
    cases = [("rot", 32, {}), ("jig", 32, {})]
    if args.jig_size:
        cases.append(("jig", args.jig_size, {"jigsaw_grid": 3}))
    rows = []
    for name, size, opts in cases:
        task = build_task(name, data_info(size), **opts)
        images = photo_like(args.images, size, args.seed)
        labels = torch.zeros(args.images, dtype=torch.long)
        gen = torch.Generator().manual_seed(args.seed)
        # at least one warm-up: the first jig call may build and cache the permutation set
        warm, secs = _time_calls(lambda: task.make_batch(images, labels, True, gen), max(args.warmup, 1), args.reps)
        grid = f", G {task.grid}, {task.num_outputs} perms" if name == "jig" else ""
        rows.append(_data_row(name, f"{size}x{size}{grid}, batch {args.images}, {_threads(args.threads)}", warm, secs,
                              args.images, "make_batch"))
    return rows


def train_section(args, plan: dict) -> list[dict]:
    spec = _base_spec(args, builder="train", genotype=args.genotype, amp=args.amp,
                      channels_last=plan["train_channels_last"], flops=plan["flops"])
    results = measure([("train", spec)], args.warmup, args.reps)
    config = (f"{args.genotype}, {args.task}, width {args.width}, depth {args.depth}, batch {args.batch}, "
              f"{args.size}x{args.size}, {args.device}")
    notes = "; ".join(filter(None, ["no aux head", f"channels-last {'on' if plan['train_channels_last'] else 'off'}",
                                    "bf16 autocast" if args.amp == "bf16" else ""]))
    row = _row("train", args.genotype, config, results["train"], args.batch * args.steps, notes=notes)
    _add_flops(row, results["train"].get("step_flops"), args.batch,
               plan["peak_tflops"]["bf16" if args.amp == "bf16" else "fp32"])
    return [row]


def _threads(n: int) -> str:
    return f"{n} thread" + ("s" if n != 1 else "")


def _fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def markdown_table(rows: list[dict]) -> str:
    lines = ["| section | model | config | images/s (median) | min-max | peak mem MiB (+model / total) | ratio | notes |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        s = r.get("images_per_s")
        if "peak_cuda_mib" in r:
            mem = f"cuda {r['peak_cuda_delta_mib']:.0f} / {r['peak_cuda_mib']:.0f}"
        elif "peak_rss_mib" in r:
            mem = f"{r['peak_rss_delta_mib']:.0f} / {r['peak_rss_mib']:.0f}"
        else:
            mem = "-"
        median, spread = ("-", "-") if not s else (f"{s['median']:.1f}", f"{s['min']:.1f}-{s['max']:.1f}")
        lines.append(f"| {r['section']} | {r['name']} | {r['config']} | {median} | {spread} | {mem} | "
                     f"{_fmt(r['ratio'], '.2f')} | {r['notes']} |")
    return "\n".join(lines)


def plan_options(args, device_name: str) -> dict:
    """Decide channels-last, PC-DARTS, FLOP counting and the peak FLOP/s from the flags and from
    what the code and the device offer."""
    search_cl, why = search_channels_last()
    if args.channels_last is not None:
        search_cl, why = args.channels_last, "flag"
    train_cl = args.channels_last if args.channels_last is not None else bool(train_defaults().CHANNELS_LAST)
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in device_name), {"bf16": None, "fp32": None})
    if args.peak_tflops:
        peak = {"bf16": args.peak_tflops, "fp32": args.peak_tflops}
    plan = {"search_channels_last": search_cl, "search_channels_last_why": why, "train_channels_last": train_cl,
            "flops": args.flops or args.device.startswith("cuda"), "peak_tflops": peak, "pc": None,
            "pc_support": pc_darts_support()}
    if args.partial_channels > 1:
        support = plan["pc_support"]
        edge = support["edge_normalization"] if args.edge_norm is None else args.edge_norm
        if not support["partial_channels"]:
            print("bench: PC-DARTS is unavailable (build_supernet takes no partial_channels); "
                  "pc-darts row skipped", file=sys.stderr)
        elif edge and not support["edge_normalization"]:
            print("bench: PC-DARTS edge normalisation is unavailable (new_arch_parameters takes no "
                  "edge_normalization); pc-darts row skipped", file=sys.stderr)
        else:
            k = args.partial_channels
            plan["pc"] = {"name": f"pc-darts K={k}" + (" +edge-norm" if edge else ""),
                          "kw": {"partial_channels": k, "edge_norm": edge}}
    return plan


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine() or "cpu"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="search,data,train", help="comma-separated sections: search, data, train")
    p.add_argument("--json", metavar="PATH", help="write all raw timings and the environment here")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads (default: all cores)")
    p.add_argument("--warmup", type=int, default=1, help="untimed repetitions per model")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per model (3 keeps the default "
                   "run under 5 minutes on 2 cores)")
    p.add_argument("--steps", type=int, default=1, help="steps per repetition (search, train)")
    p.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("search and train")
    g.add_argument("--task", default="cls", choices=("cls", "rot", "col", "jig"))
    g.add_argument("--width", type=int, default=16)
    g.add_argument("--depth", type=int, default=8)
    g.add_argument("--batch", type=int, default=32)
    g.add_argument("--size", type=int, default=32, help="image side")
    g.add_argument("--order", default="first", choices=("first", "second"))
    g.add_argument("--partial-channels", type=int, default=4, metavar="K",
                   help="PC-DARTS row with this K when the space supports it (1 = no PC-DARTS row)")
    g.add_argument("--edge-norm", action=argparse.BooleanOptionalAction, default=None,
                   help="PC-DARTS edge normalisation in that row (default: on when supported)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="force channels-last on/off for ours and retraining (default: as the configs)")
    g.add_argument("--amp", default="none", choices=("none", "bf16"), help="autocast for ours and retraining")
    g.add_argument("--flops", action="store_true", help="count nominal FLOPs (always on CUDA)")
    g.add_argument("--peak-tflops", type=float, help="device peak for the FLOP/s fraction")
    g.add_argument("--sweep", action="store_true", help="search over batch/width/image-size values (slow)")
    g.add_argument("--genotype", default="DARTS_V2", help="retrained genotype (zoo name or file)")
    g = p.add_argument_group("data")
    g.add_argument("--images", type=int, default=64, help="images per make_batch call")
    g.add_argument("--ref-images", type=int, default=16, help="images for the per-image colorization reference")
    g.add_argument("--col-size", type=int, default=224, help="colorization image side")
    g.add_argument("--jig-size", type=int, default=255, help="image side of the jig G 3 row (0 = skip)")
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.sections) - {"search", "data", "train"}
    if unknown:
        p.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}; use search, data, train")
    if args.reps < 1 or args.warmup < 0 or args.steps < 1:
        p.error("need --reps >= 1, --warmup >= 0, --steps >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    name = device_name(args.device)
    plan = plan_options(args, name)
    if "search" in args.sections:
        print(f"bench: ours channels-last {'on' if plan['search_channels_last'] else 'off'} "
              f"({plan['search_channels_last_why']})", file=sys.stderr)
    t_start = time.time()
    meta = {"command": shlex.join([sys.executable, *sys.argv]), "torch": torch.__version__,
            "python": platform.python_version(), "cpu_count": os.cpu_count(), "threads": args.threads,
            "device": args.device, "device_name": name, "loadavg_start": os.getloadavg(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "warmup": args.warmup, "reps": args.reps,
            "steps_per_rep": args.steps, "plan": plan}
    rows = []
    with tempfile.TemporaryDirectory(prefix="unnas_bench_") as tmp:
        if "search" in args.sections:
            rows += search_section(args, plan, Path(tmp))
        if "data" in args.sections:
            rows += data_section(args)
        if "train" in args.sections:
            rows += train_section(args, plan)
    meta.update(total_seconds=time.time() - t_start, loadavg_end=os.getloadavg())

    print(markdown_table(rows))
    print(f"\n{name}, torch {torch.__version__}, {_threads(args.threads)}, {args.warmup} warm-up + {args.reps} reps "
          f"of {args.steps} step(s), {meta['total_seconds']:.0f} s. Search images/s = batch / (arch step + weight "
          "step). Data rows time target construction only; loader throughput: benchmarks/bench_data.py "
          "(docs/benchmarks.md).")
    for r in rows:
        if r["ratio"] is not None and r["name"] != "textbook":
            versus = "per-image reference" if r["section"] == "data" else "textbook"
            print(f"ratio {r['name']} / {versus} ({r['config']}): {r['ratio']:.2f}x")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
