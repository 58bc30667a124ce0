"""Which network a training run builds: one function, ``resolve_network``, for a fresh genotype,
a trunk initialised from another run (``TRAIN.INIT_FROM``: pretext pretraining, then a probe or a
fine-tune) and a checkpoint's own network (``meta``: resume, ``--eval-only``).

The answer is a :class:`NetworkPlan`, which the checkpoint records as ``meta`` and from which
:func:`build_train_network` builds the module through the plan's search space (``MODEL.SPACE``;
the space reads, validates and builds its architectures, so nothing here knows a space's name). Task capabilities are read from the task's declared
attributes (``per_image_logits``, ``input_kind``, ``single_reduction``), never from its name.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from search_spaces import get_space
from search_spaces.darts.network import FixedNetwork
from search_spaces.darts.stems import choose_stem
from unnas.config import ConfigError
from unnas.data import DataError
from unnas.engine import load_checkpoint
from unnas.tasks import TASKS, build_task


@dataclass(frozen=True)
class NetworkPlan:
    genotype: dict
    width: int
    depth: int
    stem: str
    single_reduction: bool
    trunk_in_channels: int
    input_task: str            # the task whose inputs the trunk was trained on (its ``make_input``)
    aux: bool
    space: str = "darts"       # the genotype's search space (checkpoints from before the key: darts)
    options: dict = field(default_factory=dict)   # the space's network_options (nasbench101: stacks, modules)

    def meta(self, task, linear_probe: bool) -> dict:
        """What a checkpoint records to rebuild this network."""
        return {**asdict(self), "task": task.name, "num_outputs": task.num_outputs, "linear_probe": linear_probe}


def not_a_training_checkpoint(path, state: dict) -> DataError:
    """One line for a checkpoint that ``tools/train.py`` did not write (e.g. a search's checkpoint.pt)."""
    if "arch" in state and "alpha_history" in state:
        found = Path(path).parent / "genotype.json"
        return DataError(f"{path} is a search checkpoint (tools/search.py), not a trained network; train the genotype "
                         f"it found first (tools/train.py --genotype {found}) and pass that run's checkpoint_best.pt")
    return DataError(f"{path} is not a checkpoint of tools/train.py (no 'meta'); pass the checkpoint_last.pt or "
                     "checkpoint_best.pt of a training run")


def _eval_width(space, spec, stem: str, single_reduction: bool) -> int:
    kind = "cifar10" if stem == "cifar" else ("cityscapes" if single_reduction else "imagenet")
    width = space.eval_width(spec, kind)   # DARTS: a zoo name, or a release YAML naming one
    if not width:
        raise ConfigError(f"MODEL.WIDTH 0 means the genotype's UnNAS eval width, but {spec!r} has none for "
                          f"{kind}; set MODEL.WIDTH explicitly")
    return width


def resolve_network(cfg, task, info, genotype=None, meta: dict | None = None):
    """Return ``(plan, init_state, init_source)``: the network to build, the trunk weights to load
    (INIT_FROM, else None) and where they came from (for the summary; None when from scratch)."""
    probe = bool(cfg.TRAIN.LINEAR_PROBE)
    init_state = init_source = None
    if meta is None and cfg.TRAIN.INIT_FROM:
        init = load_checkpoint(cfg.TRAIN.INIT_FROM)
        if "meta" not in init:
            raise not_a_training_checkpoint(cfg.TRAIN.INIT_FROM, init)
        meta = init["meta"]
        init_state = {k[len("trunk."):]: v for k, v in init["model"].items() if k.startswith("trunk.")}
        init_source = {"path": str(cfg.TRAIN.INIT_FROM), "task": meta.get("task"), "epoch": init.get("epoch")}
    elif cfg.TRAIN.INIT_FROM:  # a resumed or re-evaluated probe/fine-tune run: the network comes from ``meta``
        init_source = {"path": str(cfg.TRAIN.INIT_FROM), "task": None, "epoch": None}

    if meta is not None:
        space = get_space(meta.get("space", "darts"))
        g = space.arch_from_dict(meta["genotype"])
        width, depth, stem = meta["width"], meta["depth"], meta["stem"]
        single_reduction, trunk_in = meta["single_reduction"], meta["trunk_in_channels"]
        input_task = meta.get("input_task", meta.get("task", task.name))
        options = dict(meta.get("options", {}))
    else:
        space = get_space(cfg.MODEL.SPACE)
        spec = genotype if genotype is not None else cfg.MODEL.GENOTYPE
        g = space.resolve(spec)   # not validate(): a DARTS cell of 5 nodes (AmoebaNet) trains too
        width, depth = cfg.MODEL.WIDTH, cfg.MODEL.DEPTH
        stem = choose_stem(cfg.MODEL.STEM, info.image_size)
        if width == 0:
            width = _eval_width(space, spec, stem, task.single_reduction)
        single_reduction, trunk_in, input_task = task.single_reduction, task.in_channels, task.name
        options = {name: cfg.MODEL[name.upper()] for name in space.network_options}
        if cfg.MODEL.DROP_PATH > 0 and not space.has_drop_path:
            raise ConfigError(f"MODEL.DROP_PATH: the {space.name} space has no drop-path; set MODEL.DROP_PATH 0")

    if single_reduction != task.single_reduction:
        raise ConfigError(f"the checkpoint's trunk has {'one reduction' if single_reduction else 'two reductions'}"
                          f" but task {task.name} needs {'one' if task.single_reduction else 'two'}; "
                          "fine-tune/probe with a task of the same output stride")
    if TASKS.get(input_task).input_kind != task.input_kind:
        if task.images_per_sample != 1:
            raise ConfigError(f"a trunk trained on {TASKS.get(input_task).input_kind} inputs (task {input_task}) can "
                              f"only be probed with a task whose input is the image itself (cls, seg), not {task.name}")
    elif trunk_in != task.in_channels:
        raise ConfigError(f"the checkpoint's trunk takes {trunk_in} input channels but task {task.name} "
                          f"gives {task.in_channels}")
    aux = bool(cfg.MODEL.AUX) and not probe
    if aux and not space.has_aux_head:
        raise ConfigError(f"MODEL.AUX: the {space.name} space has no auxiliary head; set MODEL.AUX False")
    if aux and not task.per_image_logits:
        raise ConfigError(f"MODEL.AUX needs a per-image classification head (tasks cls, rot); task "
                          f"{task.name} predicts something else: set MODEL.AUX False")
    plan = NetworkPlan(g.to_dict(), width, depth, stem, single_reduction, trunk_in, input_task, aux, space.name, options)
    return plan, init_state, init_source


def input_adapter(plan: NetworkPlan, task, info):
    """The task whose ``make_input`` feeds the trunk when it reads another kind of input than
    ``task`` gives (a colorization trunk reads L), else None."""
    if TASKS.get(plan.input_task).input_kind == task.input_kind:
        return None
    return build_task(plan.input_task, info)


def plan_arch(plan: NetworkPlan):
    """The plan's architecture as its space's object (a DARTS ``Genotype``, a NAS-Bench-101 ``CellSpec``)."""
    return get_space(plan.space).arch_from_dict(plan.genotype)


def build_train_network(plan: NetworkPlan, task) -> FixedNetwork:
    space = get_space(plan.space)
    arch = space.arch_from_dict(plan.genotype)
    groups = getattr(TASKS.get(plan.input_task), "input_groups", None)
    if groups:   # a split trunk (splitbrain), also under a probe: one sub-network per input group
        return _split_network(space, arch, groups, plan, task)
    return space.build_network(arch, task.build_head, task.num_outputs,
                               plan.trunk_in_channels, plan.width, plan.depth, plan.stem, plan.single_reduction,
                               plan.aux, **plan.options)


def _split_network(space, arch, groups, plan: NetworkPlan, task) -> FixedNetwork:
    """Sub-networks of ``width / len(groups)`` channels built by the space, their trunks wrapped in a
    :class:`~search_spaces.split.SplitTrunk`, then the task's head on the concatenated features."""
    import torch.nn as nn

    from search_spaces.split import SplitTrunk, split_width
    if plan.aux:
        raise ConfigError(f"MODEL.AUX: the trunk of task {plan.input_task} is split into sub-networks, which have "
                          "no auxiliary head; set MODEL.AUX False")
    try:
        width = split_width(plan.width, groups)
    except ValueError as exc:
        raise ConfigError(f"MODEL.WIDTH: task {plan.input_task} splits the trunk; {exc}") from None
    trunks = [space.build_network(arch, lambda c: nn.Identity(), task.num_outputs, len(g), width, plan.depth,
                                  plan.stem, plan.single_reduction, False, **plan.options).trunk for g in groups]
    trunk = SplitTrunk(trunks, groups)
    return FixedNetwork(trunk, task.build_head(trunk.out_channels))
