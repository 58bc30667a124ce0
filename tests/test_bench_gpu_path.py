"""tools/bench.py's GPU path without a GPU: --variants parsing, the peak FLOP/s table, the one-line
refusal of --device cuda on a CPU-only machine, and a --variants run on the CPU (aot_eager backend)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import bench  # noqa: E402
sys.path.pop(0)

from benchmarks.report import peak_tflops  # noqa: E402


def test_variants_name_the_gpu_path_rows():
    args = bench.parse_args(["--variants", "gpu"])
    assert args.variants == ["fp32-nchw", "fp32-cl", "bf16-cl", "bf16-cl-compile"]
    rows = dict(bench.ours_variants(args))
    assert rows[" bf16-cl-compile"] == {"amp": "bf16", "channels_last": True, "compile": "default"}
    assert rows[" fp32-nchw"] == {"amp": "none", "channels_last": False, "compile": "none"}
    args = bench.parse_args(["--variants", "bf16-cl-compile", "--compile", "reduce-overhead"])
    assert bench.ours_variants(args) == [(" bf16-cl-compile", {"amp": "bf16", "channels_last": True,
                                                                "compile": "reduce-overhead"})]
    assert bench.ours_variants(bench.parse_args([])) == [("", {"amp": "none", "channels_last": None, "compile": "none"})]
    for argv in (["--variants", "fp8"], ["--variants", "gpu", "--amp", "bf16"]):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)


def test_peak_table_by_device_name():
    assert peak_tflops("NVIDIA H100 80GB HBM3")["bf16"] == 989.4            # SXM
    assert peak_tflops("NVIDIA H100 PCIe")["bf16"] == 756.0
    assert peak_tflops("NVIDIA H200")["part"] == "H200"
    assert peak_tflops("NVIDIA A100-SXM4-80GB")["bf16"] == 312.0
    expected_fp32 = 494.7 if torch.backends.cudnn.allow_tf32 else 66.9
    assert peak_tflops("NVIDIA H100 80GB HBM3")["fp32"] == expected_fp32
    unknown = peak_tflops("NVIDIA GeForce RTX 4090")
    assert unknown["bf16"] is None and unknown["part"] is None
    assert peak_tflops("anything", 100.0)["fp32"] == 100.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_a_gpu_is_one_line(run_cli):
    rc, out, err = run_cli(bench.main, ["--device", "cuda", "--only", "train"])
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--device cuda needs a CUDA GPU" in lines[0] and "--device cpu" in lines[0]


def test_variant_rows_on_the_cpu(tmp_path):
    """Two GPU-path rows of the train section at tiny sizes on the CPU, the compiled one through the
    aot_eager backend: both run, the compiled row says so, FLOPs are counted for both."""
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "tools" / "bench.py"), "--only", "train", "--train-tasks", "cls", "--variants",
           "fp32-nchw,bf16-cl-compile", "--flops", "--threads", "1", "--warmup", "1", "--reps", "1",
           "--width", "4", "--depth", "3", "--batch", "2", "--size", "16", "--json", str(out)]
    env = {**os.environ, "UNNAS_CACHE": str(tmp_path / "cache"), "UNNAS_COMPILE_BACKEND": "aot_eager"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    plain, compiled = rows["ours cls fp32-nchw"], rows["ours cls bf16-cl-compile"]
    assert "error" not in plain and "error" not in compiled, compiled["notes"]
    assert "torch.compile default" in compiled["notes"] and compiled["autocast"] == "bf16"
    assert plain["step_flops"] == compiled["step_flops"] > 0
    assert compiled["vs_first_variant"]["variant"] == "fp32-nchw" and compiled["vs_first_variant"]["speed"] > 0
    assert "variant train ours cls bf16-cl-compile:" in proc.stdout
