#!/usr/bin/env python
"""Throughput and peak memory of the search step, the pretext-target pipeline and retraining.

    python tools/bench.py                                       # all sections, CPU defaults (< 5 min on 2 cores)
    python tools/bench.py --json /tmp/unnas_bench/bench.json    # also write every raw timing
    python tools/bench.py --only search --reps 7                # ours vs textbook DARTS only
    python tools/bench.py --only search --order second          # second-order (unrolled) steps
    python tools/bench.py --only search --partial-channels 8 --edge-norm
    python tools/bench.py --only search --sweep                 # batch / width / image size (opt-in, > 5 min)
    python tools/bench.py --only data                           # pretext targets: col vs skimage+sklearn, rot, jig
    python tools/bench.py --only train                          # DARTS_V2 retraining step, ours vs textbook (cls, rot, jig)
    python tools/bench.py --only train --threads 1 --train-tasks cls
    python tools/bench.py --quick                               # smoke run of every section at tiny sizes
    python tools/bench.py --device cuda --amp bf16 --channels-last
    python tools/bench.py --device cuda --only train,search --variants gpu   # the GPU path, one row per setting
    bash benchmarks/gpu_check.sh                                # the GPU path's prepared check (tests + rows)

Sections (``--only search,data,train``; default all):

* **search**: one search step = an architecture step on one batch plus a weight step on another
  batch of the same size (first order unless ``--order second``); images/s = batch / step time.
  "ours" is what ``tools/search.py`` runs: a search config (``search_defaults()`` plus these flags
  as config keys) built by the searcher's builder ``unnas.search.build.build_search`` and stepped
  through its :class:`~unnas.search.bilevel.BilevelStep` as ``Searcher.run_step`` does; "textbook"
  is ``benchmarks/textbook_supernet.py`` (all 8 ops per edge, NCHW fp32) stepped as the DARTS code
  does: ``loss.backward()`` computes every gradient in the architecture step, and the alphas stay
  in the weight step's graph. Both start from the same trunk, head and alpha values and see the
  same two fixed batches (built by the task's ``make_batch`` outside the timing); the first
  architecture losses are printed so a broken weight mapping shows. With ``--partial-channels K``
  > 1 a "pc-darts K" row is added (ours with ``SEARCH.PARTIAL_CHANNELS K`` and, unless
  ``--no-edge-norm``, ``SEARCH.EDGE_NORM``). ``--sweep`` repeats ours vs textbook over batch
  16/32/64, width 8/16/32 and image size 16/32/48 (one varied at a time around
  ``--batch/--width/--size``). Details: ``benchmarks/search_step.py``.
* **data**: images/s of pretext-target construction (``make_batch``, uint8 images in memory):
  colorization at 224 px, ours on a batch vs the release's recipe one image at a time
  (scikit-image ``rgb2lab`` + scikit-learn ``NearestNeighbors`` ball tree on our 313 ab bins),
  both on one thread; rot and jig (G 2) at 32 px and jig G 3 at 255 px. Loading/decoding is
  ``benchmarks/bench_data.py``'s job (docs/benchmarks.md), not repeated here.
* **train**: forward + backward + SGD step of a fixed genotype's network (``--genotype``, default
  DARTS_V2; CIFAR stem, no auxiliary head) at ``--width/--depth/--batch/--size``, for each task of
  ``--train-tasks`` (default cls, rot, jig; images/s counts source images: rot runs 4 rotations
  per image, jig G^2 tiles). "ours" is built from a train config by the trainer's own
  ``resolve_network`` / ``build_train_network`` / ``train_optimizer``; "textbook" is
  ``benchmarks/textbook_network.py`` (NetworkCIFAR as DARTS / UnNAS build it, NCHW fp32, the
  UnNAS classifier of the task) with ours' initial weights, stepped as DARTS' train.py does, on
  the same batch; both in one interleaved run, ratio = ours / textbook
  (``benchmarks/train_step.py``).

The data section runs on the CPU in this process; the others follow ``--device``.

Method (``benchmarks/harness.py``). Each (model, configuration) lives in its own spawned child
process, so its peak memory is its own: the peak RSS (``VmHWM``, restarted just before the model
is built, after the imports and the input batches) minus the RSS at that point, and the absolute
peak; on CUDA also ``torch.cuda.max_memory_allocated`` minus the memory allocated before building.
The children of one comparison stay alive side by side; each does ``--warmup`` untimed
repetitions, then the parent asks them in turn (A B A B ...) for ``--reps`` timed repetitions of
``--steps`` steps, so machine noise hits every model alike. Tables give the median images/s and
the min-max range; ``--json`` keeps every repetition's seconds. The default 1 warm-up + 3
repetitions keep the default run under 5 minutes on 2 cores (one default-size step, 1 thread on
a busy machine: ours ~18 s, textbook ~32 s). On CUDA (or with ``--flops``) the nominal FLOPs of a
step are 2 x fvcore multiply-adds of one forward x 3 (forward + backward) x passes (search: 2 per
first-order step, 5 per second-order step; retraining: 1), the same count for every
implementation; the fraction of peak uses ``--peak-tflops`` or a built-in dense peak for
H100 SXM/PCIe/NVL, H200 SXM/NVL and A100 by ``torch.cuda.get_device_name`` (bf16, or TF32 for fp32
since PyTorch runs fp32 convolutions in TF32 by default; ``benchmarks/report.py``), else "unknown".

GPU path (``--variants``): ours once per setting, side by side with the textbook: ``fp32-nchw``,
``fp32-cl`` (channels-last), ``bf16-cl`` (bf16 autocast + channels-last) and ``bf16-cl-compile``
(also ``torch.compile``, in ``--compile``'s mode, default ``default``); ``gpu`` names all four. Each
row reports images/s, peak memory (``torch.cuda.max_memory_allocated`` on a GPU) and the fraction
of the device's peak FLOP/s, and a ``variant`` line compares it with the first variant. The compile
row's compilation falls in its warm-up (use ``--warmup`` >= 1; ``reduce-overhead`` wants 2 or
more). ``--device cuda`` on a machine without a CUDA GPU stops with one line.

Memory format and autocast: decided as the tools decide them, not here. ``--channels-last`` /
``--no-channels-last`` set ``SEARCH.CHANNELS_LAST`` (ours) and ``CHANNELS_LAST`` (retraining);
without them the configs' defaults apply (search on, retraining off). ``--amp bf16`` sets
``SEARCH.AMP`` and ``AMP``, ``--compile MODE`` ``SEARCH.COMPILE`` and ``COMPILE``. ``unnas.utils.memory_format.use_channels_last`` then runs bf16 on a
CPU in NCHW whatever was asked; each row's notes (and its JSON ``channels_last``) say what the
model actually ran with. The textbook stays NCHW fp32.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # for this process and, through spawn, its children

from benchmarks.harness import measure  # noqa: E402
from benchmarks.pretext_targets import colorization_rows, pretext_rows  # noqa: E402
from benchmarks.report import add_flops, markdown_table, peak_tflops, row, threads_label  # noqa: E402
from unnas.engine.compilation import COMPILE_MODES  # noqa: E402
from unnas.search.config import search_defaults  # noqa: E402
from unnas.train.config import train_defaults  # noqa: E402

SWEEP = {"batch": (16, 32, 64), "width": (8, 16, 32), "size": (16, 32, 48)}
OURS, TEXTBOOK = "benchmarks.search_step:build_ours", "benchmarks.search_step:build_textbook"
TRAIN, TRAIN_TEXTBOOK = "benchmarks.train_step:build_train", "benchmarks.train_step:build_textbook"
TRAIN_TASKS = ("cls", "rot", "jig")   # the tasks the textbook network has a classifier for
# --variants: our model's GPU-path settings, one row each (the search and train sections); "gpu" names all
VARIANTS = {"fp32-nchw": dict(amp="none", channels_last=False, compile="none"),
            "fp32-cl": dict(amp="none", channels_last=True, compile="none"),
            "bf16-cl": dict(amp="bf16", channels_last=True, compile="none"),
            "bf16-cl-compile": dict(amp="bf16", channels_last=True, compile="default")}
# --quick: a smoke run of every section at the smallest sizes (explicit flags still win)
QUICK = dict(warmup=0, reps=1, steps=1, width=4, depth=3, batch=4, size=16, partial_channels=1, images=2,
             ref_images=1, col_size=16, jig_size=0)


def _base_spec(args, **kw) -> dict:
    """What a child builds: the flags' settings (``channels_last`` None = the config's default)."""
    spec = dict(task=args.task, width=args.width, depth=args.depth, batch=args.batch, size=args.size,
                order=args.order, device=args.device, threads=args.threads, seed=args.seed, steps=args.steps,
                amp="none", channels_last=None, compile="none", partial_channels=1, edge_norm=False, flops=False)
    spec.update(kw)
    return spec


def ours_variants(args) -> list[tuple[str, dict]]:
    """(row-name suffix, settings) of each "ours" row: the ``--variants`` (the compile one in
    ``--compile``'s mode, default ``default``), else one row of ``--amp/--channels-last/--compile``."""
    if not args.variants:
        return [("", dict(amp=args.amp, channels_last=args.channels_last, compile=args.compile))]
    out = []
    for name in args.variants:
        kw = dict(VARIANTS[name])
        if kw["compile"] != "none" and args.compile != "none":
            kw["compile"] = args.compile
        out.append((f" {name}", kw))
    return out


def _requested_channels_last(plan: dict, kind: str, kw: dict) -> bool:
    """The memory format a row asked for (its variant's, else the flag's or the config's default)."""
    return plan[f"{kind}_channels_last"] if kw["channels_last"] is None else bool(kw["channels_last"])


def _on(flag) -> str:
    return "on" if flag else "off"


def _model_notes(result: dict, requested: bool) -> str:
    """Memory format and autocast a child's model ran with (and a request it did not follow)."""
    info = result.get("info", {})
    if "channels_last" not in info:
        return ""
    fmt = f"channels-last {_on(info['channels_last'])}"
    if info["channels_last"] != requested:
        fmt += f" (requested {_on(requested)}; unnas.utils.memory_format runs bf16 on CPU in NCHW)"
    return "; ".join(filter(None, [fmt, f"{info['autocast']} autocast" if info.get("autocast") else "",
                                   f"torch.compile {info['compile']}" if info.get("compile", "none") != "none" else ""]))


def search_configs(args) -> list[dict]:
    """The (batch, width, size) points to measure: the flags' one first, then the sweep around it."""
    base = {"batch": args.batch, "width": args.width, "size": args.size}
    if not args.sweep:
        return [base]
    points = [base] + [{**base, key: v} for key, values in SWEEP.items() for v in values]
    return [dict(t) for t in dict.fromkeys(tuple(c.items()) for c in points)]   # drop repeats, keep order


def search_section(args, plan: dict, tmp: Path) -> list[dict]:
    rows = []
    variants = ours_variants(args)
    first = f"ours{variants[0][0]}"
    for i, point in enumerate(search_configs(args)):
        sub = argparse.Namespace(**{**vars(args), **point})
        state = str(tmp / f"ours_{i}.pt")
        named, settings = [], {}
        for suffix, kw in variants:
            settings[f"ours{suffix}"] = kw
            named.append((f"ours{suffix}", _base_spec(sub, builder=OURS, flops=plan["flops"], **kw)))
        named[0][1]["state_out"] = state    # the textbook starts from the first row's weights
        named.insert(1, ("textbook", _base_spec(sub, builder=TEXTBOOK, state_in=state)))
        if plan["pc"] and i == 0:   # PC-DARTS at the flags' point only, with the first row's settings
            named.append((plan["pc"]["name"], {**named[0][1], **plan["pc"]["kw"], "state_out": None}))
            settings[plan["pc"]["name"]] = variants[0][1]
        results = measure(named, args.warmup, args.reps)
        if i == 0 and "info" in results[first] and not args.variants:
            print(f"bench: ours ran channels-last {_on(results[first]['info']['channels_last'])} (requested "
                  f"{_on(plan['search_channels_last'])}: {plan['search_channels_last_why']})", file=sys.stderr)
        config = (f"{args.task}, width {sub.width}, depth {args.depth}, batch {sub.batch}, {sub.size}x{sub.size}, "
                  f"{args.order} order, {args.device}")
        group = {name: row("sweep" if args.sweep else "search", name, config, results[name], sub.batch * args.steps,
                           notes="NCHW fp32, DARTS step" if name == "textbook"
                           else _model_notes(results[name], _requested_channels_last(plan, "search", settings[name])))
                 for name, _ in named}
        textbook = group["textbook"]
        # the nominal FLOP count is the same for every implementation and setting of one configuration
        shared_flops = next((results[n].get("step_flops") for n in settings if results[n].get("step_flops")), None)
        for name, r in group.items():
            if "rep_seconds" in r and "rep_seconds" in textbook:
                r["ratio"] = r["images_per_s"]["median"] / textbook["images_per_s"]["median"]
            flops = shared_flops if name == "textbook" else results[name].get("step_flops") or shared_flops
            dtype = "fp32" if name == "textbook" else ("bf16" if settings[name]["amp"] == "bf16" else "fp32")
            add_flops(r, flops, sub.batch, plan["peak_tflops"][dtype])
        if "first_loss" in group[first] and "first_loss" in textbook:
            print(f"bench: first architecture loss {first} {group[first]['first_loss']:.6f} textbook "
                  f"{textbook['first_loss']:.6f} (shared weights, fp32: equal up to float rounding)", file=sys.stderr)
        rows += group.values()
    return rows


def data_section(args) -> list[dict]:
    return (colorization_rows(args.images, args.col_size, args.ref_images, args.seed, args.warmup, args.reps)
            + pretext_rows(args.images, args.jig_size, args.seed, args.warmup, args.reps, args.threads))


def train_section(args, plan: dict) -> list[dict]:
    """Per task of ``--train-tasks``: ours and the textbook network, interleaved in one measure()."""
    rows = []
    for task in args.train_tasks:
        sub = argparse.Namespace(**{**vars(args), "task": task})
        settings = {f"ours {task}{suffix}": kw for suffix, kw in ours_variants(args)}
        named = [(name, _base_spec(sub, builder=TRAIN, genotype=args.genotype, flops=plan["flops"], **kw))
                 for name, kw in settings.items()]
        t_name = f"textbook {task}"
        named.insert(1, (t_name, _base_spec(sub, builder=TRAIN_TEXTBOOK, genotype=args.genotype)))
        results = measure(named, args.warmup, args.reps)
        config = (f"{args.genotype}, {task}, width {args.width}, depth {args.depth}, batch {args.batch}, "
                  f"{args.size}x{args.size}, {args.device}")
        group = {name: row("train", name, config, results[name], args.batch * args.steps,
                           notes="NCHW fp32, DARTS train.py step" if name == t_name else "; ".join(filter(None, [
                               "no aux head",
                               _model_notes(results[name], _requested_channels_last(plan, "train", settings[name]))])))
                 for name, _ in named}
        textbook = group[t_name]
        shared_flops = next((results[n].get("step_flops") for n in settings if results[n].get("step_flops")), None)
        for name, r in group.items():
            if "rep_seconds" in r and "rep_seconds" in textbook:
                r["ratio"] = r["images_per_s"]["median"] / textbook["images_per_s"]["median"]
            flops = shared_flops if name == t_name else results[name].get("step_flops") or shared_flops
            dtype = "fp32" if name == t_name else ("bf16" if settings[name]["amp"] == "bf16" else "fp32")
            add_flops(r, flops, args.batch, plan["peak_tflops"][dtype])
        o_name = next(iter(settings))
        if "first_loss" in group[o_name] and "first_loss" in textbook:
            print(f"bench: first training loss ({task}) {o_name} {group[o_name]['first_loss']:.6f} textbook "
                  f"{textbook['first_loss']:.6f} (same weights and batch: equal up to float rounding in fp32)",
                  file=sys.stderr)
        rows += group.values()
    return rows


def plan_options(args, device_name: str) -> dict:
    """What the flags ask for: the requested memory formats (the builders decide what runs),
    the PC-DARTS row, FLOP counting and the peak FLOP/s."""
    flag = args.channels_last
    why = {True: "--channels-last", False: "--no-channels-last", None: "SEARCH.CHANNELS_LAST default"}[flag]
    plan = {"search_channels_last": bool(search_defaults().SEARCH.CHANNELS_LAST) if flag is None else flag,
            "search_channels_last_why": why,
            "train_channels_last": bool(train_defaults().CHANNELS_LAST) if flag is None else flag,
            "flops": args.flops or args.device.startswith("cuda"),
            "peak_tflops": peak_tflops(device_name, args.peak_tflops), "pc": None}
    if args.partial_channels > 1:
        k, edge = args.partial_channels, args.edge_norm is not False
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
    p.add_argument("--quick", action="store_true", help="smoke-run sizes: " + ", ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()) + " (explicit flags win)")
    g = p.add_argument_group("search and train")
    g.add_argument("--task", default="cls", help="task of the search section (train: --train-tasks)",
                   choices=("cls", "rot", "col", "jig", "inpaint", "superres", "simclr", "count", "splitbrain"))
    g.add_argument("--width", type=int, default=16)
    g.add_argument("--depth", type=int, default=8)
    g.add_argument("--batch", type=int, default=32)
    g.add_argument("--size", type=int, default=32, help="image side")
    g.add_argument("--order", default="first", choices=("first", "second"))
    g.add_argument("--partial-channels", type=int, default=4, metavar="K",
                   help="add a PC-DARTS row with SEARCH.PARTIAL_CHANNELS K (1 = no PC-DARTS row)")
    g.add_argument("--edge-norm", action=argparse.BooleanOptionalAction, default=None,
                   help="SEARCH.EDGE_NORM (PC-DARTS edge normalisation) in that row (default: on)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="request channels-last on/off for ours and retraining (SEARCH.CHANNELS_LAST, "
                   "CHANNELS_LAST; default: as the configs; bf16 on CPU runs NCHW regardless)")
    g.add_argument("--amp", default="none", choices=("none", "bf16"),
                   help="autocast for ours and retraining (SEARCH.AMP, AMP)")
    g.add_argument("--compile", default="none", choices=COMPILE_MODES,
                   help="torch.compile mode for ours and retraining (SEARCH.COMPILE, COMPILE); with --variants: the "
                   "mode of the compile variant (default: default)")
    g.add_argument("--variants", default="",
                   help="comma-separated settings of ours, one row each, instead of --amp/--channels-last: "
                   f"{', '.join(VARIANTS)}, or gpu = all four (the GPU path: fp32 NCHW, fp32 channels-last, "
                   "bf16 channels-last, bf16 channels-last + torch.compile)")
    g.add_argument("--flops", action="store_true", help="count nominal FLOPs (always on CUDA)")
    g.add_argument("--peak-tflops", type=float, help="device peak for the FLOP/s fraction")
    g.add_argument("--sweep", action="store_true", help="search over batch/width/image-size values (slow)")
    g.add_argument("--genotype", default="DARTS_V2", help="retrained genotype (zoo name or file)")
    g.add_argument("--train-tasks", default=",".join(TRAIN_TASKS),
                   help="comma-separated tasks of the train section, each ours vs the textbook network "
                   f"(of {', '.join(TRAIN_TASKS)}; default all)")
    g = p.add_argument_group("data")
    g.add_argument("--images", type=int, default=64, help="images per make_batch call")
    g.add_argument("--ref-images", type=int, default=16, help="images for the per-image colorization reference")
    g.add_argument("--col-size", type=int, default=224, help="colorization image side")
    g.add_argument("--jig-size", type=int, default=255, help="image side of the jig G 3 row (0 = skip)")
    args = p.parse_args(argv)
    if args.quick:   # the quick sizes as defaults, so that flags given explicitly still win
        p.set_defaults(**QUICK)
        args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.sections) - {"search", "data", "train"}
    if unknown:
        p.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}; use search, data, train")
    args.train_tasks = [t.strip() for t in args.train_tasks.split(",") if t.strip()]
    bad = set(args.train_tasks) - set(TRAIN_TASKS)
    if bad or not args.train_tasks:
        p.error(f"--train-tasks: use some of {', '.join(TRAIN_TASKS)} (the textbook network's classifiers)")
    if args.reps < 1 or args.warmup < 0 or args.steps < 1:
        p.error("need --reps >= 1, --warmup >= 0, --steps >= 1")
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    args.variants = list(VARIANTS) if names == ["gpu"] else names
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad:
        p.error(f"--variants: unknown {', '.join(bad)}; use some of {', '.join(VARIANTS)}, or gpu")
    if args.variants and (args.amp != "none" or args.channels_last is not None):
        p.error("--variants sets autocast and the memory format of each row; drop --amp/--channels-last")
    return args


def variant_lines(rows: list[dict], variants: list[str]) -> list[str]:
    """With ``--variants``: per section and configuration, each variant's images/s, peak memory (CUDA
    on a GPU, else RSS over the model) and fraction of peak, and both against the first variant's
    (its row gains ``vs_first_variant``)."""
    out = []
    if not variants:
        return out
    for r in rows:
        name = r["name"]
        variant = next((v for v in variants if name.endswith(" " + v)), None)
        if variant is None or "images_per_s" not in r:
            continue
        base = next((b for b in rows if b["section"] == r["section"] and b["config"] == r["config"]
                     and b["name"] == name[:-len(variant)] + variants[0] and "images_per_s" in b), None)
        mem_key = "peak_cuda_delta_mib" if "peak_cuda_delta_mib" in r else "peak_rss_delta_mib"
        speed = r["images_per_s"]["median"] / base["images_per_s"]["median"] if base else None
        memory = r[mem_key] / base[mem_key] if base and base.get(mem_key) else None
        r["vs_first_variant"] = {"variant": variants[0], "speed": speed, "memory": memory}
        fraction = r.get("peak_fraction")
        out.append(f"variant {r['section']} {name}: {r['images_per_s']['median']:.1f} images/s"
                   + (f" ({speed:.2f}x {variants[0]})" if speed else "")
                   + f", peak {'CUDA' if mem_key.startswith('peak_cuda') else 'RSS'} {r[mem_key]:.0f} MiB over the model"
                   + (f" ({memory:.2f}x)" if memory else "")
                   + (f", {100 * fraction:.1f}% of peak" if fraction is not None else
                      (", fraction of peak unknown" if "tflops" in r else "")))
    return out


def cuda_problem(device: str) -> str | None:
    """Why ``--device`` cannot run here (one line), or None."""
    if not device.startswith("cuda"):
        return None if device == "cpu" else f"--device must be cpu, cuda or cuda:N, got {device!r}"
    if not torch.cuda.is_available():
        build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        return (f"--device {device} needs a CUDA GPU, and torch {torch.__version__} ({build}) sees none here "
                "(torch.cuda.is_available() is False); run it on a machine with a GPU, or use --device cpu")
    index = torch.device(device).index
    if index is not None and index >= torch.cuda.device_count():
        return f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible here"
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    problem = cuda_problem(args.device)
    if problem:
        print(f"bench.py: {problem}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    name = device_name(args.device)
    plan = plan_options(args, name)
    t_start = time.time()
    meta = {"command": shlex.join([sys.executable, *sys.argv]), "torch": torch.__version__,
            "python": platform.python_version(), "cpu_count": os.cpu_count(), "threads": args.threads,
            "device": args.device, "device_name": name, "loadavg_start": os.getloadavg(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "warmup": args.warmup, "reps": args.reps,
            "steps_per_rep": args.steps, "plan": plan, "variants": {v: VARIANTS[v] for v in args.variants}}
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
    print(f"\n{name}, torch {torch.__version__}, {threads_label(args.threads)}, {args.warmup} warm-up + {args.reps} "
          f"reps of {args.steps} step(s), {meta['total_seconds']:.0f} s. Search images/s = batch / (arch step + "
          "weight step). Data rows time target construction only; loader throughput: benchmarks/bench_data.py "
          "(docs/benchmarks.md).")
    for r in rows:
        if r["ratio"] is not None and not r["name"].startswith("textbook"):
            versus = "per-image reference" if r["section"] == "data" else "textbook"
            print(f"ratio {r['name']} / {versus} ({r['config']}): {r['ratio']:.2f}x")
    for line in variant_lines(rows, args.variants):
        print(line)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
