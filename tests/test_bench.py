"""tools/bench.py end to end on a tiny configuration (one run of the script, all three sections)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_tiny_run(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "tools" / "bench.py"), "--json", str(out), "--threads", "1",
           "--warmup", "0", "--reps", "1",
           "--width", "4", "--depth", "3", "--batch", "2", "--size", "16", "--partial-channels", "1",
           "--images", "2", "--ref-images", "1", "--col-size", "16", "--jig-size", "0",
           "--train-tasks", "cls"]
    env = {**os.environ, "UNNAS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| search | ours |" in proc.stdout and "ratio ours / textbook" in proc.stdout

    report = json.loads(out.read_text())
    assert report["meta"]["threads"] == 1 and report["meta"]["torch"]
    rows = {(r["section"], r["name"]): r for r in report["rows"]}
    ours, textbook = rows[("search", "ours")], rows[("search", "textbook")]
    train, train_textbook = rows[("train", "ours cls")], rows[("train", "textbook cls")]
    for r in (ours, textbook, train, train_textbook):
        assert "error" not in r, r["notes"]
        assert r["images_per_s"]["median"] > 0 and len(r["rep_seconds"]) == 1
        assert r["peak_rss_mib"] >= r["peak_rss_delta_mib"] >= 0
    assert ours["ratio"] > 0 and textbook["ratio"] == 1.0
    # same trunk, head and alphas on the same batch: the first architecture losses agree
    assert abs(ours["first_loss"] - textbook["first_loss"]) < 1e-4, textbook["notes"]
    # retraining: our fixed network and the textbook network from the same weights on the same batch
    assert train["ratio"] > 0 and train_textbook["ratio"] == 1.0 and "ratio ours cls / textbook" in proc.stdout
    assert abs(train["first_loss"] - train_textbook["first_loss"]) < 1e-4

    col = rows[("data", "col ours")]
    assert col["ratio"] > 0 and rows[("data", "col reference")]["target_agreement"] > 0.99
    assert rows[("data", "rot")]["images_per_s"]["median"] > 0
    assert rows[("data", "jig")]["images_per_s"]["median"] > 0
    for name in ("inpaint", "superres", "simclr", "count", "splitbrain"):   # issue 15's tasks
        assert rows[("data", name)]["images_per_s"]["median"] > 0
