"""Rank-correlation analysis of a study (the paper's Fig. 2 numbers).

Per architecture and task, the metric (``best``: the best evaluated epoch's test metric, as the
paper's ``min_test_top1``; or ``final``) is averaged over the seeds present. For each task against
the supervised reference: Spearman rho, Kendall tau (tau-b) and Pearson r over the architectures
present for both (the intersection), with seeded paired-bootstrap 95% intervals over
architectures (``scipy.stats.bootstrap``: BCa, percentile where BCa cannot be computed; NaN and a
logged warning where the data cannot support an interval, see :func:`correlations`), and a flag
for saturated tasks (see :func:`saturation`). Also: a task-vs-task Spearman matrix, and, for a task
with >= 2 seeds, the mean Spearman rho between its seeds (the noise ceiling: two runs of the same
task agree this well). Training-free baselines (``params``, ``macs`` of each network,
:mod:`unnas.study.baselines`) and zero-cost proxies (:mod:`unnas.study.proxy_study`) get rows of
their own (``baseline`` True; ``kind`` baseline or proxy), every row says whether its Spearman
interval lies above the ``params`` baseline's (:func:`beats`), and the random experiment of the
paper's Fig. 5 (:mod:`unnas.study.randexp`) runs on every task, baseline, proxy and the reference
(the oracle).

Outputs in ``RUN_DIR/analysis/`` (``analysis_final/`` for the ``final`` metric,
``analysis_ref_<study>_<task>/`` against another study's reference, see :func:`analysis_dirname`):
``correlations.{md,csv,json}``, ``task_matrix.csv`` (tasks, baselines and proxies), ``archs.csv``
(per-architecture means, baselines and proxies), ``scatter.png`` (x = supervised accuracy, one panel
per task, baseline and proxy, rho in the legend, a robust Theil-Sen regression line),
``randexp.{csv,png}``.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from unnas.config import ConfigError

from .archs import Arch, genotype_key, parse_genotype_key

log = logging.getLogger("unnas.study")


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
MIN_ARCHS_CI = 5             # fewer architectures than this: no bootstrap interval (n/a)
SATURATION_POINTS = 0.5      # "within a hair of the best": this many points of the metric (percent)
SATURATION_FRACTION = 0.75   # ... for at least this fraction of the architectures
_KENDALL_MATRIX_N = 100      # up to this many archs, Kendall's tau of all resamples at once from sign matrices
_BATCH_CELLS = 4_000_000     # resamples x n x n sign-matrix entries per batch (a memory bound)


def _pearson_last(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(-1) / np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
    return np.clip(r, -1.0, 1.0)


def _three(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """(Spearman rho, Kendall tau-b, Pearson r) along ``axis``, vectorised over the other axes (the
    bootstrap's resamples); NaN where a resample's x or y is constant (the correlation is undefined)."""
    x, y = np.moveaxis(np.asarray(x, float), axis, -1), np.moveaxis(np.asarray(y, float), axis, -1)
    undefined = (np.ptp(x, axis=-1) == 0) | (np.ptp(y, axis=-1) == 0)
    rho = _pearson_last(stats.rankdata(x, axis=-1), stats.rankdata(y, axis=-1))
    if x.shape[-1] <= _KENDALL_MATRIX_N:   # tau-b from the pairs' sign matrices: fast for small n
        sx = np.sign(x[..., :, None] - x[..., None, :])
        sy = np.sign(y[..., :, None] - y[..., None, :])
        with np.errstate(invalid="ignore", divide="ignore"):
            tau = (sx * sy).sum((-2, -1)) / np.sqrt((sx * sx).sum((-2, -1)) * (sy * sy).sum((-2, -1)))
    else:                                  # O(n log n) per resample
        xf, yf = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
        with np.errstate(invalid="ignore", divide="ignore"):
            tau = np.array([stats.kendalltau(a, b)[0] for a, b in zip(xf, yf)]).reshape(x.shape[:-1])
    out = np.stack([rho, np.clip(tau, -1.0, 1.0), _pearson_last(x, y)])
    out[:, undefined] = np.nan
    return out


def correlations(x: Sequence[float], y: Sequence[float], n_boot: int = 1000, seed: int = 0) -> dict:
    """rho, tau, r with paired bootstrap 95% intervals over architectures; NaN when undefined.

    Intervals come from ``scipy.stats.bootstrap`` (``paired=True``, ``n_boot`` resamples, the
    generator seeded with ``seed``): BCa, or the percentile interval of the same resamples where
    BCa cannot be computed (``ci_method[kind]`` says which). No interval (NaN, and ``ci_note``
    says why) when the data cannot support one: fewer than :data:`MIN_ARCHS_CI` architectures,
    constant accuracies, resamples whose correlation is undefined (all of a resample's archs tie),
    or a bootstrap distribution with a single value (a zero-width interval would claim certainty).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = int(len(x))
    out: dict = {"n": n}
    for k in KINDS:
        out[k] = _corr(k, x, y)
    for k in KINDS:
        out[f"{k}_ci"] = [math.nan, math.nan]
    methods: dict = {k: None for k in KINDS}
    note = None
    if not n_boot:
        note = "bootstrap off (0 resamples)"
    elif n < MIN_ARCHS_CI:
        note = f"too few architectures ({n} < {MIN_ARCHS_CI})"
    elif np.ptp(x) == 0 or np.ptp(y) == 0:
        note = "constant accuracies (" + ("reference" if np.ptp(x) == 0 else "task") + ")"
    else:
        note = _bootstrap_into(out, methods, x, y, int(n_boot), seed)
    out["ci_method"] = methods
    out["ci_note"] = note
    return out


def _bootstrap_into(out: dict, methods: dict, x: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> str | None:
    """Fill ``out[kind_ci]`` from ``scipy.stats.bootstrap``; returns why an interval is missing (or None)."""
    import warnings

    batch = max(1, _BATCH_CELLS // (len(x) * len(x)))
    kw = dict(paired=True, vectorized=True, batch=batch, confidence_level=0.95)
    with warnings.catch_warnings():   # BCa's DegenerateDataWarning and NaN arithmetic: handled below
        warnings.simplefilter("ignore")
        res = stats.bootstrap((x, y), _three, n_resamples=n_boot, method="BCa", rng=np.random.default_rng(seed), **kw)
        dist = res.bootstrap_distribution
        bad = int(np.isnan(dist).any(axis=0).sum())
        if bad:
            return (f"degenerate resamples ({bad} of {n_boot} draw only architectures with tied accuracies, "
                    "so their correlation is undefined)")
        lo, hi = np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high)
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            pct = stats.bootstrap((x, y), _three, n_resamples=0, method="percentile", bootstrap_result=res,
                                  rng=np.random.default_rng(seed), **kw)
            plo, phi = np.asarray(pct.confidence_interval.low), np.asarray(pct.confidence_interval.high)
    single = []
    for i, k in enumerate(KINDS):
        if np.ptp(dist[i]) == 0:
            single.append(k)
            continue
        if np.isfinite(lo[i]) and np.isfinite(hi[i]):
            out[f"{k}_ci"], methods[k] = [float(lo[i]), float(hi[i])], "BCa"
        else:
            out[f"{k}_ci"], methods[k] = [float(plo[i]), float(phi[i])], "percentile"
    if single:
        return f"every resample gives the same {'/'.join(single)} (no spread to make an interval from)"
    return None


def saturation(values: Mapping[str, float], seeds: Mapping | None = None) -> dict:
    """Whether a task's accuracies are saturated (too close together to rank architectures).

    Saturated when at least :data:`SATURATION_FRACTION` of the architectures score within
    :data:`SATURATION_POINTS` points of the best one, or, with >= 2 seeds, when the spread of the
    per-architecture means (their standard deviation) is below the seed noise of such a mean
    (the pooled within-architecture seed standard deviation / sqrt(mean seeds per architecture)).
    """
    v = np.array(list(values.values()), dtype=float)
    info: dict = {"saturated": False, "reason": None, "n": int(len(v))}
    if len(v) < 2:
        return info
    top = float(v.max())
    near = float(np.mean(top - v <= SATURATION_POINTS))
    spread = float(np.std(v, ddof=1))
    info.update({"max": top, "near_max_fraction": near, "spread": spread, "seed_noise": None})
    if seeds and len(seeds) >= 2:
        per_arch: dict = {}
        for vals in seeds.values():
            for a, x in vals.items():
                if a in values:
                    per_arch.setdefault(a, []).append(x)
        var = [np.var(xs, ddof=1) for xs in per_arch.values() if len(xs) >= 2]
        if var:
            k = float(np.mean([len(xs) for xs in per_arch.values()]))
            info["seed_noise"] = float(math.sqrt(np.mean(var)) / math.sqrt(k))
    reasons = []
    if near >= SATURATION_FRACTION:
        reasons.append(f"{near:.0%} of archs within {SATURATION_POINTS:g} points of the best {top:.2f}")
    if info["seed_noise"] is not None and spread < info["seed_noise"]:
        reasons.append(f"spread {spread:.2f} below the seed noise {info['seed_noise']:.2f}")
    if reasons:
        info["saturated"], info["reason"] = True, "; ".join(reasons)
    return info


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
BEATS_BASELINE = "params"   # the baseline every row is compared with (beats_params)


def beats(ci, other_ci) -> bool | None:
    """Whether an interval lies entirely above another (non-overlapping 95% intervals; None when
    either is n/a)."""
    lo, hi = ci[0], other_ci[1]
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)
                                         and math.isfinite(ci[1]) and math.isfinite(other_ci[0])):
        return None
    return bool(lo > hi)


def mark_beats(rows: list[dict], baseline: str = BEATS_BASELINE, kind: str = "spearman") -> None:
    """``row["beats_params"]`` for every row but the baseline's own: True when the row's ``kind``
    interval lies above the baseline row's, False when not, None when either interval is n/a or
    there is no such baseline row (the baseline's own row: None)."""
    base = next((r for r in rows if r.get("baseline") and r["task"] == baseline), None)
    for r in rows:
        r[f"beats_{baseline}"] = (None if base is None or r is base
                                  else beats(r[f"{kind}_ci"], base[f"{kind}_ci"]))


def analyze_values(means: Mapping[str, Mapping[str, float]], by_seed: Mapping, reference: str,
                   n_boot: int = 1000, seed: int = 0, baselines: Mapping[str, Mapping[str, float]] | None = None,
                   proxies: Mapping[str, Mapping[str, float]] | None = None) -> dict:
    """The summary of a study's per-architecture values (``means``, ``by_seed`` from :func:`per_arch`):
    one row per task against ``reference``, then one per training-free baseline (``baselines``:
    ``{name: {arch: value}}``) and per zero-cost proxy (``proxies``, the same form); training-free
    rows have ``baseline`` True (``kind`` baseline or proxy), no seeds and no saturation test. The
    matrix covers tasks, baselines and proxies; ``beats_params`` (:func:`mark_beats`) on every row."""
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
                     "seeds": len(by_seed.get(t, {})), "mean": float(np.mean(y)) if y else math.nan, "baseline": False,
                     "kind": "task"})
    free = [(b, v, "baseline") for b, v in (baselines or {}).items()] + [(b, v, "proxy") for b, v in (proxies or {}).items()]
    for b, values, kind in free:
        common = sorted(set(ref) & set(values))
        x = [ref[a] for a in common]
        y = [values[a] for a in common]
        rows.append({"task": b, "reference": reference, **correlations(x, y, n_boot, seed),
                     "seeds": 0, "mean": float(np.mean(y)) if y else math.nan, "baseline": True, "kind": kind})
    mark_beats(rows)
    saturated = {t: saturation(v, by_seed.get(t)) for t, v in means.items()}
    warn_lines = []
    for r in rows:
        r["saturated"] = False if r["baseline"] else saturated[r["task"]]["saturated"]
        r["reference_saturated"] = saturated[reference]["saturated"]
        if r["ci_note"] and n_boot:
            warn_lines.append(f"{r['task']} vs {reference}: no 95% interval: {r['ci_note']}")
    for t, info in saturated.items():
        if info["saturated"]:
            warn_lines.append(f"{t} is saturated ({info['reason']}): its ranking of the architectures is mostly noise")
    for w in warn_lines:
        log.warning("%s", w)
    table = {**{b: v for b, v, _ in free}, **means}   # a task keeps its name over a training-free column
    all_tasks = [reference] + tasks + [b for b, _, _ in free if b not in means]
    matrix = {}
    for a in all_tasks:
        matrix[a] = {}
        for b in all_tasks:
            common = sorted(set(table[a]) & set(table[b]))
            matrix[a][b] = _corr("spearman", np.array([table[a][k] for k in common]),
                                 np.array([table[b][k] for k in common]))
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
            "n_archs": {t: len(v) for t, v in means.items()}, "saturation": saturated, "warnings": warn_lines}


def _f(x, nd=2) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


def _ci(c) -> str:
    return "[n/a]" if not (math.isfinite(c[0]) and math.isfinite(c[1])) else f"[{_f(c[0])}, {_f(c[1])}]"


def _sat_flag(r: dict) -> str:
    flags = (["yes"] if r.get("saturated") else []) + (["ref"] if r.get("reference_saturated") else [])
    return ", ".join(flags) or "no"


def _ci_methods(r: dict) -> str:
    m = {k: v for k, v in r.get("ci_method", {}).items() if v}
    if not m:
        return ""
    if len(set(m.values())) == 1 and len(m) == len(KINDS):
        return next(iter(m.values()))
    return ", ".join(f"{k} {v}" for k, v in m.items())


def _kind(r: dict) -> str:
    return r.get("kind") if r.get("kind") in ("baseline", "proxy") else "baseline"


def _beats_flag(r: dict, summary: dict) -> str:
    key = f"beats_{BEATS_BASELINE}"
    if r.get("baseline") and r["task"] == BEATS_BASELINE:
        return "-"
    v = r.get(key)
    return "n/a" if v is None else ("yes" if v else "no")


def format_table(summary: dict) -> str:
    """The main table in Markdown: a CI reads ``[n/a]`` where the data cannot support one (the
    notes column says why); ``saturated``: yes (this task), ref (the reference), no."""
    ref = summary["reference"]
    ceil = summary["seed_ceiling"]
    lines = [f"| task vs {ref} | archs | seeds | Spearman ρ (95% CI) | Kendall τ (95% CI) | Pearson r (95% CI) | seed-seed ρ "
             f"| saturated | > {BEATS_BASELINE} | notes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        c = ceil.get(r["task"], {}).get("mean_spearman")
        note = f"CI n/a: {r['ci_note']}" if r.get("ci_note") else ""
        name, seeds = (f"{r['task']} ({_kind(r)})", "-") if r.get("baseline") else (r["task"], r["seeds"])
        lines.append(f"| {name} | {r['n']} | {seeds} | {_f(r['spearman'])} {_ci(r['spearman_ci'])} | "
                     f"{_f(r['kendall'])} {_ci(r['kendall_ci'])} | {_f(r['pearson'])} {_ci(r['pearson_ci'])} | "
                     f"{_f(c) if c is not None else '-'} | {_sat_flag(r)} | {_beats_flag(r, summary)} | {note} |")
    if ref in ceil:
        lines.append(f"\nSeed-to-seed ρ of the reference {ref}: {_f(ceil[ref]['mean_spearman'])}.")
    if summary.get("reference_study"):
        rs = summary["reference_study"]
        lines.append(f"\nReference {ref}: task {rs['task']} of the study {rs['run']}"
                     + (f" ({rs['dataset']})" if rs.get("dataset") else "")
                     + f", mean over its seeds {rs['seeds']}, matched by genotype: {rs['matched']} of this study's "
                     f"{rs['archs_this']} architectures ({rs['archs_other']} there).")
    if summary.get("baselines"):
        from .baselines import describe
        lines.append("\n" + describe(summary["baselines"]))
    if summary.get("proxies"):
        from .proxy_study import describe as describe_proxies
        line = describe_proxies(summary["proxies"])
        if line:
            lines.append("\n" + line)
    if any(r.get("baseline") and r["task"] == BEATS_BASELINE for r in summary["rows"]):
        lines.append(f"\n> {BEATS_BASELINE}: yes where the row's Spearman 95% interval lies entirely above that of "
                     f"{BEATS_BASELINE} (non-overlapping intervals, a conservative test), no where it does not, n/a "
                     "where either interval is n/a.")
    boot = summary.get("bootstrap") or {}
    if boot.get("resamples"):
        lines.append(f"\n95% CIs: paired bootstrap over architectures (scipy.stats.bootstrap, {boot['resamples']} "
                     f"resamples, seed {boot.get('seed', 0)}), BCa, or percentile where BCa cannot be computed; "
                     f"n/a with fewer than {MIN_ARCHS_CI} architectures, constant accuracies, or resamples whose "
                     "correlation is undefined.")
    sat = {t: i for t, i in summary.get("saturation", {}).items() if i.get("saturated")}
    if sat:
        lines.append(f"\nSaturated (>= {SATURATION_FRACTION:.0%} of archs within {SATURATION_POINTS:g} points of the "
                     "best, or a spread of the arch means below their seed noise): "
                     + "; ".join(f"{t} ({i['reason']})" for t, i in sat.items()) + ".")
    tasks = list(summary["matrix"])
    lines += ["", "Spearman ρ between tasks" + (", baselines and proxies" if any(r.get("baseline") for r in summary["rows"])
                                                else "") + " (common architectures):", "",
              "| | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for a in tasks:
        lines.append(f"| {a} | " + " | ".join(_f(summary["matrix"][a][b]) for b in tasks) + " |")
    return "\n".join(lines) + "\n"


def _csv(summary: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["task", "reference", "n_archs", "seeds", "spearman", "spearman_lo", "spearman_hi", "kendall",
                "kendall_lo", "kendall_hi", "pearson", "pearson_lo", "pearson_hi", "seed_seed_spearman",
                "ci_method", "saturated", "reference_saturated", "ci_note", "baseline", "kind", f"beats_{BEATS_BASELINE}"])
    for r in summary["rows"]:
        c = summary["seed_ceiling"].get(r["task"], {}).get("mean_spearman", "")
        b = r.get(f"beats_{BEATS_BASELINE}")
        w.writerow([r["task"], r["reference"], r["n"], r["seeds"], r["spearman"], *r["spearman_ci"], r["kendall"],
                    *r["kendall_ci"], r["pearson"], *r["pearson_ci"], c, _ci_methods(r), int(bool(r.get("saturated"))),
                    int(bool(r.get("reference_saturated"))), r.get("ci_note") or "", int(bool(r.get("baseline"))),
                    r.get("kind", "baseline" if r.get("baseline") else "task"), "" if b is None else int(b)])
    return buf.getvalue()


def scatter_plot(means: Mapping, summary: dict, path: Path, metric_names: Mapping[str, str] | None = None,
                 free: Mapping[str, Mapping[str, float]] | None = None) -> None:
    """The paper's Fig. 2 layout: x = the reference's accuracy, one panel per row of the summary (tasks,
    then the training-free baselines and proxies whose values ``free`` holds), up to 4 panels a line.
    A training-free score is plotted on a log axis when it is positive and spans more than 100x (the
    regression line then fits its log)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = summary["reference"]
    free = free or {}
    rows = [r for r in summary["rows"] if (free.get(r["task"]) if r.get("baseline") else means.get(r["task"]))]
    if not rows:
        return
    colours = plt.get_cmap("Set2").colors
    ncols = min(len(rows), 4)
    nrows = -(-len(rows) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.4 * nrows), squeeze=False)
    names = metric_names or {}
    for k, r in enumerate(rows):
        ax = axes[k // ncols][k % ncols]
        t = r["task"]
        values = free[t] if r.get("baseline") else means[t]
        common = sorted(set(means[ref]) & set(values))
        x = np.array([means[ref][a] for a in common])
        y = np.array([values[a] for a in common], dtype=float)
        colour = "0.35" if r.get("baseline") else colours[k % len(colours)]
        ax.scatter(x, y, alpha=0.5, color=colour, edgecolor="none", label=f"ρ = {_f(r['spearman'])} (n = {len(common)})")
        logy = bool(r.get("baseline") and len(y) and np.all(y > 0) and y.max() > 100 * y.min())
        if logy:
            ax.set_yscale("log")
        if len(x) >= 2 and not np.all(x == x[0]):
            fy = np.log10(y) if logy else y
            slope, intercept, _, _ = stats.theilslopes(fy, x)
            xs = np.linspace(x.min(), x.max(), 50)
            line = intercept + slope * xs
            ax.plot(xs, 10 ** line if logy else line, color=colour, lw=2)
        ax.set_xlabel(f"{ref} accuracy (%)" if ref not in names else names[ref])
        if r.get("baseline"):
            ax.set_ylabel(names.get(t, f"{t} ({_kind(r)}, at initialisation)" if r.get("kind") == "proxy" else
                                    f"{t} ({_kind(r)})"))
        else:
            ax.set_ylabel(f"{t} accuracy (%)" if t not in names else names[t])
        ax.set_title(f"{t} vs {ref}")
        # below the axes, never over the points
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=11, frameon=False)
        ax.grid(alpha=0.3)
    for k in range(len(rows), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120 if len(rows) <= 8 else 80, bbox_inches="tight")
    plt.close(fig)


def analysis_dirname(metric: str = "best", reference: str | None = None) -> str:
    """``analysis`` for the ``best`` metric (the default), ``analysis_<metric>`` for another, so that
    analysing ``final`` writes beside the ``best`` analysis instead of over it; ``_ref_<reference>``
    appended against another study's reference (:func:`unnas.study.reference.reference_name`)."""
    base = "analysis" if metric == "best" else f"analysis_{metric}"
    return f"{base}_ref_{reference}" if reference else base


def load_study_cfg(run_dir):
    """The study config of ``run_dir`` (its ``config.yaml`` over :func:`study_defaults`, else the
    store's copy); None when there is none or it cannot be read."""
    from fvcore.common.config import CfgNode as CN

    from .config import study_defaults
    from .runner import open_store, store_path

    run_dir = Path(run_dir)
    texts = []
    if (run_dir / "config.yaml").is_file():
        try:
            texts.append((run_dir / "config.yaml").read_text())
        except (OSError, UnicodeDecodeError):
            pass
    if store_path(run_dir).is_file():
        try:
            store = open_store(run_dir)
            try:
                stored = store.get_meta("config")
            finally:
                store.close()
            if stored:
                texts.append(stored)
        except Exception:   # a damaged store: the caller says what it cannot do without a config
            pass
    for text in texts:
        cfg = study_defaults()
        cfg.set_new_allowed(True)
        try:
            cfg.merge_from_other_cfg(CN.load_cfg(text))
        except Exception:
            continue
        return cfg
    return None


def _write_csv(path: Path, header: list, rows) -> None:
    from unnas.utils.io import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _training_free(run_dir: Path, results, archs, head_task: str, need: set, proxies: bool,
                   proxy_seconds: float | None):
    """``(baseline values, baselines info, proxy values, proxies info)`` of an analysis: the params/MACs
    baselines of ``head_task``'s network (read from and written to the proxy cache when the proxies
    score the same task's network) and the zero-cost proxies of ``STUDY.PROXIES``."""
    from .baselines import complexity_baselines
    from .proxy_study import analysis_proxies, open_cache
    from .runner import open_store

    cfg = load_study_cfg(run_dir)
    store = open_store(run_dir)
    try:
        cache, proxy_values, proxy_info = None, {}, None
        if cfg is not None and str(cfg.STUDY.SUPERVISED) == head_task:
            try:
                cache = open_cache(store, cfg)
            except ConfigError as exc:   # a stored config this version cannot turn into a job config
                log.warning("proxies: cannot use the stored config (%s)", exc)
        base_values, base_info = complexity_baselines(results, archs, cfg, head_task, need=need, cache=cache)
        if proxies and cfg is not None:
            try:
                proxy_values, proxy_info = analysis_proxies(store, cfg, archs, need, results, proxy_seconds, run_dir)
            except ConfigError as exc:
                proxy_info = {"names": [], "note": f"cannot score proxies ({exc.args[0] if exc.args else exc})"}
                log.warning("proxies: %s", proxy_info["note"])
        elif proxies:
            proxy_info = {"names": [], "note": "no readable study config to score the proxies with"}
    finally:
        store.close()
    return base_values, base_info, proxy_values, proxy_info


def analyze_run(run_dir, reference: str = "cls", metric: str = "best", supervised_table: str | None = None,
                n_boot: int = 1000, seed: int = 0, out_dir=None, *, reference_run=None,
                reference_task: str | None = None, baselines: bool = True, randexp_seed: int = 0,
                proxies: bool = True, proxy_seconds: float | None = None) -> dict:
    """Analyse the done jobs of ``run_dir`` and write the outputs; returns the summary.

    ``reference`` names the reference task; ``supervised_table`` replaces its values by a table
    (the trained task stays as ``<reference>(trained)``); ``reference_run`` (a study directory)
    replaces them by that study's ``reference_task`` (default its ``STUDY.SUPERVISED``), matched by
    genotype (:mod:`unnas.study.reference`; this study's task of that name stays as ``<task>(this)``;
    outputs in ``analysis_ref_<study>_<task>/``). ``baselines``: add the params/macs rows
    (:mod:`unnas.study.baselines`) and, with ``proxies``, the zero-cost proxies of ``STUDY.PROXIES``
    (:mod:`unnas.study.proxy_study`: cached scores, the missing ones computed for at most
    ``proxy_seconds``, default ``STUDY.PROXY_ANALYZE_SECONDS``). ``randexp_seed``: the seed of the
    random experiment (:mod:`unnas.study.randexp`).
    """
    from unnas.utils.io import atomic_write_text

    from .randexp import format_randexp, randexp_csv, randexp_plot, random_experiment
    from .runner import open_store, store_path

    run_dir = Path(run_dir)
    if not store_path(run_dir).is_file():
        raise ConfigError(f"{run_dir} holds no study (no {store_path(run_dir).name}); run a study there first")
    if supervised_table and reference_run:
        raise ConfigError("give either a supervised table or another study as the reference, not both")
    store = open_store(run_dir)
    try:
        results = store.results()
        archs = store.archs()
        counts = store.counts()
    finally:
        store.close()
    means, by_seed = per_arch(results, metric)
    if not means:
        raise ConfigError(f"{run_dir}: no finished jobs yet ({counts['done']}/{counts['total']} done)")
    head_task = reference   # the task whose networks the baselines measure
    ref_study = None
    if supervised_table:
        table = load_table(supervised_table, archs)
        if reference in means:   # trained reference kept as one more task
            means[f"{reference}(trained)"] = means.pop(reference)
            by_seed[f"{reference}(trained)"] = by_seed.pop(reference)
        means[reference] = table
        by_seed[reference] = {0: table}
    elif reference_run:
        from .reference import study_reference
        values, ref_study = study_reference(reference_run, archs, reference_task, metric)
        head_task = ref_study["task"]
        if head_task in means:   # this study's own task of that name kept as one more task
            means[f"{head_task}(this)"] = means.pop(head_task)
            by_seed[f"{head_task}(this)"] = by_seed.pop(head_task)
        reference = ref_study["label"]
        means[reference] = values
        by_seed[reference] = {0: values}
    base_values, base_info, proxy_values, proxy_info = {}, None, {}, None
    if baselines:
        base_values, base_info, proxy_values, proxy_info = _training_free(
            run_dir, results, archs, head_task, set(means.get(reference, {})), proxies, proxy_seconds)
    summary = analyze_values(means, by_seed, reference, n_boot, seed, base_values, proxy_values)
    free = {**base_values, **proxy_values}
    randexp = random_experiment(means, reference, randexp_seed, free)
    summary.update({"metric": metric, "jobs": counts, "supervised_table": supervised_table or None,
                    "reference_study": ref_study, "baselines": base_info, "proxies": proxy_info, "randexp": randexp,
                    "beats_rule": f"beats_{BEATS_BASELINE}: the row's Spearman 95% interval lies entirely above "
                                  f"{BEATS_BASELINE}'s (non-overlapping intervals); null where either is n/a",
                    "bootstrap": {"resamples": n_boot, "seed": seed, "method": "scipy.stats.bootstrap paired BCa "
                                  "(percentile where BCa cannot be computed)", "min_archs": MIN_ARCHS_CI},
                    "saturation_rule": {"points": SATURATION_POINTS, "fraction": SATURATION_FRACTION}})
    out = Path(out_dir) if out_dir else run_dir / analysis_dirname(metric, ref_study["name"] if ref_study else None)
    out.mkdir(parents=True, exist_ok=True)
    table_md = format_table(summary)
    randexp_md = format_randexp(randexp)
    if randexp_md:
        table_md += "\n" + randexp_md
    atomic_write_text(out / "correlations.md", table_md)
    atomic_write_text(out / "correlations.csv", _csv(summary))
    atomic_write_text(out / "correlations.json", json.dumps(summary, indent=1, default=str) + "\n")
    tasks = list(summary["matrix"])
    _write_csv(out / "task_matrix.csv", [""] + tasks, ([a] + [summary["matrix"][a][b] for b in tasks] for a in tasks))
    cols = list(means) + [b for b in free if b not in means]
    table = {**free, **means}
    _write_csv(out / "archs.csv", ["arch_id"] + cols,
               ([a] + [table[t].get(a, "") for t in cols] for a in sorted({k for v in means.values() for k in v})))
    atomic_write_text(out / "randexp.csv", randexp_csv(randexp))
    scatter_plot(means, summary, out / "scatter.png", free=free)
    randexp_plot(randexp, out / "randexp.png")
    summary["table_md"] = table_md
    summary["out_dir"] = str(out)
    return summary
