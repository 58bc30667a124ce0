"""Random-experiment efficiency (the paper's Fig. 5; the official release's ``figs/fig5.py``).

How good is the architecture a small random experiment finds when it ranks its candidates by a
task's accuracy? For m = 1, 2, 4, ... (powers of two up to n, the number of architectures that have
both the task's and the reference's accuracy): draw m architectures at random without replacement,
keep the one with the best accuracy on the task, and record its *reference* (supervised) accuracy;
repeat ceil(n / m) times; report the mean and the (population) standard deviation of the recorded
reference accuracies. The reference task itself gives the oracle curve (the best a ranking can
do); a training-free baseline such as ``params`` picks the largest network.

As in the release: each task's draws come from a fresh ``numpy.random.RandomState(seed)``
(``np.random.seed`` per task there), drawing with ``choice(n, m, replace=False)`` from the
architectures in sorted order, so every task sees the same random subsets (m = 1 gives the same
curve point for every task with the same candidates); ties go to the first of the tied
architectures in draw order (the release's strict ``>``); the spread is ``np.std`` (ddof 0); the
plot shows mean +- 2 std against log2 m.

Where we differ from the release:

* m runs up to and including n when n is a power of two (the release stops below n: ``while m < n``);
  at m = n every draw is the whole pool, so the point is the task's global pick with std 0;
* n is each curve's own pool (the architectures with both values), not a fixed 500; the release
  restricts every task to the architectures present in all its summaries and in the reference;
* the default seed is 0 (the release uses 2); the candidates are sorted by our architecture ids
  (the release sorts its genotype strings), so the same seed draws different subsets there;
* the release's best-so-far starts at 0 (an accuracy <= 0 could never be picked); we take the
  maximum whatever its sign (a baseline or an error-like metric may be <= 0).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Mapping

import numpy as np


def experiment_sizes(n: int) -> list[int]:
    """1, 2, 4, ... up to ``n`` (inclusive when ``n`` is a power of two); [] for ``n`` < 1."""
    out, m = [], 1
    while m <= n:
        out.append(m)
        m *= 2
    return out


def best_of_m(selector: Mapping[str, float], reference: Mapping[str, float], seed: int = 0) -> list[dict]:
    """One curve: for each m of :func:`experiment_sizes`, ``{"m", "repeats", "mean", "std"}`` of the
    reference accuracy of the best-by-``selector`` of m random architectures (ceil(n/m) draws), over
    the architectures present in both mappings."""
    pool = sorted(set(selector) & set(reference))
    n = len(pool)
    sel = np.array([selector[a] for a in pool], dtype=float)
    ref = np.array([reference[a] for a in pool], dtype=float)
    rng = np.random.RandomState(seed)   # the release's np.random.seed(...) / np.random.choice
    points = []
    for m in experiment_sizes(n):
        repeats = math.ceil(n / m)
        picks = np.empty(repeats)
        for i in range(repeats):
            idx = rng.choice(n, m, replace=False)
            picks[i] = ref[idx[int(np.argmax(sel[idx]))]]   # first maximum in draw order
        points.append({"m": m, "repeats": repeats, "mean": float(picks.mean()), "std": float(picks.std())})
    return points


def random_experiment(means: Mapping[str, Mapping[str, float]], reference: str, seed: int = 0,
                      baselines: Mapping[str, Mapping[str, float]] | None = None) -> dict:
    """Curves of :func:`best_of_m` for every task of ``means`` (the reference included, as the
    oracle) and every baseline, each against ``means[reference]``.

    Returns ``{"reference", "seed", "curves": [{"task", "kind" (task | baseline | oracle), "n",
    "points": [...]}, ...]}``: tasks first (in ``means`` order), then baselines, then the oracle.
    """
    ref = means[reference]
    curves = []
    order = [(t, "task") for t in means if t != reference] + [(b, "baseline") for b in (baselines or {})]
    order.append((reference, "oracle"))
    for name, kind in order:
        values = (baselines or {})[name] if kind == "baseline" else means[name]
        n = len(set(values) & set(ref))
        if n == 0:
            continue
        curves.append({"task": name, "kind": kind, "n": n, "points": best_of_m(values, ref, seed)})
    return {"reference": reference, "seed": seed, "curves": curves,
            "method": "best of m random archs by each task, reference accuracy of the pick; m = 1, 2, 4, ... <= n; "
                      "ceil(n/m) draws without replacement (numpy RandomState(seed) per task); mean and std (ddof 0)"}


def _label(c: dict) -> str:
    return c["task"] + {"task": "", "baseline": " (baseline)", "oracle": " (oracle)"}[c["kind"]]


def format_randexp(result: dict) -> str:
    """Markdown: one row per m, one column per curve (``mean ± std`` of the reference accuracy)."""
    curves = result["curves"]
    if not curves:
        return ""
    ms = sorted({p["m"] for c in curves for p in c["points"]})
    by = {(c["task"], p["m"]): p for c in curves for p in c["points"]}
    lines = [f"Random experiment (paper Fig. 5): {result['reference']} accuracy of the best of m random "
             f"architectures picked by each column, mean ± std over ceil(n/m) draws (seed {result['seed']}); "
             "n: " + ", ".join(f"{c['task']} {c['n']}" for c in curves) + ".", "",
             "| m | draws | " + " | ".join(_label(c) for c in curves) + " |",
             "|---|---|" + "---|" * len(curves)]
    for m in ms:
        draws = sorted({by[(c["task"], m)]["repeats"] for c in curves if (c["task"], m) in by})
        cells = []
        for c in curves:
            p = by.get((c["task"], m))
            cells.append("-" if p is None else f"{p['mean']:.2f} ± {p['std']:.2f}")
        lines.append(f"| {m} | {'/'.join(map(str, draws))} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def randexp_csv(result: dict) -> str:
    """``task, m, repeats, mean, std, n, kind`` (one row per curve and m)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["task", "m", "repeats", "mean", "std", "n", "kind"])
    for c in result["curves"]:
        for p in c["points"]:
            w.writerow([c["task"], p["m"], p["repeats"], p["mean"], p["std"], c["n"], c["kind"]])
    return buf.getvalue()


def randexp_plot(result: dict, path: Path, ylabel: str | None = None) -> None:
    """Mean +- 2 std of the reference accuracy against log2 m, one line per curve (the release's
    scatter and band; here joined by a line): tasks in colour, baselines dotted (grey shades for up
    to three, else a colour map: with the zero-cost proxies there are a dozen), the oracle dashed
    black (bands of mean +- 2 std for up to three baselines only); with more than 8 curves the legend
    goes beside the axes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = result["curves"]
    if not curves:
        return
    colours = plt.get_cmap("Set2").colors
    n_base = sum(c["kind"] == "baseline" for c in curves)
    greys = ("0.45", "0.65", "0.3") if n_base <= 3 else [plt.get_cmap("tab20").colors[i % 20] for i in range(n_base)]
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    k = b = 0
    width = 0
    for c in curves:
        x = np.log2([p["m"] for p in c["points"]])
        mu = np.array([p["mean"] for p in c["points"]])
        sd = np.array([p["std"] for p in c["points"]])
        if c["kind"] == "oracle":
            colour, style = "black", "--"
        elif c["kind"] == "baseline":
            colour, style = greys[b % len(greys)], ":"
            b += 1
        else:
            colour, style = colours[k % len(colours)], "-"
            k += 1
        ax.plot(x, mu, style, marker="o", ms=4, color=colour, alpha=0.9, label=_label(c))
        if c["kind"] != "baseline" or n_base <= 3:   # a dozen proxies' bands would hide everything
            ax.fill_between(x, mu - 2 * sd, mu + 2 * sd, color=colour, alpha=0.08)
        width = max(width, len(x))
    ax.set_xticks(range(width))
    ax.set_xticklabels([str(2 ** i) for i in range(width)])
    ax.set_xlim(-0.3, width - 0.7)
    ax.set_xlabel("number of random architectures m (log2 scale)")
    ax.set_ylabel(ylabel or f"{result['reference']} accuracy (%) of the pick")
    ax.set_title("best of m random architectures (mean ± 2 std)", fontsize=11)
    ax.grid(alpha=0.4)
    if len(curves) > 8:
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    else:
        ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
