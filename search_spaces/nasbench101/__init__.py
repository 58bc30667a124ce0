"""The NAS-Bench-101 search space (Ying et al., ICML 2019), as the UnNAS release's ``nas_bench`` backbone."""
from .network import Module, NasBenchTrunk, vertex_channels
from .space import NasBench101Space
from .spec import MAX_EDGES, MAX_VERTICES, OPS, CellSpec, SpecError

__all__ = ["CellSpec", "SpecError", "OPS", "MAX_EDGES", "MAX_VERTICES", "NasBench101Space", "NasBenchTrunk",
           "Module", "vertex_channels"]
