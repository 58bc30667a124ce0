"""Rank-correlation analysis of a study (the paper's Fig. 2 numbers).

Per architecture and task, the metric (``best``: the best evaluated epoch's test metric, as the
paper's ``min_test_top1``; or ``final``) is averaged over the seeds present. For each task against
the supervised reference: Spearman rho, Kendall tau (tau-b) and Pearson r over the architectures
present for both (the intersection), with seeded percentile-bootstrap 95% intervals over
architectures. Also: a task-vs-task Spearman matrix, and, for a task with >= 2 seeds, the mean
Spearman rho between its seeds (the noise ceiling: two runs of the same task agree this well).

Outputs in ``RUN_DIR/analysis/``: ``correlations.{md,csv,json}``, ``task_matrix.csv``,
``archs.csv`` (per-architecture means), ``scatter.png`` (x = supervised accuracy, one panel per
task, rho in the legend, a robust Theil-Sen regression line).
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from unnas.config import ConfigError

from .archs import Arch, genotype_key, parse_genotype_key


# ---- statistics ----------------------------------------------------------------------------------
def _corr(kind: str, x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    if kind == "spearman":
        return float(stats.spearmanr(x, y)[0])
    if kind == "kendall":
        return float(stats.kendalltau(x, y)[0])
    if kind == "pearson":
        return float(stats.pearsonr(x, y)[0])
    raise ValueError(kind)


KINDS = ("spearman", "kendall", "pearson")


def correlations(x: Sequence[float], y: Sequence[float], n_boot: int = 1000, seed: int = 0) -> dict:
    """rho, tau, r with bootstrap 95% percentile intervals (resampling pairs); NaN when undefined."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    out = {"n": int(len(x))}
    for k in KINDS:
        out[k] = _corr(k, x, y)
    if n_boot and len(x) >= 3:
        rng = np.random.default_rng(seed)
        boots = {k: np.empty(n_boot) for k in KINDS}
        idx = rng.integers(0, len(x), size=(n_boot, len(x)))
        for b in range(n_boot):
            xb, yb = x[idx[b]], y[idx[b]]
            for k in KINDS:
                boots[k][b] = _corr(k, xb, yb)
        for k in KINDS:
            v = boots[k][np.isfinite(boots[k])]
            out[f"{k}_ci"] = [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if len(v) else [math.nan, math.nan]
    else:
        for k in KINDS:
            out[f"{k}_ci"] = [math.nan, math.nan]
    return out


# ---- data ----------------------------------------------------------------------------------------
def per_arch(results: Sequence[dict], metric: str = "best") -> tuple[dict, dict]:
    """From store rows: ({task: {arch: mean over seeds}}, {task: {seed: {arch: value}}})."""
    by_seed: dict = {}
    for r in results:
        v = r.get(metric)
        if v is None or not math.isfinite(v):
            continue
        by_seed.setdefault(r["task"], {}).setdefault(r["seed"], {})[r["arch_id"]] = float(v)
    means = {}
    for task, seeds in by_seed.items():
        acc: dict = {}
        for vals in seeds.values():
            for a, v in vals.items():
                acc.setdefault(a, []).append(v)
        means[task] = {a: float(np.mean(v)) for a, v in acc.items()}
    return means, by_seed


_KEY_COLS = ("arch_id", "id", "arch", "genotype", "key")
_VAL_COLS = ("acc", "accuracy", "top1", "test_top1", "value", "best", "min_test_top1", "top1_err", "error")


def _to_acc(col: str, v) -> float:
    v = float(v)
    return 100.0 - v if col in ("min_test_top1", "top1_err", "error") else v


def load_table(path: str | Path, archs: Sequence[Arch]) -> dict[str, float]:
    """A supervised table -> {arch_id: accuracy}. Keys may be arch ids or genotypes (JSON, DARTS repr,
    or the release's ``str(normal + reduce + normal_concat + reduce_concat)``); error columns
    (``min_test_top1``, ``top1_err``, ``error``) are turned into accuracy (100 - error)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"supervised table {path} not found")
    text = path.read_text()
    rows: list[tuple[str, float]] = []
    try:
        if path.suffix.lower() == ".csv":
            reader = csv.DictReader(io.StringIO(text))
            cols = [c.strip().lower() for c in (reader.fieldnames or [])]
            kc = next((c for c in _KEY_COLS if c in cols), None)
            vc = next((c for c in _VAL_COLS if c in cols), None)
            if kc is None or vc is None:
                raise ConfigError(f"{path}: CSV needs a key column ({'/'.join(_KEY_COLS)}) and a value column "
                                  f"({'/'.join(_VAL_COLS)}); got {cols}")
            for rec in reader:
                rec = {k.strip().lower(): v for k, v in rec.items() if k}
                rows.append((rec[kc].strip(), _to_acc(vc, rec[vc])))
        else:
            obj = json.loads(text)
            if isinstance(obj, dict) and isinstance(obj.get("job_summaries"), list):   # release sweep_summary.json
                for js in obj["job_summaries"]:
                    g = js["net"]["genotype"]
                    v = js["min_test_top1"]
                    v = v[-1] if isinstance(v, list) else v
                    rows.append((json.dumps(g), 100.0 - float(v)))
            elif isinstance(obj, dict):
                obj = obj.get("archs", obj)
            if isinstance(obj, dict) and not rows:
                rows = [(str(k), float(v)) for k, v in obj.items()]
            elif isinstance(obj, list):
                for e in obj:
                    kc = next((c for c in _KEY_COLS if c in e), None)
                    vc = next((c for c in _VAL_COLS if c in e), None)
                    if kc is None or vc is None:
                        raise ConfigError(f"{path}: each entry needs a key ({'/'.join(_KEY_COLS)}) and a value "
                                          f"({'/'.join(_VAL_COLS)})")
                    k = e[kc] if isinstance(e[kc], str) else json.dumps(e[kc])
                    rows.append((k, _to_acc(vc, e[vc])))
    except (ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"cannot read supervised table {path}: {' '.join(str(exc).split())}") from None
    ids = {a.id: a.id for a in archs}
    by_geno = {genotype_key(a.genotype): a.id for a in archs}
    out: dict[str, float] = {}
    for k, v in rows:
        if k in ids:
            out[ids[k]] = v
            continue
        g = parse_genotype_key(k)
        if g is not None and genotype_key(g) in by_geno:
            out[by_geno[genotype_key(g)]] = v
    if not out:
        raise ConfigError(f"supervised table {path}: none of its {len(rows)} keys matches an architecture of the "
                          "study (by id or genotype)")
    return out


# ---- analysis ------------------------------------------------------------------------------------
def analyze_values(means: Mapping[str, Mapping[str, float]], by_seed: Mapping, reference: str,
                   n_boot: int = 1000, seed: int = 0) -> dict:
    if reference not in means:
        raise ConfigError(f"no results for the supervised reference {reference!r}; train it (STUDY.TASKS) or "
                          "pass --supervised-table")
    ref = means[reference]
    tasks = [t for t in means if t != reference]
    rows = []
    for t in tasks:
        common = sorted(set(ref) & set(means[t]))
        x = [ref[a] for a in common]
        y = [means[t][a] for a in common]
        rows.append({"task": t, "reference": reference, **correlations(x, y, n_boot, seed),
                     "seeds": len(by_seed.get(t, {})), "mean": float(np.mean(y)) if y else math.nan})
    all_tasks = [reference] + tasks
    matrix = {}
    for a in all_tasks:
        matrix[a] = {}
        for b in all_tasks:
            common = sorted(set(means[a]) & set(means[b]))
            matrix[a][b] = _corr("spearman", np.array([means[a][k] for k in common]),
                                 np.array([means[b][k] for k in common]))
    ceiling = {}
    for t, seeds in by_seed.items():
        if len(seeds) < 2:
            continue
        keys = sorted(seeds)
        pairs = []
        for i in range(len(keys)):
            for j in range(i + 1, len(keys)):
                common = sorted(set(seeds[keys[i]]) & set(seeds[keys[j]]))
                r = _corr("spearman", np.array([seeds[keys[i]][a] for a in common]),
                          np.array([seeds[keys[j]][a] for a in common]))
                pairs.append({"seeds": [keys[i], keys[j]], "n": len(common), "spearman": r})
        vals = [p["spearman"] for p in pairs if math.isfinite(p["spearman"])]
        ceiling[t] = {"mean_spearman": float(np.mean(vals)) if vals else math.nan, "pairs": pairs}
    return {"reference": reference, "rows": rows, "matrix": matrix, "seed_ceiling": ceiling,
            "n_archs": {t: len(v) for t, v in means.items()}}


def _f(x, nd=2) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


def _ci(c) -> str:
    return f"[{_f(c[0])}, {_f(c[1])}]"


def format_table(summary: dict) -> str:
    """The main table in Markdown."""
    ref = summary["reference"]
    ceil = summary["seed_ceiling"]
    lines = [f"| task vs {ref} | archs | seeds | Spearman ρ (95% CI) | Kendall τ (95% CI) | Pearson r (95% CI) | seed-seed ρ |",
             "|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        c = ceil.get(r["task"], {}).get("mean_spearman")
        lines.append(f"| {r['task']} | {r['n']} | {r['seeds']} | {_f(r['spearman'])} {_ci(r['spearman_ci'])} | "
                     f"{_f(r['kendall'])} {_ci(r['kendall_ci'])} | {_f(r['pearson'])} {_ci(r['pearson_ci'])} | "
                     f"{_f(c) if c is not None else '-'} |")
    if ref in ceil:
        lines.append(f"\nSeed-to-seed ρ of the reference {ref}: {_f(ceil[ref]['mean_spearman'])}.")
    tasks = list(summary["matrix"])
    lines += ["", "Spearman ρ between tasks:", "", "| | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for a in tasks:
        lines.append(f"| {a} | " + " | ".join(_f(summary["matrix"][a][b]) for b in tasks) + " |")
    return "\n".join(lines) + "\n"


def _csv(summary: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["task", "reference", "n_archs", "seeds", "spearman", "spearman_lo", "spearman_hi", "kendall",
                "kendall_lo", "kendall_hi", "pearson", "pearson_lo", "pearson_hi", "seed_seed_spearman"])
    for r in summary["rows"]:
        c = summary["seed_ceiling"].get(r["task"], {}).get("mean_spearman", "")
        w.writerow([r["task"], r["reference"], r["n"], r["seeds"], r["spearman"], *r["spearman_ci"], r["kendall"],
                    *r["kendall_ci"], r["pearson"], *r["pearson_ci"], c])
    return buf.getvalue()


def scatter_plot(means: Mapping, summary: dict, path: Path, metric_names: Mapping[str, str] | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = summary["reference"]
    rows = summary["rows"]
    if not rows:
        return
    colours = plt.get_cmap("Set2").colors
    fig, axes = plt.subplots(1, len(rows), figsize=(5.2 * len(rows), 4.4), squeeze=False)
    for k, (ax, r) in enumerate(zip(axes[0], rows)):
        t = r["task"]
        common = sorted(set(means[ref]) & set(means[t]))
        x = np.array([means[ref][a] for a in common])
        y = np.array([means[t][a] for a in common])
        ax.scatter(x, y, alpha=0.5, color=colours[k % len(colours)], edgecolor="none",
                   label=f"ρ = {_f(r['spearman'])} (n = {len(common)})")
        if len(x) >= 2 and not np.all(x == x[0]):
            slope, intercept, _, _ = stats.theilslopes(y, x)
            xs = np.linspace(x.min(), x.max(), 50)
            ax.plot(xs, intercept + slope * xs, color=colours[k % len(colours)], lw=2)
        names = metric_names or {}
        ax.set_xlabel(f"{ref} accuracy (%)" if ref not in names else names[ref])
        ax.set_ylabel(f"{t} accuracy (%)" if t not in names else names[t])
        ax.set_title(f"{t} vs {ref}")
        ax.legend(loc="lower right", fontsize=11)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def analyze_run(run_dir, reference: str = "cls", metric: str = "best", supervised_table: str | None = None,
                n_boot: int = 1000, seed: int = 0, out_dir=None) -> dict:
    """Analyse the done jobs of ``run_dir`` and write the outputs; returns the summary."""
    from unnas.utils.io import atomic_write_text

    from .runner import open_store, store_path

    run_dir = Path(run_dir)
    if not store_path(run_dir).is_file():
        raise ConfigError(f"{run_dir} holds no study (no {store_path(run_dir).name}); run a study there first")
    store = open_store(run_dir)
    try:
        results = store.results()
        archs = store.archs()
        counts = store.counts()
    finally:
        store.close()
    means, by_seed = per_arch(results, metric)
    if supervised_table:
        table = load_table(supervised_table, archs)
        if reference in means:   # trained reference kept as one more task
            means[f"{reference}(trained)"] = means.pop(reference)
            by_seed[f"{reference}(trained)"] = by_seed.pop(reference)
        means[reference] = table
        by_seed[reference] = {0: table}
    if not means:
        raise ConfigError(f"{run_dir}: no finished jobs yet ({counts['done']}/{counts['total']} done)")
    summary = analyze_values(means, by_seed, reference, n_boot, seed)
    summary.update({"metric": metric, "jobs": counts, "supervised_table": supervised_table or None,
                    "bootstrap": {"resamples": n_boot, "seed": seed}})
    out = Path(out_dir) if out_dir else run_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    table_md = format_table(summary)
    atomic_write_text(out / "correlations.md", table_md)
    atomic_write_text(out / "correlations.csv", _csv(summary))
    atomic_write_text(out / "correlations.json", json.dumps(summary, indent=1, default=str) + "\n")
    tasks = list(summary["matrix"])
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([""] + tasks)
    for a in tasks:
        w.writerow([a] + [summary["matrix"][a][b] for b in tasks])
    atomic_write_text(out / "task_matrix.csv", buf.getvalue())
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["arch_id"] + tasks)
    for a in sorted({k for v in means.values() for k in v}):
        w.writerow([a] + [means[t].get(a, "") for t in tasks])
    atomic_write_text(out / "archs.csv", buf.getvalue())
    scatter_plot(means, summary, out / "scatter.png")
    summary["table_md"] = table_md
    summary["out_dir"] = str(out)
    return summary
