"""DARTS search supernet: softmax-relaxed mixed ops on every edge of every cell.

The supernet holds only network weights. Architecture logits live in
:class:`ArchParameters`, apart from the weights, and their softmax is passed to ``forward``: the
weight optimiser never sees them and DDP can wrap the supernet alone.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn as nn

from .genotype import derive_genotype, num_edges
from .ops import PRIMITIVES, FactorizedReduce, ReLUConvBN, build_op
from .stems import build_stem, reduction_layers


class ArchWeights(NamedTuple):
    """Relaxed architecture weights handed to the supernet: per-edge op weights per cell type,
    and optional per-edge weights (PC-DARTS edge normalisation)."""
    normal: torch.Tensor
    reduce: torch.Tensor
    normal_edges: Optional[torch.Tensor] = None
    reduce_edges: Optional[torch.Tensor] = None

    def detach(self) -> "ArchWeights":
        return ArchWeights(*(None if t is None else t.detach() for t in self))


class MixedOp(nn.Module):
    """sum_k w_k * op_k(x). ``none`` contributes exactly zero, so it is not computed."""

    def __init__(self, c: int, stride: int, primitives: Sequence[str] = PRIMITIVES):
        super().__init__()
        self.ops = nn.ModuleList()
        self.op_index = []  # alpha column of each computed op
        for k, name in enumerate(primitives):
            if name == "none":
                continue
            self.ops.append(build_op(name, c, stride, affine=False, pool_bn=True))
            self.op_index.append(k)

    def forward(self, x, w):
        out = None
        for k, op in zip(self.op_index, self.ops):
            y = w[k] * op(x)
            out = y if out is None else out + y
        return out


class SearchCell(nn.Module):
    def __init__(self, steps, multiplier, c_pp, c_p, c, reduction, reduction_prev,
                 primitives: Sequence[str] = PRIMITIVES):
        super().__init__()
        self.reduction = reduction
        self.steps = steps
        self.multiplier = multiplier
        self.preprocess0 = (FactorizedReduce(c_pp, c, affine=False) if reduction_prev
                            else ReLUConvBN(c_pp, c, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList()
        for node in range(steps):
            for j in range(node + 2):
                stride = 2 if reduction and j < 2 else 1
                self.edges.append(MixedOp(c, stride, primitives))

    def forward(self, s0, s1, weights):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        e = 0
        for _node in range(self.steps):
            s = None
            for h in states:
                y = self.edges[e](h, weights[e])
                s = y if s is None else s + y
                e += 1
            states.append(s)
        return torch.cat(states[-self.multiplier:], dim=1)


class SupernetTrunk(nn.Module):
    """Stem + cells; returns the last cell's feature map (the task supplies the head)."""

    def __init__(self, in_channels: int, width: int, depth: int, stem: str = "cifar",
                 single_reduction: bool = False, primitives: Sequence[str] = PRIMITIVES,
                 steps: int = 4, multiplier: int = 4, stem_multiplier: int = 3):
        super().__init__()
        self.steps = steps
        self.primitives = tuple(primitives)
        self.reductions = reduction_layers(depth, single_reduction)
        self.stem = build_stem(stem, in_channels, width, stem_multiplier)
        c_pp, c_p, reduction_prev = self.stem.cell_inputs
        c = width
        self.cells = nn.ModuleList()
        for i in range(depth):
            reduction = i in self.reductions
            if reduction:
                c *= 2
            self.cells.append(SearchCell(steps, multiplier, c_pp, c_p, c, reduction, reduction_prev, primitives))
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c
        self.out_channels = c_p

    def forward(self, x, weights: ArchWeights):
        s0, s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, weights.reduce if cell.reduction else weights.normal)
        return s1


class SearchModel(nn.Module):
    """Trunk + task head. ``forward(x, weights)`` with :class:`ArchWeights` from ``ArchParameters.weights()``."""

    def __init__(self, trunk: SupernetTrunk, head: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.head = head

    def forward(self, x, weights: ArchWeights):
        return self.head(self.trunk(x, weights), x.shape[-2:])


class ArchParameters(nn.Module):
    """One (edges, ops) logit tensor per cell type, initialised 1e-3 * N(0, 1) as in DARTS."""

    def __init__(self, steps: int = 4, primitives: Sequence[str] = PRIMITIVES,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.steps = steps
        self.primitives = tuple(primitives)
        shape = (num_edges(steps), len(primitives))
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(shape, generator=generator))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(shape, generator=generator))

    def weights(self) -> ArchWeights:
        return ArchWeights(torch.softmax(self.alpha_normal, dim=-1), torch.softmax(self.alpha_reduce, dim=-1))

    def genotype(self):
        return derive_genotype(self.alpha_normal, self.alpha_reduce, self.primitives, self.steps)
