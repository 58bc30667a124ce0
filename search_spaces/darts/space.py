"""The DARTS search space as an object: its ops, its edges, sampling, validation and builders.

The search loop and the rank-correlation study talk to this object only, so a new space (another
op set, more nodes) is a new class registered in :mod:`search_spaces`, not a change to them.
"""
from __future__ import annotations

import random
from typing import Sequence

from .genotype import Genotype, GenotypeError, num_edges
from .ops import PRIMITIVES
from .supernet import ArchParameters, SupernetTrunk


class DartsSpace:
    name = "darts"
    network_options: tuple[str, ...] = ()   # MODEL.* keys build_network takes as keywords (none: width, depth)
    has_aux_head = True
    has_drop_path = True

    def __init__(self, primitives: Sequence[str] = PRIMITIVES, steps: int = 4):
        self.primitives = tuple(primitives)
        self.steps = steps

    @property
    def num_edges(self) -> int:
        return num_edges(self.steps)

    def edges(self) -> list[tuple[int, int]]:
        """(input state, node) for every edge, in alpha-row order."""
        return [(j, node + 2) for node in range(self.steps) for j in range(node + 2)]

    def build_supernet(self, in_channels: int, width: int, depth: int, stem: str = "cifar",
                       single_reduction: bool = False, partial_channels: int = 1,
                       aux_skip: bool = False, op_mask=None) -> SupernetTrunk:
        """``partial_channels=K > 1``: PC-DARTS partial channel connections (C/K channels per mixed op);
        ``aux_skip``: DARTS-' auxiliary skip connection on every edge; ``op_mask``: (normal, reduce)
        (edges, ops) booleans, the ops kept on each edge (P-DARTS), None = all."""
        return SupernetTrunk(in_channels, width, depth, stem, single_reduction, self.primitives, self.steps,
                             partial_channels=partial_channels, aux_skip=aux_skip, op_mask=op_mask)

    def new_arch_parameters(self, generator=None, edge_normalization: bool = False, op_mask=None,
                            max_skips_normal: int = 0) -> ArchParameters:
        """``edge_normalization``: PC-DARTS per-edge weights (softmax over each node's inputs);
        ``op_mask``: the ops kept on each edge (P-DARTS); ``max_skips_normal > 0``: at most that many
        skip connections in the derived normal cell (P-DARTS' rule)."""
        return ArchParameters(self.steps, self.primitives, generator, edge_normalization, op_mask, max_skips_normal)

    def derive(self, arch: ArchParameters) -> Genotype:
        return arch.genotype()

    def sample(self, rng: random.Random, allow_none: bool = True, distinct_inputs: bool = False) -> Genotype:
        """Uniform random genotype: each node draws 2 inputs among its predecessors and an op for each.

        The UnNAS sample allows both ``none`` and a node reading the same input twice (the defaults).
        """
        ops = [p for p in self.primitives if allow_none or p != "none"]

        def cell():
            pairs = []
            for node in range(self.steps):
                preds = list(range(node + 2))
                inputs = rng.sample(preds, 2) if distinct_inputs else [rng.choice(preds), rng.choice(preds)]
                pairs += [(rng.choice(ops), j) for j in inputs]
            return pairs

        concat = list(range(2, self.steps + 2))
        return Genotype(cell(), concat, cell(), concat)

    # ---- architectures as the training code and the study read and store them --------------
    @staticmethod
    def owns(stored: dict) -> bool:
        """Whether a stored architecture dict (archs.json, the store, a checkpoint) is a genotype."""
        return isinstance(stored, dict) and "normal" in stored and "reduce" in stored

    def arch_from_dict(self, d: dict) -> Genotype:
        return Genotype.from_dict(d)

    def arch_from_value(self, value) -> Genotype:
        """A genotype as an architecture list holds it: a dict, an UnNAS ``[normal, nc, reduce, rc]`` list or text."""
        if isinstance(value, Genotype):
            return value
        if isinstance(value, str):
            return Genotype.parse(value)
        if isinstance(value, list):
            return Genotype.from_unnas_list(value)
        return Genotype.from_dict(value)

    def parse(self, text: str) -> Genotype:
        return Genotype.parse(text)

    def resolve(self, spec) -> Genotype:
        """A zoo name, genotype file, release YAML or genotype string (:func:`zoo.resolve_genotype`)."""
        from . import zoo
        return zoo.resolve_genotype(spec)

    def arch_from_release_config(self, doc, source: str = "<config>") -> Genotype:
        from .zoo import release_genotype
        return release_genotype(doc, source)   # NAS.CUSTOM_GENOTYPE or a NAS.GENOTYPE name

    def dedup_key(self, genotype: Genotype) -> Genotype:
        return genotype

    def example(self) -> Genotype:
        from . import zoo
        return zoo.resolve_genotype("DARTS_V2")

    def eval_setting(self, dataset: str):
        from . import zoo
        return zoo.eval_setting(dataset)

    def eval_width(self, spec, dataset: str) -> int | None:
        """The UnNAS evaluation width of a zoo genotype (or a release YAML naming one), else None."""
        from . import zoo
        name = zoo.genotype_name(spec)
        return zoo.eval_width(name, dataset) if name else None

    def shape_text(self, depth: int, **_) -> str:
        return f"depth {depth}"

    def build_network(self, genotype: Genotype, head_factory, num_outputs: int, in_channels: int, width: int,
                      depth: int, stem: str, single_reduction: bool = False, auxiliary: bool = False):
        from .network import build_network
        return build_network(genotype, head_factory, num_outputs, in_channels, width, depth, stem, single_reduction,
                             auxiliary)

    def validate(self, genotype: Genotype) -> Genotype:
        """Raise :class:`GenotypeError` unless ``genotype`` lies in this space."""
        if not isinstance(genotype, Genotype):
            raise GenotypeError(f"the {self.name} space takes DARTS genotypes, got {type(genotype).__name__}; set "
                                "MODEL.SPACE to the space of the architecture list")
        for name, cell in (("normal", genotype.normal), ("reduce", genotype.reduce)):
            if len(cell) != 2 * self.steps:
                raise GenotypeError(f"{name} cell has {len(cell) // 2} nodes; the {self.name} space has {self.steps}")
            for op, _ in cell:
                if op not in self.primitives:
                    raise GenotypeError(f"{name} cell uses {op!r}, which is not an op of the {self.name} space {list(self.primitives)}")
        return genotype
