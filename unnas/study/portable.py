"""Finished job results as a small text file, and back into a study's store.

A study's store (``study.sqlite``) lives in its run directory, which is not kept in git and may not
outlive the machine it ran on; a long study run in parts (sessions, preemptible machines) must not
lose finished jobs with it. :func:`export_results` writes every finished job as one JSON line
(``{"fingerprint", "arch_id", "genotype", "task", "seed", "best", "final", "wall", "worker", "result"}``,
the result without its bulky config); :func:`import_results` puts those lines back into a store of
the same study (same training fingerprint, same genotype per id), as done jobs, so a rerun trains
only what is missing. Lines of another configuration or another genotype are refused, never mixed in.
"""
from __future__ import annotations

import json
from pathlib import Path

from .archs import genotype_key
from .jobs import Job
from .store import Store, StoreError

# Fields of a job's result kept in the export: what the analyses read (the job's full config is
# the study's, already known from its YAML; its file paths are machine-specific).
KEPT = ("metric", "best", "best_epoch", "final", "curve", "params", "flops", "macs", "wall_time", "job_seconds",
        "trainer")


def export_results(store: Store, path: str | Path) -> int:
    """Write the done jobs of ``store`` to ``path`` (JSON lines, atomically); returns their number."""
    from unnas.utils.io import atomic_write_text

    fingerprint = store.get_meta("fingerprint")
    genotypes = {a.id: genotype_key(a.genotype) for a in store.archs()}
    lines = []
    for r in sorted(store.results(), key=lambda r: (r["arch_id"], r["task"], r["seed"])):
        result = r["result"] if isinstance(r["result"], dict) else json.loads(r["result"] or "{}")
        lines.append(json.dumps({"fingerprint": fingerprint, "arch_id": r["arch_id"], "genotype": genotypes[r["arch_id"]],
                                 "task": r["task"], "seed": r["seed"], "best": r["best"], "final": r["final"],
                                 "wall": r["wall"], "worker": r["worker"],
                                 "result": {k: result[k] for k in KEPT if k in result}}, separators=(",", ":")))
    atomic_write_text(Path(path), "".join(line + "\n" for line in lines))
    return len(lines)


def import_results(store: Store, path: str | Path) -> int:
    """Mark the jobs of ``path`` done in ``store`` (registered by ``prepare_study`` first); returns
    how many were imported. Jobs already done are left as they are; a line whose study fingerprint or
    genotype differs from the store's raises :class:`StoreError` naming the file and the fix."""
    path = Path(path)
    fingerprint = store.get_meta("fingerprint")
    genotypes = {a.id: genotype_key(a.genotype) for a in store.archs()}
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = (str(row["arch_id"]), str(row["task"]), int(row["seed"]))
        except (ValueError, KeyError, TypeError):
            raise StoreError(f"{path}:{n}: not an exported job result; re-export it with the tool that wrote it") from None
        if row.get("fingerprint") != fingerprint:
            raise StoreError(f"{path}:{n}: results of a study trained with another configuration (fingerprint "
                             f"{row.get('fingerprint')} vs {fingerprint}); import them into that study's run directory")
        if key[0] in genotypes and row.get("genotype") != genotypes[key[0]]:
            raise StoreError(f"{path}:{n}: architecture {key[0]} has another genotype in this study; "
                             "import into the study with the same architecture list")
        rows.append((key, row))
    imported = 0
    for (arch_id, task, seed), row in rows:
        result = dict(row["result"], best=row["best"], final=row["final"])
        if row.get("wall") is not None:
            result.setdefault("wall_time", row["wall"])
        worker = str(row.get("worker") or "?")   # the worker that trained it, marked once however often it moves
        worker = worker if worker.startswith("imported:") else f"imported:{worker}"
        imported += store.record_imported(Job(arch_id, task, seed), worker, result)
    return imported
