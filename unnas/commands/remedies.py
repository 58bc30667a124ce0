"""The ``remedies`` pipeline of tools/reproduce.py (issue 11): first-order DARTS against its collapse remedies.

  python tools/reproduce.py --pipeline remedies              # every search and the retraining (resumes), then the report
  python tools/reproduce.py --pipeline remedies --list       # the steps and their state
  python tools/reproduce.py --pipeline remedies --report     # docs/search_remedies.md from results/remedies/ alone

For each task and each remedy of ``experiments/remedies/plan.yaml`` one step ``search_<task>_<remedy>``:
a search (kind ``search``, *measured*: in a process of its own whose wall time, CPU time and peak
resident set size reproduce.py records, with its per-epoch diagnostics, Hessian eigenvalues and
alphas copied to its results), or, for a remedy that acts only when the genotype is derived (the
skip-connection limit), a derivation from another remedy's final alphas (kind ``derive``: the same
search, so it is not run twice). Then one ``retrain`` step trains every distinct derived genotype,
the plan's published genotypes and a few random genotypes of the space with cls under one fixed
recipe (``retrain.yaml``), and the report puts it all in one table: per task and remedy the skips
and parameter-free ops of the derived normal cell, the eigenvalue's first and last value, the
search's wall time, CPU time and peak RSS, and the retrained test top-1 (mean and per seed) with its
percentile among the random genotypes. The engine (resuming, skipping finished steps, results/,
provenance) is reproduce.py's; this module adds the plan, the ``derive`` kind and the report.
"""
from __future__ import annotations

import math
import os
import re
import shlex
from pathlib import Path

from unnas.commands import reproduce as rp
from unnas.commands.reproduce import Kind, Pipeline, Step, StepFailed, fnum, fsecs, md_table, read_json, write_json

PLAN = "plan.yaml"
PARAM_FREE_OPS = rp.PARAM_FREE_OPS
DEFAULT_RETRAIN = {"CFG": "retrain.yaml", "ZOO": ["DARTS_V2"], "RANDOM": 4}


# ---------------------------------------------------------------------------------------------------
# The plan: tasks x remedies (experiments/remedies/plan.yaml)

def _value(v) -> str:
    return repr(v) if isinstance(v, (list, tuple)) else str(v)


def load_plan(config_dir: Path) -> dict:
    """``{"tasks": [(task, [KEY, VALUE, ...])], "remedies": [{"NAME", "CFG", "TITLE", "FROM"}], "retrain": {...}}``
    from PLAN in ``config_dir``; a bad entry is one ConfigError line."""
    import yaml

    from unnas.config import ConfigError
    path = Path(config_dir) / PLAN
    if not path.is_file():
        raise ConfigError(f"{path} not found: the remedies pipeline reads its tasks and remedies from it "
                          "(see experiments/remedies/plan.yaml)")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc

    def bad(msg: str):
        raise ConfigError(f"{path}: {msg}")
    if not isinstance(doc, dict):
        bad("expected a mapping with TASKS, REMEDIES and RETRAIN")
    tasks = doc.get("TASKS")
    if not isinstance(tasks, dict) or not tasks:
        bad("TASKS must map each task to its KEY: value overrides ({} for none), e.g. {rot: {SEARCH.BATCH_SIZE: 8}}")
    out_tasks = []
    for task, over in tasks.items():
        if over is not None and not isinstance(over, dict):
            bad(f"TASKS.{task} must be a mapping of KEY: value overrides")
        out_tasks.append((str(task), [x for k, v in (over or {}).items() for x in (str(k), _value(v))]))
    remedies = doc.get("REMEDIES")
    if not isinstance(remedies, list) or not remedies:
        bad("REMEDIES must be a non-empty list of {NAME, CFG[, TITLE, FROM]}")
    names: list[str] = []
    out_rem = []
    for r in remedies:
        if not isinstance(r, dict) or not isinstance(r.get("NAME"), str) or not isinstance(r.get("CFG"), str):
            bad(f"each remedy needs a NAME and a CFG (a search YAML in {config_dir}); got {r!r}")
        if not re.fullmatch(r"[a-z0-9]+", r["NAME"]) or r["NAME"] in names:
            bad(f"remedy NAME {r['NAME']!r} must be lower-case letters and digits, and unique")
        extra = set(r) - {"NAME", "CFG", "TITLE", "FROM"}
        if extra:
            bad(f"remedy {r['NAME']}: unknown key(s) {', '.join(sorted(extra))} (NAME, CFG, TITLE, FROM)")
        if r.get("FROM") is not None and r["FROM"] not in names:
            bad(f"remedy {r['NAME']}: FROM {r['FROM']!r} must name a remedy listed before it")
        names.append(r["NAME"])
        out_rem.append({"NAME": r["NAME"], "CFG": r["CFG"], "TITLE": str(r.get("TITLE") or r["NAME"]),
                        "FROM": r.get("FROM")})
    retrain = {**DEFAULT_RETRAIN, **(doc.get("RETRAIN") or {})}
    if set(retrain) - set(DEFAULT_RETRAIN):
        bad(f"RETRAIN: unknown key(s) {', '.join(sorted(set(retrain) - set(DEFAULT_RETRAIN)))} (CFG, ZOO, RANDOM)")
    if not isinstance(retrain["RANDOM"], int) or retrain["RANDOM"] < 0 or not isinstance(retrain["ZOO"], list):
        bad("RETRAIN: RANDOM must be an integer >= 0 and ZOO a list of zoo genotype names")
    return {"tasks": out_tasks, "remedies": out_rem, "retrain": retrain}


def step_name(task: str, remedy: str) -> str:
    return f"search_{task}_{remedy}"


def plan_steps(config_dir: Path) -> tuple[Step, ...]:
    plan = load_plan(config_dir)
    steps = []
    for task, over in plan["tasks"]:
        for r in plan["remedies"]:
            common = dict(cfg=r["CFG"], title=f"{task}: {r['TITLE']}", overrides=("TASK.NAME", task, *over))
            if r["FROM"]:
                steps.append(Step(step_name(task, r["NAME"]), "derive", **common, source=step_name(task, r["FROM"]),
                                  about=f"The genotype of {step_name(task, r['FROM'])}'s final alphas, derived "
                                        "with this remedy's rule (no search of its own).", differs=""))
            else:
                steps.append(Step(step_name(task, r["NAME"]), "search", **common, measured=True,
                                  about=f"A search with the {task} objective and {r['TITLE']}.", differs=""))
    rt = plan["retrain"]
    steps.append(Step("retrain", "retrain", rt["CFG"], "Retraining the derived genotypes",
                      "Every distinct derived genotype, the zoo's and random genotypes of the space, trained with cls.",
                      "", search=tuple(s.name for s in steps), zoo=tuple(rt["ZOO"]), random=int(rt["RANDOM"])))
    return tuple(steps)


# ---------------------------------------------------------------------------------------------------
# The `derive` kind: another search's final alphas, derived with this step's rule

DERIVE_KEYS = ("SEARCH.MAX_SKIPS_NORMAL",)   # what a derivation may change (the rest must be its source's search)


def record_weights(record: dict):
    """The per-edge op strengths of one alpha_history.json record, as the supernet derives its genotype:
    softmax(alpha) (float32), times the PC-DARTS edge weights when they are recorded."""
    import torch
    wn, wr = torch.tensor(record["normal"]), torch.tensor(record["reduce"])
    if "normal_edges" in record:
        wn, wr = wn * torch.tensor(record["normal_edges"])[:, None], wr * torch.tensor(record["reduce_edges"])[:, None]
    return wn, wr


def derive_from_record(record: dict, primitives, steps: int, max_skips: int):
    """Genotype of one alpha_history.json record with at most ``max_skips`` skips in the normal cell (0: no limit)."""
    from search_spaces.darts.genotype import genotype_from_weights
    return genotype_from_weights(*record_weights(record), list(primitives), steps, max_skips)


def cell_counts(genotype) -> dict:
    ops = [op for op, _ in genotype.normal]
    return {"normal_skips": ops.count("skip_connect"), "normal_param_free": sum(op in PARAM_FREE_OPS for op in ops)}


def run_derive(ctx: rp.Ctx, step: Step) -> None:
    from search_spaces.darts.genotype import Genotype, limit_skip_connections
    from unnas.config import config_diff
    from unnas.search.config import max_skips_normal

    src = ctx.steps[step.source]
    s_src = read_json(ctx.res(src.name) / "summary.json")
    history = read_json(ctx.res(src.name) / "alpha_history.json")
    if not s_src or not history:
        raise StepFailed(f"needs the search {src.name} (its results: summary.json, alpha_history.json); run "
                         f"`python tools/reproduce.py --pipeline remedies --only {src.name}` first")
    cfg, cfg_src = rp.search_cfg(ctx, step), rp.search_cfg(ctx, src)
    diff = [k for k in config_diff(cfg_src, cfg) if k not in DERIVE_KEYS and k != "OUT_DIR"]
    if diff:
        raise StepFailed(f"{step.name} derives from {src.name}'s alphas, so its config may differ from that search's "
                         f"only in {', '.join(DERIVE_KEYS)}; it differs in {', '.join(diff)}")
    if cfg_src.SEARCH.PDARTS.ENABLE or (read_json(ctx.res(src.name) / "search_summary.json") or {}).get("early_stop"):
        raise StepFailed(f"{src.name} is a P-DARTS search or stopped early: its genotype is not its last alphas'; "
                         f"run {step.name} as a search")
    last = history["epochs"][-1]
    prims, n_steps = history["primitives"], len(Genotype.from_dict(s_src["genotype"]).normal) // 2
    if derive_from_record(last, prims, n_steps, max_skips_normal(cfg_src)) != Genotype.from_dict(s_src["genotype"]):
        raise StepFailed(f"{src.name}'s last alphas do not give its genotype again; run {step.name} as a search")
    limit = max_skips_normal(cfg)
    genotype = derive_from_record(last, prims, n_steps, limit)
    plain = derive_from_record(last, prims, n_steps, 0)
    rows = limit_skip_connections(record_weights(last)[0], prims, n_steps, limit)[1] if limit else []
    # the per-epoch diagnostics as this rule derives them; the eigenvalues are the source's (the same alphas)
    by_epoch = {r["epoch"]: r for r in history["epochs"]}
    curve = [{**c, **cell_counts(derive_from_record(by_epoch[c["epoch"]], prims, n_steps, limit))}
             if c.get("epoch") in by_epoch else dict(c) for c in s_src.get("curve", [])]
    res = rp.fresh_results(ctx, step)
    genotype.save(res / "genotype.json")
    write_json(res / "summary.json", {
        **rp.base_summary(ctx, step), "source": src.name, "source_genotype": s_src["genotype"],
        "tasks": s_src.get("tasks"), "budget": s_src.get("budget"),
        "jobs": 0, "genotype": genotype.to_dict(), "genotype_repr": repr(genotype), "epochs_run": s_src.get("epochs_run"),
        "curve": curve, "process": s_src.get("process"), "cfg": cfg.dump(),
        "skip_limit": {"max_skips_normal": limit, "replaced_edges": rows,
                       "skips_without_limit": cell_counts(plain)["normal_skips"], "genotype_without_limit": repr(plain)},
        "files": ["genotype.json"]})


def progress_derive(ctx: rp.Ctx, step: Step):
    """Done when derived from the source search's present genotype (a search run again is derived again)."""
    mine, src = (read_json(ctx.res(n) / "summary.json") for n in (step.name, step.source))
    if mine and (src is None or mine.get("source_genotype") == src.get("genotype")):
        return 1, 1
    return (0, 1) if src else None


# ---------------------------------------------------------------------------------------------------
# The report (docs/search_remedies.md) from results/remedies/ alone

def _eigs(curve: list[dict]) -> list[tuple[int, float]]:
    return [(int(c["epoch"]), float(c["hessian_eig"])) for c in curve if c.get("hessian_eig") is not None]


def _mb(x) -> str:
    return "n/a" if x is None else f"{x:,.0f} MB"


def _cfg(s: dict):
    from fvcore.common.config import CfgNode as CN
    return CN.load_cfg(s["cfg"]) if s.get("cfg") else None


def _keys(s: dict, ref: dict | None) -> str:
    """This search's config keys that differ from the reference remedy's search of its task."""
    from unnas.config import config_diff
    a, b = _cfg(ref or {}), _cfg(s)
    if a is None or b is None:
        return ""
    diff = {k: v for k, v in config_diff(a, b).items() if k not in ("OUT_DIR",)}
    return ", ".join(f"`{k} {_short(v[1])}`" for k, v in diff.items())


def _short(v) -> str:
    return str(list(v)) if isinstance(v, (list, tuple)) else str(v)


def _seeds(row: dict | None) -> str:
    if not row:
        return "n/a"
    vals = " / ".join(fnum(v) for v in row["seeds"].values())
    return f"{fnum(row['mean'])} ({vals})" if vals else "n/a"


def write_remedies_report(ctx: rp.Ctx) -> Path:
    plan = load_plan(ctx.config_dir)
    summ = {s.name: read_json(ctx.res(s.name) / "summary.json") for s in ctx.order}
    retrain = summ.get("retrain") or {}
    table = {r["genotype"]: r for r in retrain.get("table", [])}
    ref_name = plan["remedies"][0]["NAME"]
    lines = ["# Searches that do not collapse: measured", "",
             f"*Generated by `python tools/reproduce.py --pipeline remedies` from `{ctx.results.as_posix()}/` "
             "(issue 11; the options are described in [search.md](search.md#searches-that-do-not-collapse)). "
             f"{sum(1 for s in summ.values() if s)} of {len(summ)} steps have results.*", ""]
    notes = ctx.results / "notes.md"
    if notes.is_file():
        lines += [notes.read_text().rstrip("\n"), ""]
    lines += _intro(ctx, plan, summ, retrain) + [""]

    # --- the table
    lines += ["## The table", ""]
    rows = []
    for task, _ in plan["tasks"]:
        ref = table.get(step_name(task, ref_name))
        for r in plan["remedies"]:
            name = step_name(task, r["NAME"])
            s = summ.get(name)
            t = table.get(name)
            if not s:
                rows.append([task, r["NAME"], "not run", *[""] * 8])
                continue
            from search_spaces.darts.genotype import Genotype
            counts = cell_counts(Genotype.from_dict(s["genotype"]))
            eig = _eigs(s.get("curve", []))
            eig_text = (f"{eig[0][1]:.3g} → {eig[-1][1]:.3g} (max {max(v for _, v in eig):.3g})" if eig else "n/a")
            p = s.get("process") or {}
            shared = f" (= {s['source'].rsplit('_', 1)[-1]})" if s.get("source") else ""
            delta = (t["mean"] - ref["mean"]) if t and ref and r["NAME"] != ref_name else None
            rows.append([task, r["NAME"], counts["normal_skips"], counts["normal_param_free"], eig_text,
                         fsecs(p.get("wall_seconds")) + shared, fsecs(p.get("cpu_seconds")) + shared,
                         _mb(p.get("peak_rss_mb")) + shared, _seeds(t) + (f" = {t['same_as']}" if t and t.get("same_as") else ""),
                         fnum(t["percentile_vs_random"], 0) if t else "n/a",
                         ("n/a" if delta is None or not math.isfinite(delta) else f"{delta:+.2f}") if r["NAME"] != ref_name else "-"])
    lines += md_table(["task", "remedy", "normal: skip", "normal: param-free", "eigenvalue first → last",
                       "search wall", "search CPU", "peak RSS", "retrained top-1: mean (per seed)",
                       "percentile vs random", f"Δ vs {ref_name}"], rows)
    lines += [""] + _reference_lines(retrain, table) + [""] + _legend(plan, ref_name) + [""]
    lines += _verdicts(plan, summ, table, ref_name)
    lines += _keys_table(plan, summ, ref_name)
    lines += _curves(plan, summ)
    lines += _genotypes(plan, summ)
    lines += _cost(ctx, plan, summ, retrain)
    from unnas.utils.io import atomic_write_text
    ctx.report_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(ctx.report_path, "\n".join(lines).rstrip("\n") + "\n")
    return ctx.report_path


def _hessian_epochs(c) -> str:
    """The epochs (from 1) after which a search computes the eigenvalue: 0, PERIOD, 2 PERIOD, ... and the last."""
    period, epochs = int(c.SEARCH.HESSIAN.PERIOD), int(c.SEARCH.EPOCHS)
    ks = sorted({e + 1 for e in range(0, epochs, period)} | {epochs})
    return ", ".join(map(str, ks[:-1])) + f" and {ks[-1]}" if len(ks) > 1 else str(ks[0])


def _intro(ctx, plan, summ, retrain) -> list[str]:
    # the recipe as the reference remedy's search of a task without overrides has it
    plain = [t for t, o in plan["tasks"] if not o] or [plan["tasks"][0][0]]
    ref = plan["remedies"][0]["NAME"]
    first = next((summ.get(step_name(t, ref)) for t in plain if (summ.get(step_name(t, ref)) or {}).get("cfg")), None) \
        or next((s for s in summ.values() if s and s.get("cfg")), None)
    out = ["**What.** For each task, first-order DARTS and each remedy of "
           f"`{Path(ctx.config_dir, PLAN).as_posix()}` search on cifar10-mini; every derived genotype is then "
           "retrained with cls under one fixed recipe, beside published and random genotypes, so that the table says "
           "whether a remedy gave a better cell, not only fewer skip connections."]
    c = _cfg(first) if first else None
    if c is not None:
        h = c.SEARCH.HESSIAN
        out += ["", f"**Search recipe** (`{ctx.config_dir.as_posix()}/`): {c.DATA.DATASET}, {c.DATA.MAX_TRAIN or 'all'} "
                f"training images (a {c.SEARCH.PORTION:g} share for the weights, the rest for the alphas), width "
                f"{c.MODEL.WIDTH}, depth {c.MODEL.DEPTH}, batch {c.SEARCH.BATCH_SIZE}, "
                f"{c.SEARCH.STEPS_PER_EPOCH or 'all'} steps per epoch, {c.SEARCH.EPOCHS} epochs, {c.SEARCH.ORDER}-order, "
                f"weight lr {c.OPTIM.LR:g}, alpha lr {c.ARCH.LR:g}, {c.SEARCH.NUM_THREADS or 'auto'} thread(s) per search; "
                + (f"the Hessian's largest eigenvalue after epochs {_hessian_epochs(c)} ({h.ITERS} power iterations "
                   f"on {h.BATCHES} held-out batch(es))." if h.PERIOD else "no eigenvalue.")]
        tasks = [f"{t}: `{shlex.join(o)}`" for t, o in plan["tasks"] if o]
        if tasks:
            out += ["", "Per task: " + "; ".join(tasks) + "."]
    b = next(iter((retrain.get("budget") or {}).values()), None)
    if b:
        out += ["", f"**Retraining recipe**: cls, {b['dataset']}, {b['images']} training images, the test images, width "
                f"{b['width']}, depth {b['depth']}, {b['epochs']} epochs, batch {b['batch']}, lr {b['lr']}, seeds "
                f"{', '.join(str(x) for x in retrain.get('seeds', []))}; best test top-1 of each run, mean over the seeds."]
    machines = sorted({s["machine"] for s in summ.values() if s and s.get("machine")})
    out += ["", "**Machine.** " + ("; ".join(machines) if machines else "not recorded yet") + "."]
    return out


def _reference_lines(retrain: dict, table: dict) -> list[str]:
    if not table:
        return ["*Retraining not run yet*: `python tools/reproduce.py --pipeline remedies --only retrain` "
                "(after the searches)."]
    out = []
    zoo = [r for r in table.values() if r["group"] == "zoo"]
    for r in zoo:
        out.append(f"- {r['genotype']} (published): {_seeds(r)}, percentile {fnum(r['percentile_vs_random'], 0)}, "
                   f"{r['normal_skip_connect']} skips and {r['normal_param_free']} parameter-free ops in its normal cell.")
    rand = [r for r in table.values() if r["group"] == "random" and math.isfinite(r["mean"])]
    if rand:
        m = [r["mean"] for r in rand]
        out.append(f"- {len(rand)} random genotypes (no `none`, distinct inputs): mean top-1 {fnum(min(m))}-{fnum(max(m))}% "
                   f"(mean {fnum(sum(m) / len(m))}%).")
    spread = [max(r["seeds"].values()) - min(r["seeds"].values()) for r in table.values()
              if len(r["seeds"]) > 1 and not r.get("same_as")]
    if spread:
        out.append(f"- Seed noise: the seeds of one genotype differ by {fnum(sum(spread) / len(spread))} points on average "
                   f"(at most {fnum(max(spread))}, over {len(spread)} genotypes); a difference of means smaller than that "
                   "is not evidence.")
    return out


def _legend(plan, ref_name) -> list[str]:
    rem = "; ".join(f"**{r['NAME']}**: {r['TITLE']}" + (f" (derived from the {r['FROM']} search's alphas)" if r["FROM"] else "")
                    for r in plan["remedies"])
    return [f"Remedies: {rem}.", "",
            "Skip and parameter-free counts are of the derived normal cell's 8 ops (parameter-free: "
            f"{', '.join(PARAM_FREE_OPS)}). Eigenvalue: the Hessian's largest eigenvalue after the first and the last "
            "epoch it was computed (max over the search in brackets; a P-DARTS curve spans supernets of growing depth). "
            "Search wall, CPU and peak RSS are the search process's own (over every invocation, `(= x)`: the search of "
            "remedy x, whose alphas it derives from). Percentile: the share of the random genotypes whose mean is lower "
            "(ties half); few random genotypes make it coarse. `= step`: the same genotype as that step's, trained once."]


def _verdicts(plan, summ, table, ref_name) -> list[str]:
    if not table:
        return []
    out = ["## Per task", ""]
    for task, _ in plan["tasks"]:
        ref = table.get(step_name(task, ref_name))
        parts = []
        for r in plan["remedies"]:
            t = table.get(step_name(task, r["NAME"]))
            s = summ.get(step_name(task, r["NAME"]))
            if not t or not s:
                continue
            from search_spaces.darts.genotype import Genotype
            c = cell_counts(Genotype.from_dict(s["genotype"]))
            d = "" if r["NAME"] == ref_name or not ref else f", {t['mean'] - ref['mean']:+.2f}"
            parts.append(f"{r['NAME']} {fnum(t['mean'])}% ({c['normal_skips']} skips{d})")
        if not parts:
            continue
        means = {r["NAME"]: table[step_name(task, r["NAME"])]["mean"] for r in plan["remedies"]
                 if step_name(task, r["NAME"]) in table}
        top = max((m for m in means.values() if math.isfinite(m)), default=None)
        best = " = ".join(n for n, m in means.items() if m == top) if top is not None else "n/a"
        out.append(f"- **{task}**: " + "; ".join(parts) + f". Best retrained cell: {best}.")
    return out + [""]


def _keys_table(plan, summ, ref_name) -> list[str]:
    rows = []
    for r in plan["remedies"]:
        for task, _ in plan["tasks"]:
            s, ref = summ.get(step_name(task, r["NAME"])), summ.get(step_name(task, ref_name))
            if s and ref:
                rows.append([r["NAME"], _keys(s, ref) if r["NAME"] != ref_name else "(the recipe above)"])
                break
    if not rows:
        return []
    return ["## What each remedy sets", "", f"Config keys that differ from the {ref_name} search of the same task:", "",
            *md_table(["remedy", "keys"], rows), ""]


def _curves(plan, summ) -> list[str]:
    eig_rows, skip_rows, epochs_e, epochs_s = [], [], set(), set()
    for task, _ in plan["tasks"]:
        for r in plan["remedies"]:
            s = summ.get(step_name(task, r["NAME"]))
            if not s:
                continue
            curve = s.get("curve", [])
            e = dict(_eigs(curve))
            k = {int(c["epoch"]): c.get("normal_skips") for c in curve if "epoch" in c}
            epochs_e |= set(e)
            epochs_s |= set(k)
            eig_rows.append((task, r["NAME"], e))
            skip_rows.append((task, r["NAME"], k))
    out = []
    if epochs_e:
        cols = sorted(epochs_e)
        out += ["## Eigenvalue curves", "", "The Hessian's largest eigenvalue (w.r.t. the alphas, RobustDARTS' "
                "measure) after each epoch it was computed (epochs counted from 1):", "",
                *md_table(["task", "remedy", *[f"ep {c + 1}" for c in cols]],
                          [[t, n, *[f"{e[c]:.3g}" if c in e else "" for c in cols]] for t, n, e in eig_rows]), ""]
    if epochs_s:
        cols = sorted(epochs_s)
        out += ["## Skip connections in the normal cell, per epoch", "",
                *md_table(["task", "remedy", *[f"ep {c + 1}" for c in cols]],
                          [[t, n, *[str(k[c]) if k.get(c) is not None else "" for c in cols]] for t, n, k in skip_rows]), ""]
    return out


def _genotypes(plan, summ) -> list[str]:
    out = []
    for task, _ in plan["tasks"]:
        for r in plan["remedies"]:
            s = summ.get(step_name(task, r["NAME"]))
            if s:
                out.append(f"- `{step_name(task, r['NAME'])}`: `{s['genotype_repr']}`")
    return ["<details><summary>the derived genotypes</summary>", "", *out, "", "</details>", ""] if out else []


def _cost(ctx, plan, summ, retrain) -> list[str]:
    searches = [s for s in summ.values() if s and s.get("kind") == "search" and s.get("process")]
    wall = sum(s["process"].get("wall_seconds") or 0 for s in searches)
    cpu = sum(s["process"].get("cpu_seconds") or 0 for s in searches)
    out = ["## Cost and provenance", ""]
    if searches:
        out.append(f"- {len(searches)} searches: {fsecs(wall)} of search-process wall time in all, {fsecs(cpu)} CPU "
                   f"(up to --workers ran at once, one thread each).")
    if retrain:
        out.append(f"- Retraining: {retrain.get('jobs', '?')} jobs, {fsecs(retrain.get('job_span_seconds'))} from the first "
                   f"start to the last finish, {fsecs(retrain.get('job_wall_sum_seconds'))} of job time.")
    wall_all = read_json(ctx.results / rp.WALL_FILE) or {}
    if wall_all:
        out.append(f"- reproduce.py's own wall time over all steps and invocations: "
                   f"{fsecs(sum(v['seconds'] for v in wall_all.values()))}.")
    cmds = sorted({s["command"] for s in summ.values() if s and s.get("command")})
    if cmds:
        out += ["", "Run with: " + "; ".join(f"`{c}`" for c in cmds) + "."]
    lines = [c for s in summ.values() if s for c in s.get("commands", [])]
    if lines:
        out += ["", "<details><summary>the commands the steps ran</summary>", "", "```", *lines, "```", "", "</details>"]
    commits = sorted({(s.get("git_commit") or "unknown") + (" with uncommitted changes" if s.get("git_dirty") else "")
                      for s in summ.values() if s})
    if commits:
        out += ["", f"Commit(s): {', '.join(commits)}; dates {min(str(s['date'])[:10] for s in summ.values() if s)} to "
                f"{max(str(s['date'])[:10] for s in summ.values() if s)}."]
    rebuild = shlex.join(["python", "tools/reproduce.py", "--pipeline", "remedies", "--report"])
    out += ([""] if out[-1] else []) + [f"Rebuild this page from the results alone: `{rebuild}`."]
    return out


# ---------------------------------------------------------------------------------------------------

PIPELINE_DEF = Pipeline(
    "remedies", "first-order DARTS vs its collapse remedies on cifar10-mini (issue 11, docs/search_remedies.md)",
    plan_steps, write_remedies_report, "experiments/remedies", os.path.join("runs", "remedies"),
    os.path.join("results", "remedies"), "docs/search_remedies.md",
    kinds={"derive": Kind(run_derive, progress_derive, lambda ctx, step, s, rel: [])})
