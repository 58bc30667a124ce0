"""NAS-Bench-101 networks, built as the benchmark builds them (``nasbench/lib/model_builder.py``)
and as the UnNAS release's ``nas_bench`` backbone does, with our task heads on top.

Module (one cell, from the *pruned* spec; ``C_in`` -> ``C_out`` channels):

* channels (:func:`vertex_channels`): the output's ``C_out`` channels are split evenly among the
  interior vertices that feed the output, the remainder one channel each to the first of them;
  every other interior vertex takes the max of its successors' channels (going backwards), so
  channels never grow along an edge and the concatenation has exactly ``C_out`` channels;
* a vertex sums its inputs: an edge from the cell input is a 1x1 conv-BN-ReLU projection to the
  vertex's channels, an edge from an interior vertex is that vertex's output truncated to the
  first channels (it has at most one more, from the remainder), then applies its op
  (conv3x3-BN-ReLU, conv1x1-BN-ReLU, or a 3x3 stride-1 max-pool, which keeps the channels);
* the output concatenates the vertices that feed it (in vertex order); an input -> output edge
  adds a projection of the input to ``C_out`` (or is the whole output when nothing else feeds it).

Trunk: stem, then ``num_stacks`` stacks of ``modules_per_stack`` modules; before every stack but
the first, a 2x2 stride-2 max-pool (TF ``same`` padding: ``ceil_mode``) and twice the channels.
Stems: ``cifar`` one 3x3 conv-BN-ReLU to ``width`` (NAS-Bench-101); ``imagenet`` three stride-2
3x3 conv-BN-ReLU, ``in -> width/2 -> width -> width`` (the release's ImageNet stem, stride 8).
``single_reduction`` (dense tasks, segmentation) keeps only the first stack's max-pool, so the
output stride is 16 after the ImageNet stem (the channels still double at every stack).

BN uses PyTorch's defaults (eps 1e-5, momentum 0.1), as the release; NAS-Bench-101's TF code has
momentum 0.997 (0.003 in PyTorch's convention). Parameter counts do not depend on it.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .spec import CONV1X1, CONV3X3, MAXPOOL3X3, CellSpec

STEMS = ("cifar", "imagenet")


def vertex_channels(matrix, in_channels: int, out_channels: int) -> list[int]:
    """Channels of every vertex of a pruned cell (input first, output last); see the module doc."""
    n = len(matrix)
    channels = [0] * n
    channels[0], channels[-1] = in_channels, out_channels
    if n == 2:
        return channels
    feeding = [v for v in range(1, n - 1) if matrix[v][n - 1]]
    share, extra = divmod(out_channels, len(feeding))
    for k, v in enumerate(feeding):
        channels[v] = share + (1 if k < extra else 0)
    for v in range(n - 3, 0, -1):     # vertex n-2 feeds only the output (the spec is pruned)
        if not matrix[v][n - 1]:
            channels[v] = max(channels[w] for w in range(v + 1, n - 1) if matrix[v][w])
    if min(channels[1:-1]) <= 0:
        raise ValueError(f"output channels {out_channels} are too few for {len(feeding)} vertices feeding the output")
    return channels


class ConvBNReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _vertex_op(op: str, channels: int) -> nn.Module:
    if op == CONV3X3:
        return ConvBNReLU(channels, channels, 3)
    if op == CONV1X1:
        return ConvBNReLU(channels, channels, 1)
    if op == MAXPOOL3X3:
        return nn.MaxPool2d(3, stride=1, padding=1)
    raise ValueError(f"unknown NAS-Bench-101 op {op!r}")


class Module(nn.Module):
    """One NAS-Bench-101 cell from ``C_in`` to ``C_out`` channels (see the module doc)."""

    def __init__(self, spec: CellSpec, in_channels: int, out_channels: int):
        super().__init__()
        spec = spec.pruned()
        m, n = spec.matrix, spec.num_vertices
        self.matrix, self.num_vertices = m, n
        self.channels = vertex_channels(m, in_channels, out_channels)
        # ModuleDicts keyed by vertex: only vertices with an input edge have a projection.
        self.projections = nn.ModuleDict({str(v): ConvBNReLU(in_channels, self.channels[v], 1)
                                          for v in range(1, n) if m[0][v]})
        self.ops = nn.ModuleDict({str(v): _vertex_op(spec.ops[v], self.channels[v]) for v in range(1, n - 1)})
        self.sources = [[u for u in range(1, v) if m[u][v]] for v in range(n)]
        self.concat = [v for v in range(1, n - 1) if m[v][n - 1]]

    def forward(self, x):
        values = [x]
        for v in range(1, self.num_vertices - 1):
            c = self.channels[v]
            parts = [values[u][:, :c] for u in self.sources[v]]   # truncation: a no-op when the channels agree
            if str(v) in self.projections:
                parts.append(self.projections[str(v)](x))
            values.append(self.ops[str(v)](parts[0] if len(parts) == 1 else torch.stack(parts).sum(0)))
        out = torch.cat([values[v] for v in self.concat], dim=1) if self.concat else None
        last = str(self.num_vertices - 1)
        if last in self.projections:
            projected = self.projections[last](x)
            out = projected if out is None else out + projected
        return out


class Stem(nn.Sequential):
    def __init__(self, kind: str, in_channels: int, width: int):
        if kind == "cifar":
            layers = [ConvBNReLU(in_channels, width, 3)]
        elif kind == "imagenet":
            layers = [ConvBNReLU(in_channels, width // 2, 3, 2), ConvBNReLU(width // 2, width, 3, 2),
                      ConvBNReLU(width, width, 3, 2)]
        else:
            raise ValueError(f"unknown stem {kind!r}; use cifar or imagenet")
        super().__init__(*layers)


class NasBenchTrunk(nn.Module):
    """Stem + stacks of modules; ``forward(x)`` returns the last feature map (``out_channels``).
    ``forward_with_aux`` is the trunk interface of :class:`~search_spaces.darts.network.FixedNetwork`;
    this space has no auxiliary head, so its second value is always None."""

    def __init__(self, spec: CellSpec, in_channels: int, width: int, num_stacks: int = 3, modules_per_stack: int = 3,
                 stem: str = "cifar", single_reduction: bool = False):
        super().__init__()
        if num_stacks < 1 or modules_per_stack < 1:
            raise ValueError(f"need at least one stack and one module per stack, got {num_stacks} x {modules_per_stack}")
        self.spec = spec
        self.in_channels, self.width, self.stem_kind = in_channels, width, stem
        self.num_stacks, self.modules_per_stack = num_stacks, modules_per_stack
        self.stem = Stem(stem, in_channels, width)
        pooled = {1} if single_reduction else set(range(1, num_stacks))
        layers, channels = [], width
        for s in range(num_stacks):
            c_out = channels * 2 if s > 0 else channels
            if s in pooled:
                layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
            for _ in range(modules_per_stack):
                layers.append(Module(spec, channels, c_out))
                channels = c_out
        self.layers = nn.Sequential(*layers)
        self.out_channels = channels

    def forward_with_aux(self, x, need_aux=None):
        return self.layers(self.stem(x)), None

    def forward(self, x):
        return self.layers(self.stem(x))
