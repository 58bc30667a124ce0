"""Rows, summaries, the Markdown table and the nominal FLOP count of ``tools/bench.py``'s report.

A row is one (section, model, configuration): median / min / max / IQR images per second over the
timed repetitions, every repetition's seconds, the peak memory (RSS, and CUDA on a GPU) and, where
counted, the nominal FLOP/s and the fraction of the device's peak.

Nominal FLOPs of a step: 2 x fvcore multiply-adds of one forward x 3 (forward + backward) x passes
(search: 2 per first-order step, 5 per second-order step; retraining: 1), the same count for every
implementation; the fraction of peak uses ``--peak-tflops`` or :data:`PEAK_TFLOPS` (bf16, or TF32
for fp32 since PyTorch runs fp32 convolutions in TF32 by default; "unknown" for other devices).
"""
from __future__ import annotations

import copy
import statistics
import sys
import warnings

import torch

# Dense (no 2:4 sparsity) peak TFLOP/s from NVIDIA's data sheets, by a substring of
# torch.cuda.get_device_name (the first match wins, so the specific parts come first): bf16 and TF32
# tensor cores, and fp32 without tensor cores. SXM H100s name themselves "H100 80GB HBM3".
PEAK_TFLOPS = {"H100 PCIe": {"bf16": 756.0, "tf32": 378.0, "fp32": 51.2},
               "H100 NVL": {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0},
               "H200 NVL": {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0},
               "H100": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},     # SXM5
               "H200": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},     # SXM
               "A100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}}     # SXM4 and PCIe alike


def peak_tflops(device_name: str, override: float | None = None) -> dict:
    """{"bf16": TFLOP/s or None, "fp32": ..., "part": the table's entry or None}: the peak of each
    compute dtype on the device (``override`` for both when given). fp32 rows are held against the
    TF32 tensor-core peak while cuDNN may use TF32 for fp32 convolutions (PyTorch's default,
    ``torch.backends.cudnn.allow_tf32``), else against the plain fp32 peak."""
    if override:
        return {"bf16": override, "fp32": override, "part": "--peak-tflops", "fp32_basis": "given"}
    part = next((k for k in PEAK_TFLOPS if k.lower() in device_name.lower()), None)
    if part is None:
        return {"bf16": None, "fp32": None, "part": None, "fp32_basis": "unknown"}
    basis = "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"
    return {"bf16": PEAK_TFLOPS[part]["bf16"], "fp32": PEAK_TFLOPS[part][basis], "part": part, "fp32_basis": basis}


def summary(seconds: list, images: int) -> dict:
    ips = [images / s for s in seconds]
    q = statistics.quantiles(ips, n=4) if len(ips) > 1 else [ips[0]] * 3
    return {"median": statistics.median(ips), "min": min(ips), "max": max(ips), "iqr": q[2] - q[0]}


def row(section: str, name: str, config: str, result: dict, images_per_rep: int, notes: str = "") -> dict:
    """A table/JSON row from a child's result (``images_per_rep``: images one repetition processes)."""
    out = {"section": section, "name": name, "config": config, "ratio": None, "notes": notes}
    if "error" in result:
        out.update(error=result["error"], notes=f"FAILED: {result['error']}")
        return out
    seconds = [r["seconds"] for r in result["reps"]]
    base, peak = result["info"]["baseline"], result["peak"]
    out.update(images_per_rep=images_per_rep, rep_seconds=seconds, warmup_seconds=[r["seconds"] for r in result["warmup"]],
               first_loss=(result["warmup"] or result["reps"])[0]["loss"],
               images_per_s=summary(seconds, images_per_rep), params=result["info"].get("params"),
               build_seconds=result["info"]["build_seconds"],
               peak_rss_mib=peak["rss_kib"] / 1024, peak_rss_delta_mib=(peak["rss_kib"] - base["rss_kib"]) / 1024)
    out.update({k: result["info"][k] for k in ("channels_last", "autocast") if k in result["info"]})  # as run
    if "cuda_bytes" in peak:
        out.update(peak_cuda_mib=peak["cuda_bytes"] / 2 ** 20,
                   peak_cuda_delta_mib=(peak["cuda_bytes"] - base["cuda_bytes"]) / 2 ** 20)
    if result["info"].get("warning"):
        out["notes"] = "; ".join(filter(None, (notes, result["info"]["warning"])))
    return out


def data_row(name: str, config: str, warm: list, seconds: list, images: int, notes: str = "", **extra) -> dict:
    """A row of the in-process data section."""
    return {"section": "data", "name": name, "config": config, "images_per_rep": images, "rep_seconds": seconds,
            "warmup_seconds": warm, "images_per_s": summary(seconds, images), "ratio": None, "notes": notes, **extra}


def nominal_flops(model, weights, x, batch: int, per_sample: int, passes: int) -> float | None:
    """2 x fvcore MACs of one forward x 3 (forward + backward) x passes; counted on one source
    image's inputs and scaled to the batch, so the count costs little memory. ``weights``: the
    supernet's architecture weights (None for a fixed network)."""
    if getattr(model, "_compiled_call_impl", None) is not None:   # COMPILE: trace an eager copy (same MACs)
        model = copy.deepcopy(model)
        model._compiled_call_impl = None

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


def add_flops(r: dict, flops: float | None, batch: int, peak: float | None) -> None:
    """Achieved nominal FLOP/s (and the fraction of ``peak`` TFLOP/s) from a row's median."""
    if not flops or "rep_seconds" not in r:
        return
    r["step_flops"] = flops
    r["tflops"] = flops * r["images_per_s"]["median"] / batch / 1e12
    note = f"{r['tflops']:.2f} TFLOP/s nominal" if r["tflops"] >= 1 else f"{r['tflops'] * 1e3:.2f} GFLOP/s nominal"
    r["peak_fraction"] = r["tflops"] / peak if peak else None
    note += f" = {100 * r['peak_fraction']:.1f}% of {peak:g}" if peak else ", fraction of peak unknown (no peak for this device)"
    r["notes"] = "; ".join(filter(None, (r["notes"], note)))


def threads_label(n: int) -> str:
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
