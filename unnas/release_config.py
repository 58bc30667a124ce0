"""Read the UnNAS release's YAML configs as they are, in ``tools/search.py``, ``tools/train.py`` and
``tools/rank_corr.py run`` (``--cfg``).

The release (facebookresearch/unnas) ships pycls-style configs: search phase
(``configs/search_based/search_phase/<dataset>/<task>.yaml``), evaluation phase
(``configs/search_based/eval_phase/{cls,seg}/<arch>.yaml``) and sample-based
(``configs/sample_based/darts/<dataset>/<task>/ID.yaml``), with keys such as ``MODEL.TYPE``,
``NAS.WIDTH``, ``OPTIM.BASE_LR``, ``TRAIN.DATASET`` and ``RNG_SEED``. A file holding any key that only
the release has (:func:`is_release_config`) is translated key by key with :data:`RULES` (the table is
data; ``docs/release_configs.md`` renders it), over the release's own defaults for the keys the file
leaves out (:data:`RELEASE_DEFAULTS`); our settings that have no release key but must match how the
release runs are set too (:data:`RELEASE_BEHAVIOUR`). A notice lists what became what, what is
ignored (the release's machinery: GPUs, cuDNN, log destinations, ...) and what is not reproduced
(the search's precise BN). A key or value with no equivalent here (``MODEL.TYPE resnet``, ``nas_bench``,
``OPTIM.LR_POLICY steps``, a class count that contradicts the task) is one ConfigError line.

``RNG_SEED`` is also an alias of our ``SEED`` in our own YAMLs and on the command line (in the study,
whose ``SEED`` is set per job, of ``STUDY.SEEDS [n]``).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from unnas.config import ConfigError

TOOL_NAMES = {"search": "tools/search.py", "train": "tools/train.py", "study": "tools/rank_corr.py"}
MACHINERY = "release machinery"


# ---- rule kinds ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class To:
    """Copy the value to our ``key`` (through ``conv``)."""
    key: str
    conv: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class Ignore:
    """No effect here (``why``). With ``ok`` only those values are ignored; any other value has no equivalent
    (``bad`` says why)."""
    why: str = MACHINERY
    ok: tuple = ()
    bad: str = ""


@dataclass(frozen=True)
class Differs:
    """Accepted, but the release's behaviour is not reproduced (a notice line, not an error); values in
    ``inert`` ask for nothing to reproduce."""
    why: str
    inert: tuple = ()


@dataclass(frozen=True)
class Special:
    """Translated by a handler below (the value depends on other keys or on the tool)."""
    name: str


@dataclass(frozen=True)
class Rule:
    search: Any
    train: Any
    study: Any = None      # None: as train (the study trains fixed genotypes with the trainer's keys)

    def for_tool(self, tool: str):
        if tool == "study" and self.study is not None:
            return self.study
        return getattr(self, "train" if tool == "study" else tool)


def _all(action) -> Rule:
    return Rule(action, action)


def _ints(v):
    return [int(x) for x in v]


# ---- the translation table -----------------------------------------------------------------------
# release key -> what it becomes for each tool (reference: pycls/core/config.py of the release).
RULES: dict[str, Rule] = {
    # top level
    "TASK": _all(Special("task")),
    "JIGSAW_GRID": _all(To("TASK.JIGSAW_GRID")),
    "RNG_SEED": Rule(To("SEED"), To("SEED"), study=To("STUDY.SEEDS", lambda v: [int(v)])),
    "OUT_DIR": _all(Special("out_dir")),
    "LOG_PERIOD": _all(To("LOG_PERIOD")),
    "NUM_GPUS": _all(Ignore("processes: torchrun --nproc_per_node N; TRAIN.BATCH_SIZE stays the total")),
    "LOG_DEST": _all(Ignore("we log to stderr and OUT_DIR/log.txt")),
    "CFG_DEST": _all(Ignore("we write OUT_DIR/config.yaml")),
    "DIST_BACKEND": _all(Ignore("torchrun picks nccl on GPU, gloo on CPU")),
    "HOST": _all(Ignore()),
    "PORT": _all(Ignore()),
    "DOWNLOAD_CACHE": _all(Ignore()),
    # MODEL
    "MODEL.TYPE": _all(Special("model_type")),
    "MODEL.DEPTH": _all(Ignore("ResNet depth; the cell count is NAS.DEPTH")),
    "MODEL.NUM_CLASSES": _all(Special("num_classes")),
    "MODEL.INPUT_CHANNELS": _all(Special("input_channels")),
    "MODEL.LOSS_FUN": _all(Special("loss")),
    "MODEL.LABEL_SMOOTHING_EPS": _all(Special("loss")),
    "MODEL.ASPP_CHANNELS": _all(To("TASK.SEG_ASPP_CHANNELS")),
    "MODEL.ASPP_RATES": _all(To("TASK.SEG_ASPP_RATES", _ints)),
    # NAS
    "NAS.GENOTYPE": _all(Special("genotype")),
    "NAS.CUSTOM_GENOTYPE": _all(Special("genotype")),
    "NAS.WIDTH": _all(To("MODEL.WIDTH")),
    "NAS.DEPTH": _all(To("MODEL.DEPTH")),
    "NAS.AUX": Rule(Ignore("the supernet has no auxiliary head", ok=(False,),
                           bad="the search supernet has no auxiliary head"), To("MODEL.AUX")),
    "NAS.AUX_WEIGHT": Rule(Ignore("the supernet has no auxiliary head"), To("MODEL.AUX_WEIGHT")),
    "NAS.DROP_PROB": Rule(Ignore("no drop-path in the search", ok=(0, 0.0), bad="the search has no drop-path"),
                          To("MODEL.DROP_PATH")),
    "NAS.MATRIX": _all(Ignore("NAS-Bench-101 only")),
    "NAS.OPS": _all(Ignore("NAS-Bench-101 only")),
    "NAS.NUM_STACKS": _all(Ignore("NAS-Bench-101 only")),
    "NAS.NUM_MODULES_PER_STACK": _all(Ignore("NAS-Bench-101 only")),
    # BN (NAS networks use PyTorch's BN defaults, as ours)
    "BN.EPS": _all(Ignore("PyTorch's default, as ours", ok=(1e-5,), bad="our BN layers use eps 1e-5")),
    "BN.MOM": _all(Ignore("PyTorch's default, as ours", ok=(0.1,), bad="our BN layers use momentum 0.1")),
    "BN.USE_PRECISE_STATS": Rule(Differs("no precise-BN pass in the search: BN keeps the running averages of "
                                         "training; the trainer has one, TRAIN.PRECISE_BN_IMAGES", inert=(False,)),
                                 Special("precise_bn")),
    "BN.NUM_SAMPLES_PRECISE": Rule(Ignore("only used with BN.USE_PRECISE_STATS"), Special("precise_bn")),
    "BN.ZERO_INIT_FINAL_GAMMA": _all(Ignore("ResNet/AnyNet blocks only")),
    "BN.USE_CUSTOM_WEIGHT_DECAY": _all(Ignore("off", ok=(False,), bad="no separate weight decay for BN parameters")),
    "BN.CUSTOM_WEIGHT_DECAY": _all(Ignore("only used with BN.USE_CUSTOM_WEIGHT_DECAY")),
    # OPTIM
    "OPTIM.BASE_LR": _all(To("OPTIM.LR")),
    "OPTIM.LR_POLICY": _all(Special("lr_policy")),
    "OPTIM.GAMMA": _all(Ignore("only used by LR_POLICY steps/exp")),
    "OPTIM.STEPS": _all(Ignore("only used by LR_POLICY steps")),
    "OPTIM.LR_MULT": _all(Ignore("only used by LR_POLICY steps")),
    "OPTIM.MAX_EPOCH": Rule(To("SEARCH.EPOCHS"), To("TRAIN.EPOCHS")),
    "OPTIM.MOMENTUM": _all(To("OPTIM.MOMENTUM")),
    "OPTIM.DAMPENING": _all(Ignore("0, PyTorch's default", ok=(0, 0.0), bad="SGD dampening is fixed at 0")),
    "OPTIM.NESTEROV": _all(To("OPTIM.NESTEROV")),
    "OPTIM.WEIGHT_DECAY": _all(To("OPTIM.WEIGHT_DECAY")),
    "OPTIM.WARMUP_EPOCHS": Rule(Ignore("no warm-up", ok=(0, 0.0), bad="the search has no LR warm-up"),
                                To("OPTIM.WARMUP_EPOCHS")),
    "OPTIM.WARMUP_FACTOR": Rule(Ignore("the search has no warm-up"), To("OPTIM.WARMUP_FACTOR")),
    "OPTIM.ITER_LR": _all(To("OPTIM.ITER_LR")),
    "OPTIM.ARCH_BASE_LR": Rule(To("ARCH.LR"), Ignore("search only")),
    "OPTIM.ARCH_WEIGHT_DECAY": Rule(To("ARCH.WEIGHT_DECAY"), Ignore("search only")),
    "OPTIM.ARCH_OPTIM": Rule(To("ARCH.OPTIMIZER"), Ignore("search only")),
    "OPTIM.ARCH_EPOCH": Rule(To("SEARCH.ARCH_START_EPOCH"), Ignore("search only")),
    # TRAIN
    "TRAIN.DATASET": _all(Special("dataset")),
    "TRAIN.SPLIT": _all(Ignore("the data set's training split", ok=("train",), bad="we train on the train split")),
    "TRAIN.BATCH_SIZE": Rule(To("SEARCH.BATCH_SIZE"), To("TRAIN.BATCH_SIZE")),
    "TRAIN.IM_SIZE": _all(To("DATA.IM_SIZE")),
    "TRAIN.EVAL_PERIOD": Rule(To("SEARCH.EVAL_PERIOD"), To("TRAIN.EVAL_PERIOD")),
    "TRAIN.CHECKPOINT_PERIOD": _all(Ignore("we checkpoint every epoch")),
    "TRAIN.AUTO_RESUME": _all(Ignore("resume with --resume")),
    "TRAIN.WEIGHTS": _all(Ignore("empty", ok=("",), bad="release .pyth weights cannot be loaded; start from "
                                                        "scratch or --finetune one of our checkpoints")),
    "TRAIN.GRAY_PERCENTAGE": _all(To("TASK.GRAY_PROB")),
    "TRAIN.PORTION": Rule(To("SEARCH.PORTION"), Ignore("the whole split", ok=(1, 1.0),
                                                       bad="training on part of the split is search only")),
    # TEST
    "TEST.DATASET": _all(Special("test_dataset")),
    "TEST.SPLIT": _all(Ignore("the data set's test split", ok=("val", "test"),
                              bad="we test on the data set's test split (CIFAR test, ImageNet/Cityscapes val)")),
    "TEST.BATCH_SIZE": Rule(Ignore("the release's search evaluates with TRAIN.BATCH_SIZE"),
                            To("TRAIN.TEST_BATCH_SIZE")),
    "TEST.IM_SIZE": _all(To("DATA.TEST_IM_SIZE")),
    "TEST.WEIGHTS": _all(Ignore("empty", ok=("",), bad="release .pyth weights cannot be loaded; evaluate one of "
                                                       "our checkpoints with tools/train.py --eval-only")),
    # loader and the rest of the machinery
    "DATA_LOADER.NUM_WORKERS": _all(To("DATA.NUM_WORKERS")),
    "DATA_LOADER.PIN_MEMORY": _all(Ignore()),
    "CUDNN.BENCHMARK": _all(Ignore("cuDNN autotuning; DETERMINISTIC decides here")),
    "MEM.RELU_INPLACE": _all(Ignore()),
    "PREC_TIME.WARMUP_ITER": _all(Ignore("timing: tools/bench.py")),
    "PREC_TIME.NUM_ITER": _all(Ignore("timing: tools/bench.py")),
    "PREC_TIME.BATCH_SIZE": _all(Ignore("timing: tools/bench.py")),
    "PREC_TIME.ENABLED": _all(Ignore("timing: tools/bench.py")),
}

# The release's defaults (pycls/core/config.py) of the keys whose value changes a run: a release file
# relies on them for every key it leaves out. Not listed (ours decide): data set, image sizes, workers,
# OUT_DIR, LOG_PERIOD, MODEL.NUM_CLASSES / INPUT_CHANNELS (derived by our tasks).
RELEASE_DEFAULTS: dict[str, Any] = {
    "TASK": "cls", "JIGSAW_GRID": 3, "TRAIN.GRAY_PERCENTAGE": 0.0,
    "MODEL.LOSS_FUN": "cross_entropy", "MODEL.LABEL_SMOOTHING_EPS": 0.0,
    "MODEL.ASPP_CHANNELS": 256, "MODEL.ASPP_RATES": [6, 12, 18],
    "NAS.GENOTYPE": "nas", "NAS.WIDTH": 16, "NAS.DEPTH": 20, "NAS.AUX": False, "NAS.AUX_WEIGHT": 0.4,
    "NAS.DROP_PROB": 0.0,
    "OPTIM.BASE_LR": 0.1, "OPTIM.LR_POLICY": "cos", "OPTIM.MAX_EPOCH": 200, "OPTIM.MOMENTUM": 0.9,
    "OPTIM.NESTEROV": True, "OPTIM.WEIGHT_DECAY": 5e-4, "OPTIM.WARMUP_FACTOR": 0.1, "OPTIM.WARMUP_EPOCHS": 0,
    "OPTIM.ITER_LR": False, "OPTIM.ARCH_BASE_LR": 3e-4, "OPTIM.ARCH_WEIGHT_DECAY": 1e-3,
    "OPTIM.ARCH_OPTIM": "adam", "OPTIM.ARCH_EPOCH": 0.0,
    "TRAIN.BATCH_SIZE": 128, "TRAIN.EVAL_PERIOD": 1, "TEST.BATCH_SIZE": 200,
    "BN.USE_PRECISE_STATS": False, "BN.NUM_SAMPLES_PRECISE": 1024,
}
# Defaults that only matter for one task.
_TASK_ONLY_DEFAULTS = {"JIGSAW_GRID": "jig", "TRAIN.GRAY_PERCENTAGE": "jig", "MODEL.ASPP_CHANNELS": "seg",
                       "MODEL.ASPP_RATES": "seg"}

# Our keys without a release key, set so the run does what the release's does.
RELEASE_BEHAVIOUR: dict[str, dict[str, tuple[Any, str]]] = {
    "search": {
        "SEARCH.STEPS_PER_EPOCH": (0, "a full pass over the weight half per epoch"),
        "SEARCH.EVAL_BATCHES": (0, "the whole held-out half"),
        "SEARCH.ORDER": ("first", "the release is first-order only"),
        "OPTIM.GRAD_CLIP": (5.0, "the release clips at 5"),
    },
    "train": {
        "DATA.MAX_TRAIN": (0, "all training images"),
        "DATA.MAX_TEST": (0, "all test images"),
        "TRAIN.STEPS_PER_EPOCH": (0, "full passes"),
        "TRAIN.EVAL_BATCHES": (0, "the whole test split"),
        "OPTIM.GRAD_CLIP": (0.0, "the release's trainer does not clip"),
        "TRAIN.CUTOUT": (0, "no cutout in the release"),
    },
}
RELEASE_BEHAVIOUR["study"] = RELEASE_BEHAVIOUR["train"]

# Release data sets -> class count of their cls/seg task (to check MODEL.NUM_CLASSES).
RELEASE_DATASETS = {"cifar10": 10, "imagenet": 1000, "imagenet22k": 21841, "cityscapes": 19}
_TASK_OUTPUTS = {"rot": 4, "col": 313}

# Study: keys the release sets per task folder; they go to TASK_RECIPES.<TASK> for the file's task
# unless it is cls or col (the base recipe, as the study's defaults define it).
_PER_TASK_KEYS = ("OPTIM.LR", "TRAIN.BATCH_SIZE", "TRAIN.TEST_BATCH_SIZE", "TASK.JIGSAW_GRID",
                  "TASK.JIGSAW_NUM_PERMS", "TASK.GRAY_PROB", "TASK.SEG_ASPP_CHANNELS", "TASK.SEG_ASPP_RATES")
_BASE_RECIPE_TASKS = ("cls", "col")


# ---- detection -----------------------------------------------------------------------------------
def flatten(doc: dict, prefix: str = "") -> dict:
    """``{"A": {"B": 1}}`` -> ``{"A.B": 1}`` (lists and other values are leaves), in file order."""
    out = {}
    for k, v in doc.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _our_leaves() -> set:
    from unnas.config import _flat
    from unnas.search.config import search_defaults
    from unnas.study.config import study_defaults
    from unnas.train.config import train_defaults
    keys = set()
    for d in (search_defaults(), train_defaults(), study_defaults()):
        keys |= set(_flat(d))
    return keys


_MARKERS: set | None = None


def release_only_keys() -> set:
    """Keys that only the release has (none of our tools): one of them makes a file a release config.
    ``RNG_SEED`` is not one (it is also our alias of SEED)."""
    global _MARKERS
    if _MARKERS is None:
        _MARKERS = set(RULES) - _our_leaves() - {"RNG_SEED"}
    return _MARKERS


def is_release_config(doc) -> bool:
    """Whether a loaded YAML mapping is an UnNAS release config (holds a key only the release has)."""
    if not isinstance(doc, dict):
        return False
    if isinstance(doc.get("TASK"), str):       # the release's TASK is a string, ours a node
        return True
    return any(k in release_only_keys() for k in flatten(doc))


def tool_of(cfg) -> str:
    """search | study | train: which tool's defaults ``cfg`` holds."""
    return "search" if "SEARCH" in cfg else ("study" if "STUDY" in cfg else "train")


# ---- translation ---------------------------------------------------------------------------------
@dataclass
class Translation:
    tool: str
    values: dict = field(default_factory=dict)       # our key -> value, in merge order
    translated: list = field(default_factory=list)   # notice lines, one per release key of the file
    defaults: list = field(default_factory=list)     # release defaults the file relies on
    behaviour: list = field(default_factory=list)    # our keys set to run as the release
    ignored: list = field(default_factory=list)
    differs: list = field(default_factory=list)
    kept: list = field(default_factory=list)         # our own keys found in the file
    hints: list = field(default_factory=list)
    problems: list = field(default_factory=list)     # keys/values with no equivalent
    model_type: str = ""

    def notice(self, source: str) -> list[str]:
        what = f" (MODEL.TYPE {self.model_type})" if self.model_type else ""
        lines = [f"{source}: UnNAS release config{what}, translated for {TOOL_NAMES[self.tool]}:"]
        lines += [f"  {x}" for x in self.translated]
        for title, items in (("release defaults for keys the file leaves out", self.defaults),
                             ("set to run as the release", self.behaviour),
                             ("ignored (no effect here)", self.ignored),
                             ("not reproduced", self.differs),
                             ("kept as written (our keys)", self.kept)):
            if items:
                lines.append(f"  {title}: " + "; ".join(items))
        lines += [f"  {x}" for x in self.hints]
        return lines


def _fmt(v) -> str:
    if isinstance(v, (list, tuple)):
        text = "[" + ", ".join(_fmt(x) for x in v) + "]"
    else:
        text = str(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _leaf(cfg, key):
    node = cfg
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def _accepts(cfg, key: str) -> bool:
    """Whether ``key`` is a leaf of ``cfg`` or falls under a node that accepts new keys."""
    node = cfg
    for part in key.split("."):
        if not hasattr(node, "keys"):
            return False
        if part not in node:
            return bool(getattr(node, "is_new_allowed", lambda: False)())
        node = node[part]
    return not hasattr(node, "keys")


def _equal(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(a)))
    return a == b


def _canonical_task(value) -> str | None:
    from unnas.tasks import UnknownTask, canonical_task_name
    try:
        return canonical_task_name(str(value))
    except (UnknownTask, KeyError):
        return None


def translate(doc: dict, tool: str, cfg=None) -> Translation:
    """Translate a release config mapping for ``tool`` (search, train or study); ``cfg`` (the tool's
    current config) decides which defaults and behaviour settings are worth a notice and which of
    the file's keys are our own. Problems are collected in ``Translation.problems``."""
    if cfg is None:
        from unnas.search.config import search_defaults
        from unnas.study.config import study_defaults
        from unnas.train.config import train_defaults
        cfg = {"search": search_defaults, "train": train_defaults, "study": study_defaults}[tool]()
    t = Translation(tool)
    given = flatten(doc)
    # a node ours and the release's share, written our way (TASK: {NAME: rot}), is ours
    if isinstance(doc.get("TASK"), dict):
        given.pop("TASK", None)
    eff = dict(RELEASE_DEFAULTS)
    eff.update({k: v for k, v in given.items() if k in RULES})
    eff["__given__"] = set(given)
    task = _canonical_task(eff["TASK"])
    t.model_type = str(given.get("MODEL.TYPE", "") or "")

    # MODEL.TYPE decides whether anything else is worth translating
    problem = _model_type_problem(t.model_type, tool)
    if problem:
        t.problems.append(problem)
        return t

    file_values, default_values = {}, {}
    done = set()
    for key, value in given.items():
        if key in done:
            continue
        if key not in RULES:
            if _accepts(cfg, key):
                t.kept.append(f"{key} {_fmt(value)}")
                continue
            t.problems.append(f"{key} is neither a key of the UnNAS release's config nor one of ours")
            continue
        _apply(key, value, eff, task, tool, t, file_values, t.translated, done, explicit=True)

    # the release's defaults for the keys the file leaves out
    default_lines = []
    for key, value in RELEASE_DEFAULTS.items():
        if key in given or key in done:
            continue
        only = _TASK_ONLY_DEFAULTS.get(key)
        if only and task != only:
            continue
        if key == "NAS.GENOTYPE" and (tool != "train" or "NAS.CUSTOM_GENOTYPE" in given):
            continue
        if tool == "search" and key in ("OPTIM.WARMUP_FACTOR", "NAS.AUX_WEIGHT"):
            continue
        if key.startswith("OPTIM.ARCH_") and tool != "search":
            continue
        before = len(t.problems)
        out: dict = {}
        lines: list = []
        _apply(key, value, eff, task, tool, t, out, lines, done, explicit=False)
        changed = {k: v for k, v in out.items() if _leaf(cfg, k) is _MISSING or not _equal(_leaf(cfg, k), v)}
        if changed and len(t.problems) == before:
            default_values.update(out)
            default_lines.append(f"{key} {_fmt(value)} -> " + ", ".join(f"{k} {_fmt(v)}" for k, v in changed.items()))
    t.defaults = default_lines

    values = {**default_values, **file_values}
    for key, (value, why) in RELEASE_BEHAVIOUR[tool].items():
        if key in values or key in given:
            continue
        if _leaf(cfg, key) is not _MISSING and not _equal(_leaf(cfg, key), value):
            values[key] = value
            t.behaviour.append(f"{key} {_fmt(value)} ({why})")
    if tool == "study":
        values = _route_study(values, task, t)
    values.update({k: v for k, v in given.items() if k not in RULES and _accepts(cfg, k)})
    t.values = values

    dataset = str(eff.get("TRAIN.DATASET", "") or "").lower()
    root = values.get("DATA.ROOT", _leaf(cfg, "DATA.ROOT"))
    if dataset and not root:
        t.hints.append(f"DATA.ROOT: release configs have none (the release reads pycls/datasets/data/{dataset}); "
                       "pass --data-dir (or DATA.ROOT)")
    return t


def _model_type_problem(model_type: str, tool: str) -> str | None:
    mt = model_type.strip().lower()
    if not mt:
        return None
    wanted = {"search": "nas_search", "train": "nas", "study": "nas"}[tool]
    if mt == wanted:
        return None
    if mt == "nas_search":
        return (f"MODEL.TYPE nas_search is a search-phase config: run it with tools/search.py --cfg, not "
                f"{TOOL_NAMES[tool]}")
    if mt == "nas":
        return ("MODEL.TYPE nas is an evaluation-network config (fixed genotype): train it with tools/train.py --cfg "
                "(or study it with tools/rank_corr.py run --cfg), not tools/search.py")
    if mt == "nas_bench":
        from search_spaces import SPACES
        return ("MODEL.TYPE nas_bench (NAS-Bench-101 cells) has no equivalent here: the search spaces are "
                f"{', '.join(SPACES.names())} (search_spaces/); use the DARTS-space configs")
    return (f"MODEL.TYPE {model_type} has no equivalent here: only DARTS cells are implemented (MODEL.TYPE "
            "nas_search for tools/search.py, nas for tools/train.py and tools/rank_corr.py)")


def _apply(key, value, eff, task, tool, t: Translation, out: dict, lines: list, done: set, explicit: bool):
    """Translate one release key into ``out`` (our key -> value) and a line into ``lines``."""
    action = RULES[key].for_tool(tool)
    shown = f"{key} {_fmt(value)}"
    if isinstance(action, To):
        try:
            v = action.conv(value) if action.conv else value
        except (TypeError, ValueError):
            t.problems.append(f"{key} {_fmt(value)}: not a valid value")
            return
        out[action.key] = v
        lines.append(f"{shown} -> {action.key} {_fmt(v)}")
    elif isinstance(action, Ignore):
        if action.ok and not any(_equal(value, ok) for ok in action.ok):
            t.problems.append(f"{shown} has no equivalent here ({action.bad or action.why})")
        elif explicit:
            t.ignored.append(shown if action.why == MACHINERY else f"{shown} ({action.why})")
    elif isinstance(action, Differs):
        if any(_equal(value, v) for v in action.inert):
            if explicit:
                t.ignored.append(shown)
        elif explicit:
            t.differs.append(f"{shown} ({action.why})")
    elif isinstance(action, Special):
        _SPECIAL[action.name](key, value, eff, task, tool, t, out, lines, done, explicit)


# ---- handlers of the Special rules ---------------------------------------------------------------
def _h_task(key, value, eff, task, tool, t, out, lines, done, explicit):
    if task is None:
        from unnas.tasks import TASKS
        t.problems.append(f"TASK {value} has no equivalent here (tasks: {', '.join(TASKS.names())})")
        return
    if tool == "study":
        if explicit:
            t.translated.append(f"TASK {value}: the file's per-task keys set "
                                + ("the base recipe (cls, col)" if task in _BASE_RECIPE_TASKS else
                                   f"TASK_RECIPES.{task.upper()}") + " (the study sets TASK.NAME per job)")
        return
    out["TASK.NAME"] = task
    lines.append(f"TASK {value} -> TASK.NAME {task}")


def _h_out_dir(key, value, eff, task, tool, t, out, lines, done, explicit):
    if value in (None, "", "."):
        t.ignored.append(f"OUT_DIR {value} (pass --out or OUT_DIR; not the current folder)")
        return
    out["OUT_DIR"] = str(value)
    lines.append(f"OUT_DIR {value} -> OUT_DIR {value}")


def _expected_outputs(task, eff):
    dataset = str(eff.get("TRAIN.DATASET", "") or "").lower()
    if task in _TASK_OUTPUTS:
        return _TASK_OUTPUTS[task]
    if task == "cls":
        return RELEASE_DATASETS.get(dataset) if dataset != "cityscapes" else None
    if task == "seg":
        return RELEASE_DATASETS["cityscapes"] if dataset == "cityscapes" else None
    if task == "jig" and int(eff.get("JIGSAW_GRID", 3)) == 2:
        return 24
    return None


def _h_num_classes(key, value, eff, task, tool, t, out, lines, done, explicit):
    try:
        n = int(value)
    except (TypeError, ValueError):
        t.problems.append(f"MODEL.NUM_CLASSES {value!r}: not an integer")
        return
    if task == "jig" and int(eff.get("JIGSAW_GRID", 3)) != 2:
        out["TASK.JIGSAW_NUM_PERMS"] = n
        lines.append(f"MODEL.NUM_CLASSES {n} -> TASK.JIGSAW_NUM_PERMS {n} (jigsaw permutations)")
        return
    expected = _expected_outputs(task, eff)
    if expected is None:
        lines.append(f"MODEL.NUM_CLASSES {n}: not checked (our task {task} derives its outputs from the data)")
    elif n == expected:
        lines.append(f"MODEL.NUM_CLASSES {n}: consistent (task {task} derives {n} outputs)")
    else:
        on = f" on {eff['TRAIN.DATASET']}" if eff.get("TRAIN.DATASET") else ""
        t.problems.append(f"MODEL.NUM_CLASSES {n} contradicts task {task}{on} ({expected} outputs); fix the file")


def _h_model_type(key, value, eff, task, tool, t, out, lines, done, explicit):
    what = "the DARTS supernet (MODEL.SPACE darts)" if tool == "search" else "a fixed-genotype network (MODEL.GENOTYPE)"
    lines.append(f"MODEL.TYPE {value}: {what}")


def _h_input_channels(key, value, eff, task, tool, t, out, lines, done, explicit):
    expected = 1 if task == "col" else 3
    if str(value).strip().lstrip("-").isdigit() and int(value) == expected:
        lines.append(f"MODEL.INPUT_CHANNELS {value}: consistent (task {task} feeds {expected})")
    else:
        t.problems.append(f"MODEL.INPUT_CHANNELS {value} contradicts task {task} ({expected} input channels)")


def _h_loss(key, value, eff, task, tool, t, out, lines, done, explicit):
    done.update({"MODEL.LOSS_FUN", "MODEL.LABEL_SMOOTHING_EPS"})
    fun = str(eff.get("MODEL.LOSS_FUN", "cross_entropy"))
    eps = float(eff.get("MODEL.LABEL_SMOOTHING_EPS", 0.0) or 0.0)
    if fun == "label_smoothed_cross_entropy":
        shown = f"MODEL.LOSS_FUN {fun}, MODEL.LABEL_SMOOTHING_EPS {eps}"
        if tool == "search":
            if eps > 0:
                t.problems.append(f"{shown} has no equivalent here (the search has no label smoothing)")
            return
        out["OPTIM.LABEL_SMOOTHING"] = eps
        lines.append(f"{shown} -> OPTIM.LABEL_SMOOTHING {eps} (eps/(K-1) off-target, as the release)")
    elif fun == "cross_entropy":
        if tool != "search":
            out["OPTIM.LABEL_SMOOTHING"] = 0.0
            lines.append("MODEL.LOSS_FUN cross_entropy -> OPTIM.LABEL_SMOOTHING 0.0")
        elif explicit:
            t.ignored.append("MODEL.LOSS_FUN cross_entropy (the search's loss)")
        if explicit and "MODEL.LABEL_SMOOTHING_EPS" in eff and eps:
            t.ignored.append(f"MODEL.LABEL_SMOOTHING_EPS {eps} (only used by label_smoothed_cross_entropy)")
    else:
        t.problems.append(f"MODEL.LOSS_FUN {fun} has no equivalent here (cross_entropy, "
                          "label_smoothed_cross_entropy)")


def _h_precise_bn(key, value, eff, task, tool, t, out, lines, done, explicit):
    done.update({"BN.USE_PRECISE_STATS", "BN.NUM_SAMPLES_PRECISE"})
    given = eff["__given__"]
    use, n = eff.get("BN.USE_PRECISE_STATS", False), eff.get("BN.NUM_SAMPLES_PRECISE", 1024)
    if not isinstance(use, bool):
        t.problems.append(f"BN.USE_PRECISE_STATS {use!r}: not True or False")
        return
    if not use:
        out["TRAIN.PRECISE_BN_IMAGES"] = 0
        lines.append("BN.USE_PRECISE_STATS False -> TRAIN.PRECISE_BN_IMAGES 0 (no precise BN)")
        if explicit and "BN.NUM_SAMPLES_PRECISE" in given:
            t.ignored.append(f"BN.NUM_SAMPLES_PRECISE {_fmt(n)} (only used with BN.USE_PRECISE_STATS)")
        return
    if isinstance(n, bool) or not str(n).strip().isdigit() or int(n) < 1:
        t.problems.append(f"BN.NUM_SAMPLES_PRECISE {n!r}: not a positive integer")
        return
    n = int(n)
    shown = "BN.USE_PRECISE_STATS True, BN.NUM_SAMPLES_PRECISE " + (f"{n}" if "BN.NUM_SAMPLES_PRECISE" in given
                                                                   else f"{n} (release default)")
    out["TRAIN.PRECISE_BN_IMAGES"] = n
    lines.append(f"{shown} -> TRAIN.PRECISE_BN_IMAGES {n} (BN statistics recomputed on training batches before "
                 "each evaluation)")


def _h_lr_policy(key, value, eff, task, tool, t, out, lines, done, explicit):
    if str(value) != "cos":
        t.problems.append(f"OPTIM.LR_POLICY {value} has no equivalent here (only the cosine schedule, cos)")
        return
    if tool != "search":
        out["OPTIM.SCHEDULE"] = "cos"
    out["OPTIM.LR_MIN"] = 0.0
    lines.append("OPTIM.LR_POLICY cos -> " + ("" if tool == "search" else "OPTIM.SCHEDULE cos, ")
                 + "OPTIM.LR_MIN 0.0 (pycls cosine decays to 0)")


def _h_genotype(key, value, eff, task, tool, t, out, lines, done, explicit):
    done.update({"NAS.GENOTYPE", "NAS.CUSTOM_GENOTYPE"})
    given = eff["__given__"]
    # the release's default NAS.GENOTYPE is 'nas'; a file with only NAS.CUSTOM_GENOTYPE means that one
    name = eff.get("NAS.GENOTYPE") if "NAS.GENOTYPE" in given or "NAS.CUSTOM_GENOTYPE" not in given else None
    custom = eff.get("NAS.CUSTOM_GENOTYPE")
    nas = {"NAS": {k: v for k, v in (("GENOTYPE", name), ("CUSTOM_GENOTYPE", custom)) if v is not None}}
    keys = " + ".join(k for k in ("NAS.GENOTYPE", "NAS.CUSTOM_GENOTYPE") if (k == "NAS.GENOTYPE" and name is not None)
                      or (k == "NAS.CUSTOM_GENOTYPE" and custom is not None))
    if tool != "train":
        why = ("the search derives its own genotype" if tool == "search" else
               "the study's architectures come from STUDY.ARCHS (--archs; a folder of ID.yaml files works)")
        t.ignored.append(f"{keys} ({why})")
        return
    from search_spaces.darts import zoo
    from search_spaces.darts.genotype import GenotypeError
    try:
        g = zoo.release_genotype(nas, "NAS")
    except GenotypeError as exc:
        t.problems.append(str(exc.args[0]))
        return
    zoo_name = zoo.release_genotype_name(nas)
    value = zoo_name or repr(g)
    out["MODEL.GENOTYPE"] = value
    shown = f"NAS.GENOTYPE {name}" if zoo_name else f"{keys} ({len(g.normal)} + {len(g.reduce)} ops)"
    lines.append(f"{shown} -> MODEL.GENOTYPE {_fmt(value)}")


def _h_dataset(key, value, eff, task, tool, t, out, lines, done, explicit):
    name = str(value).strip().lower()
    if name not in RELEASE_DATASETS:
        from unnas.data import DATASETS
        if name not in DATASETS:
            t.problems.append(f"TRAIN.DATASET {value} has no equivalent here (release data sets: "
                              f"{', '.join(RELEASE_DATASETS)})")
            return
    out["DATA.DATASET"] = name
    # the release picks the CIFAR network for a CIFAR data set and the ImageNet one (stride-8 stem) otherwise
    out["MODEL.STEM"] = stem = "cifar" if "cifar" in name else "imagenet"
    lines.append(f"TRAIN.DATASET {value} -> DATA.DATASET {name}, MODEL.STEM {stem}")


def _h_test_dataset(key, value, eff, task, tool, t, out, lines, done, explicit):
    train = str(eff.get("TRAIN.DATASET", "") or "").lower()
    if train and str(value).lower() != train:
        t.problems.append(f"TEST.DATASET {value} differs from TRAIN.DATASET {train}: testing on another data set has "
                          "no equivalent here")
    elif explicit:
        t.ignored.append(f"TEST.DATASET {value} (the test split of DATA.DATASET)")


_SPECIAL = {"task": _h_task, "out_dir": _h_out_dir, "model_type": _h_model_type, "num_classes": _h_num_classes,
            "input_channels": _h_input_channels, "loss": _h_loss, "lr_policy": _h_lr_policy,
            "genotype": _h_genotype, "dataset": _h_dataset, "test_dataset": _h_test_dataset,
            "precise_bn": _h_precise_bn}


def _route_study(values: dict, task: str | None, t: Translation) -> dict:
    """Study: the file's per-task keys go to ``TASK_RECIPES.<TASK>`` unless its task is cls or col."""
    if task is None or task in _BASE_RECIPE_TASKS:
        return values
    out = {}
    for k, v in values.items():
        out[f"TASK_RECIPES.{task.upper()}.{k}" if k in _PER_TASK_KEYS else k] = v
    moved = [k for k in values if k in _PER_TASK_KEYS]
    if moved:
        t.hints.append(f"study: {', '.join(moved)} set TASK_RECIPES.{task.upper()} (the file's task); the other "
                       "tasks keep their recipes")
    return out


# ---- entry points for the config loader ----------------------------------------------------------
def _nest(flat: dict) -> dict:
    out: dict = {}
    for key, v in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


_SHOWN: set = set()


def _say(lines: Sequence[str], once_key) -> None:
    if once_key in _SHOWN or os.environ.get("RANK", "0") not in ("", "0"):
        return
    _SHOWN.add(once_key)
    print("\n".join(lines), file=sys.stderr, flush=True)


def _seed_alias(tool: str, value) -> tuple[str, Any]:
    return ("STUDY.SEEDS", [int(value)]) if tool == "study" else ("SEED", value)


def as_our_keys(cfg, loaded: dict, source: str) -> dict:
    """A loaded YAML mapping in our keys: an UnNAS release config translated (the notice is printed
    on stderr, once per file and tool; no equivalent -> one ConfigError line), ``RNG_SEED`` of our own
    YAMLs renamed; anything else as is."""
    tool = tool_of(cfg)
    if is_release_config(loaded):
        t = translate(loaded, tool, cfg)
        if t.problems:
            raise ConfigError("; ".join(t.problems))
        _say(t.notice(source), (os.path.abspath(source), tool))
        return _nest(t.values)
    if "RNG_SEED" in loaded:
        loaded = dict(loaded)
        value = loaded.pop("RNG_SEED")
        key, v = _seed_alias(tool, value)
        if key in flatten(loaded):
            raise ConfigError(f"RNG_SEED and {key} both given; keep one (RNG_SEED is the release's name of {key})")
        node = loaded
        *parents, leaf = key.split(".")
        for p in parents:
            node[p] = dict(node.get(p) or {})
            node = node[p]
        node[leaf] = v
    return loaded


def command_line_aliases(cfg, opts: Sequence) -> list:
    """``KEY VALUE`` overrides with the release's ``RNG_SEED n`` as ``SEED n`` (study: ``STUDY.SEEDS [n]``)."""
    out = list(opts)
    tool = None
    for k in range(0, len(out) - 1, 2):
        if out[k] == "RNG_SEED":
            tool = tool or tool_of(cfg)
            key, v = _seed_alias(tool, out[k + 1])
            out[k] = key
            if tool == "study":
                out[k + 1] = f"[{out[k + 1]}]" if isinstance(out[k + 1], str) else v
    return out
