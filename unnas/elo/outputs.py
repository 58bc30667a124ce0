"""An evolution's outputs in its run directory, rewritten whole from the store (so a resumed run's
files are those of an uninterrupted one; every file is written atomically): the history and the
best weights after every round, TensorBoard and the pictures when the evolution finishes.

* ``history.json`` / ``history.csv``: every finished evaluation (strategy, generation, index,
  the weights as drawn and divided by their sum, fitness, probe top-1, seconds; in the JSON also
  the derived genotype of a supernet evaluation, ``ELO.NETWORK supernet``);
* ``best_<strategy>.yaml`` per strategy and ``best.yaml`` (the lowest fitness of all): the weights
  as a config snippet that ``tools/train.py --cfg`` and ``tools/search.py --cfg`` read;
* ``tb/``: TensorBoard scalars ``fitness/<strategy>`` and ``weight/<strategy>/<task>`` by
  evaluation, ``best_fitness/<strategy>`` by generation;
* ``fitness.png`` (fitness per generation) and ``weights.png`` (each weight's evolution; the ELo
  paper's Figure 3), :mod:`unnas.elo.plots`.
"""
from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path

import yaml

from unnas.utils.io import atomic_write_text

from .evaluate import fitness_of

CSV_COLUMNS = ("key", "strategy", "generation", "index", "fitness", "probe_top1", "diverged", "seconds")


def relative(weights) -> list[float]:
    total = sum(weights)
    return [w / total for w in weights] if total > 0 else list(weights)


def history(jobs, tasks) -> list[dict]:
    """The finished evaluations of the strategies (the report's runs left out), in strategy,
    generation, index order."""
    results = jobs.results()
    rows = []
    for c in jobs.candidates():
        r = results.get(c.key)
        if c.strategy == "final" or r is None:
            continue
        rows.append({"key": c.key, "strategy": c.strategy, "generation": c.generation, "index": c.index,
                     "weights": list(c.weights), "relative_weights": relative(c.weights), "fitness": fitness_of(r),
                     "probe_top1": r.get("probe_top1"), "diverged": bool(r.get("diverged")),
                     "seconds": r.get("job_seconds", r.get("wall_time")),
                     "derived_genotype": r.get("derived_genotype_repr")})
    return rows


def best_of(rows, strategy: str | None = None) -> dict | None:
    """The lowest-fitness evaluation (of ``strategy``; the earliest on a tie), None if none finished."""
    pool = [r for r in rows if (strategy is None or r["strategy"] == strategy) and math.isfinite(r["fitness"])]
    return min(pool, key=lambda r: r["fitness"]) if pool else None


def weights_snippet(tasks, row: dict, path: Path) -> str:
    """YAML (to be written to ``path``) that sets the multi task to ``row``'s weights, as drawn:
    the task divides them by their sum, so training with it repeats the evaluation's loss exactly."""
    rel = ", ".join(f"{t} {w:.3f}" for t, w in zip(tasks, row["relative_weights"]))
    head = (f"# ELo loss weights: {row['strategy']}'s best (evaluation {row['key']}, fitness {row['fitness']:.5f};"
            f" relative weights {rel}).\n"
            f"#   python tools/train.py --cfg {path} --genotype DARTS_V2    # pretrain a fixed genotype\n"
            f"#   python tools/search.py --cfg {path}                       # search with it as the objective\n")
    doc = {"TASK": {"NAME": "multi", "MULTI": {"TASKS": list(tasks), "WEIGHTS": [float(w) for w in row["weights"]]}}}
    return head + yaml.safe_dump(doc, default_flow_style=None, sort_keys=False)


def _csv(rows, tasks) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([*CSV_COLUMNS, *(f"w_{t}" for t in tasks), *(f"rel_{t}" for t in tasks)])
    for r in rows:
        w.writerow([r[c] for c in CSV_COLUMNS] + list(r["weights"]) + list(r["relative_weights"]))
    return buf.getvalue()


def write_tensorboard(run_dir: Path, rows, tasks) -> None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:   # tensorboard missing: the JSON/CSV history has it all
        return
    tb = run_dir / "tb"
    shutil.rmtree(tb, ignore_errors=True)   # rewritten whole: a resumed run shows each evaluation once
    writer = SummaryWriter(str(tb))
    try:
        for strategy in dict.fromkeys(r["strategy"] for r in rows):
            mine = [r for r in rows if r["strategy"] == strategy]
            best = math.inf
            for n, r in enumerate(mine):
                if math.isfinite(r["fitness"]):
                    writer.add_scalar(f"fitness/{strategy}", r["fitness"], n)
                for t, w in zip(tasks, r["relative_weights"]):
                    writer.add_scalar(f"weight/{strategy}/{t}", w, n)
                if r["probe_top1"] is not None:
                    writer.add_scalar(f"probe_top1/{strategy}", r["probe_top1"], n)
                best = min(best, r["fitness"])
                if n + 1 == len(mine) or mine[n + 1]["generation"] != r["generation"]:
                    writer.add_scalar(f"best_fitness/{strategy}", best, r["generation"])
    finally:
        writer.close()


def write_outputs(cfg, run_dir, jobs, pictures: bool = True) -> list[dict]:
    """Every file above from the store's finished evaluations (TensorBoard and the pictures only
    with ``pictures``: the evolution draws them once, when it finishes); returns the history rows."""
    from .plots import plot_fitness, plot_weights

    run_dir = Path(run_dir)
    tasks = list(cfg.TASK.MULTI.TASKS)
    rows = history(jobs, tasks)
    best = {s: best_of(rows, s) for s in cfg.ELO.STRATEGIES}
    overall = best_of(rows)
    doc = {"tasks": tasks, "strategies": list(cfg.ELO.STRATEGIES), "budget": cfg.ELO.BUDGET,
           "population": cfg.ELO.POPULATION, "fitness": "KL of the cluster sizes to a Zipf prior, lower is better",
           "best": {s: b for s, b in best.items() if b is not None}, "evaluations": rows}
    atomic_write_text(run_dir / "history.json", json.dumps(doc, indent=1) + "\n")
    atomic_write_text(run_dir / "history.csv", _csv(rows, tasks))
    for s, b in best.items():
        if b is not None:
            atomic_write_text(run_dir / f"best_{s}.yaml", weights_snippet(tasks, b, run_dir / f"best_{s}.yaml"))
    if overall is not None:
        atomic_write_text(run_dir / "best.yaml", weights_snippet(tasks, overall, run_dir / "best.yaml"))
    if rows and pictures:
        write_tensorboard(run_dir, rows, tasks)
        plot_fitness(rows, list(cfg.ELO.STRATEGIES), run_dir / "fitness.png")
        plot_weights(rows, list(cfg.ELO.STRATEGIES), tasks, run_dir / "weights.png")
    return rows
