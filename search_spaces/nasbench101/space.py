"""The NAS-Bench-101 space as an object, with the interface the training code and the study use
(the same methods as :class:`~search_spaces.darts.space.DartsSpace`): parsing and storing specs,
sampling, validation and the network of every task.

Sampling rule (:meth:`NasBench101Space.sample`, NAS-Bench-101's own ``random_spec``): each of the
21 edges of a 7-vertex upper-triangular matrix is present with probability 1/2 and each of the 5
interior vertices draws its op uniformly from :data:`OPS`; a draw that is not a valid spec (more
than 9 edges, or no input -> output path) is rejected and drawn again. The result is uniform over
valid 7-vertex *labelled* specs; a study's sample (:func:`unnas.study.sampling.sample_archs`) then
redraws any spec whose :meth:`~CellSpec.graph_hash` it already holds, so no two ids are the same
network. (Uniform over labelled specs is not uniform over NAS-Bench-101's 423,624 unique graphs:
a graph with many labellings, or whose pruning removes vertices, is drawn more often. The release's
500 are indices into the benchmark; to reproduce the paper use that list, not a new sample.)
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from .spec import INPUT, MAX_EDGES, MAX_VERTICES, OPS, OUTPUT, CellSpec, SpecError

# A representative spec for code that needs one network of the space before it knows the
# architectures (the study's proxy batch): NAS-Bench-101's Inception-like example cell.
EXAMPLE = CellSpec(((0, 1, 1, 1, 0, 1, 0), (0, 0, 0, 0, 0, 0, 1), (0, 0, 0, 0, 0, 0, 1), (0, 0, 0, 0, 1, 0, 0),
                    (0, 0, 0, 0, 0, 0, 1), (0, 0, 0, 0, 0, 0, 1), (0, 0, 0, 0, 0, 0, 0)),
                   (INPUT, "conv1x1-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "maxpool3x3",
                    OUTPUT))


@dataclass(frozen=True)
class EvalSetting:
    """The network of a data set's release recipe (``tools/info.py``): the same fields as the DARTS
    table, plus the builder's ``options``."""
    num_classes: int
    input_hw: tuple[int, int]
    width: int                 # stem channels (the release's NAS.WIDTH)
    depth: int                 # modules in all (stacks x modules per stack), for display
    stem: str
    aux: bool
    task: str
    options: dict


EVAL_SETTINGS = {
    "cifar10": EvalSetting(10, (32, 32), 128, 9, "cifar", False, "cls", {"num_stacks": 3, "modules_per_stack": 3}),
    "imagenet": EvalSetting(1000, (224, 224), 128, 12, "imagenet", False, "cls", {"num_stacks": 3, "modules_per_stack": 4}),
}


class NasBench101Space:
    name = "nasbench101"
    primitives = OPS
    # MODEL.<KEY upper-cased> config keys the training code hands to build_network as keywords.
    network_options = ("num_stacks", "modules_per_stack")
    has_aux_head = False
    has_drop_path = False

    # ---- architectures: reading, writing, identity --------------------------------------
    @staticmethod
    def owns(stored: dict) -> bool:
        """Whether a stored architecture dict (archs.json, the store, a checkpoint) is one of this space's."""
        return isinstance(stored, dict) and "matrix" in stored and "ops" in stored

    def arch_from_dict(self, d: dict) -> CellSpec:
        return CellSpec.from_dict(d)

    def arch_from_value(self, value) -> CellSpec:
        """A spec as an architecture list holds it: an object with matrix and ops, or its JSON text."""
        if isinstance(value, CellSpec):
            return value
        if isinstance(value, str):
            return CellSpec.parse(value)
        return CellSpec.from_dict(value)

    def parse(self, text: str) -> CellSpec:
        return CellSpec.parse(text)

    def resolve(self, spec) -> CellSpec:
        """A :class:`CellSpec`, a dict, JSON or ``CellSpec(...)`` text, or a JSON file holding one spec (``{"matrix", "ops"}``,
        also under ``"genotype"``) or an UnNAS release NAS-Bench config (``ID.yaml``)."""
        if not isinstance(spec, str):
            return self.arch_from_value(spec)
        text = spec.strip()
        if not text.startswith(("{", "[", "CellSpec")) and Path(text).is_file():
            path = Path(text)
            if path.suffix in (".yaml", ".yml"):
                import yaml
                return self.arch_from_release_config(yaml.safe_load(path.read_text()), str(path))
            try:
                return CellSpec.parse(path.read_text())
            except SpecError as exc:
                raise SpecError(f"{path}: {exc}") from None
        if not text.startswith(("{", "CellSpec")):
            raise SpecError(f"{text[:80]!r} is neither a spec file nor a spec; the {self.name} space takes "
                            '{"matrix": [[...]], "ops": ["input", ..., "output"]} (JSON), CellSpec(matrix=..., ops=...) '
                            "or a file holding one")
        return CellSpec.parse(text)

    def arch_from_release_config(self, doc, source: str = "<config>") -> CellSpec:
        """The spec of an UnNAS release NAS-Bench config (``configs/sample_based/nas_bench/.../ID.yaml``)."""
        nas = doc.get("NAS") if isinstance(doc, dict) else None
        if not isinstance(nas, dict) or "MATRIX" not in nas or "OPS" not in nas:
            raise SpecError(f"{source}: no NAS.MATRIX and NAS.OPS; expected an UnNAS NAS-Bench config")
        try:
            return CellSpec(nas["MATRIX"], nas["OPS"])
        except SpecError as exc:
            raise SpecError(f"{source}: {exc}") from None

    def dedup_key(self, arch: CellSpec) -> str:
        """Two specs with this key equal are the same network (isomorphic after pruning)."""
        return arch.graph_hash()

    def validate(self, arch) -> CellSpec:
        if not isinstance(arch, CellSpec):
            raise SpecError(f"the {self.name} space takes NAS-Bench-101 specs (matrix and ops), got "
                            f"{type(arch).__name__}; set MODEL.SPACE to the space of the architecture list")
        return arch

    def example(self) -> CellSpec:
        return EXAMPLE

    # ---- sampling ----------------------------------------------------------------------
    def sample(self, rng: random.Random, **darts_options) -> CellSpec:
        """One spec by the module doc's rule. ``darts_options`` (``allow_none``, ``distinct_inputs``:
        rules of the DARTS cell) do not apply here: this space has no ``none`` op and one edge per pair."""
        n = MAX_VERTICES
        while True:
            matrix = [[1 if j > i and rng.random() < 0.5 else 0 for j in range(n)] for i in range(n)]
            ops = [INPUT] + [rng.choice(OPS) for _ in range(n - 2)] + [OUTPUT]
            if sum(map(sum, matrix)) > MAX_EDGES:
                continue
            try:
                return CellSpec(matrix, ops)
            except SpecError:   # disconnected: draw again
                continue

    # ---- networks ------------------------------------------------------------------------
    def eval_setting(self, dataset: str) -> EvalSetting:
        try:
            return EVAL_SETTINGS[dataset]
        except KeyError:
            raise KeyError(f"the {self.name} space has release settings for {', '.join(EVAL_SETTINGS)}, "
                           f"not {dataset!r}") from None

    def eval_width(self, spec, dataset: str) -> int | None:
        """Width 0 in a config means this: the release's stem width, 128 on every data set."""
        return EVAL_SETTINGS["cifar10"].width

    def shape_text(self, depth: int, num_stacks: int = 3, modules_per_stack: int = 3, **_) -> str:
        return f"{num_stacks} stacks x {modules_per_stack} modules"

    def build_network(self, arch: CellSpec, head_factory, num_outputs: int, in_channels: int, width: int, depth: int,
                      stem: str, single_reduction: bool = False, auxiliary: bool = False, num_stacks: int = 3,
                      modules_per_stack: int = 3):
        """Trunk + the task head ``head_factory(C)`` (``depth`` and ``num_outputs`` are the DARTS builder's:
        this space counts modules with ``num_stacks`` x ``modules_per_stack`` and has no auxiliary head)."""
        from search_spaces.darts.network import FixedNetwork   # the space-neutral trunk + head wrapper

        from .network import NasBenchTrunk

        if auxiliary:
            raise SpecError("NAS-Bench-101 networks have no auxiliary head; set MODEL.AUX False")
        trunk = NasBenchTrunk(self.validate(arch), in_channels, width, num_stacks, modules_per_stack, stem,
                              single_reduction)
        return FixedNetwork(trunk, head_factory(trunk.out_channels))
