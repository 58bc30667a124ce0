"""The textbook DARTS search supernet: the reference that our optimised supernet is checked and timed against.

Written from the definitions in docs (§1.1-1.3 of the release reference), as plainly as possible:

* every edge is a mixed op ``sum_k w_k * op_k(x)`` over **all 8** primitives, ``none`` included
  (it multiplies its input by zero), one plain ``nn.Conv2d`` / pool / BN module per op, fp32,
  nothing shared, fused or skipped;
* cells, stems and the reduction layout as in the reference;
* optionally PC-DARTS (Xu et al. 2020) in the same plain style: partial channel connections
  (``PartialMixedOp``) and edge normalisation (node = sum of beta_j * edge_j).

It holds one module per (edge, op), while our supernet stacks an edge group's ops into a few
large modules and shares the edge-independent pool BNs: :func:`load_from_ours` translates our
state into this layout, so both compute from the same weights.

Only the stems are imported from the package (they are not part of what is optimised).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_spaces.darts.genotype import edge_index  # noqa: E402
from search_spaces.darts.stems import build_stem, reduction_layers  # noqa: E402

PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
              "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")


class Zero(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class Identity(nn.Module):
    def forward(self, x):
        return x


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, k, stride, pad):
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, bias=False),
                         nn.BatchNorm2d(c_out, affine=False))


class DilConv(nn.Sequential):
    def __init__(self, c_in, c_out, k, stride, pad, dil):
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_in, k, stride=stride, padding=pad, dilation=dil, groups=c_in, bias=False),
                         nn.Conv2d(c_in, c_out, 1, bias=False),
                         nn.BatchNorm2d(c_out, affine=False))


class SepConv(nn.Sequential):
    def __init__(self, c_in, c_out, k, stride, pad):
        super().__init__(DilConv(c_in, c_in, k, stride, pad, 1), DilConv(c_in, c_out, k, 1, pad, 1))


class FactorizedReduce(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=False)

    def forward(self, x):
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:])], dim=1))


def make_op(name, c, stride):
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return nn.Sequential(nn.MaxPool2d(3, stride=stride, padding=1), nn.BatchNorm2d(c, affine=False))
    if name == "avg_pool_3x3":
        return nn.Sequential(nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
                             nn.BatchNorm2d(c, affine=False))
    if name == "skip_connect":
        return Identity() if stride == 1 else FactorizedReduce(c, c)
    if name == "sep_conv_3x3":
        return SepConv(c, c, 3, stride, 1)
    if name == "sep_conv_5x5":
        return SepConv(c, c, 5, stride, 2)
    if name == "dil_conv_3x3":
        return DilConv(c, c, 3, stride, 2, 2)
    if name == "dil_conv_5x5":
        return DilConv(c, c, 5, stride, 4, 2)
    raise KeyError(name)


class MixedOp(nn.Module):
    def __init__(self, c, stride):
        super().__init__()
        self.ops = nn.ModuleList(make_op(p, c, stride) for p in PRIMITIVES)

    def forward(self, x, w):
        return sum(wk * op(x) for wk, op in zip(w, self.ops))


def channel_shuffle(x, groups):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class PartialMixedOp(nn.Module):
    """PC-DARTS mixed op: the 8 ops on the first C/K channels, the rest passed by (2x2 max-pooled
    when strided), concatenated and channel-shuffled with K groups."""

    def __init__(self, c, stride, k):
        super().__init__()
        self.k = k
        self.stride = stride
        self.ops = nn.ModuleList(make_op(p, c // k, stride) for p in PRIMITIVES)

    def forward(self, x, w):
        cp = x.shape[1] // self.k
        xtemp, xtemp2 = x[:, :cp], x[:, cp:]
        temp1 = sum(wk * op(xtemp) for wk, op in zip(w, self.ops))
        passed = xtemp2 if self.stride == 1 else F.max_pool2d(xtemp2, 2, 2)
        return channel_shuffle(torch.cat([temp1, passed], dim=1), self.k)


class Cell(nn.Module):
    def __init__(self, c_pp, c_p, c, reduction, reduction_prev, steps=4, multiplier=4, partial_channels=1):
        super().__init__()
        self.reduction = reduction
        self.steps = steps
        self.multiplier = multiplier
        self.preprocess0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0)
        self.edges = nn.ModuleList()
        for i in range(steps):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self.edges.append(MixedOp(c, stride) if partial_channels == 1
                                  else PartialMixedOp(c, stride, partial_channels))

    def forward(self, s0, s1, weights, edge_weights=None):
        """``edge_weights`` (PC-DARTS edge normalisation): node = sum_j beta_j * edge_j(h_j)."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.steps):
            if edge_weights is None:
                s = sum(self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            else:
                s = sum(edge_weights[offset + j] * self.edges[offset + j](h, weights[offset + j])
                        for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self.multiplier:], dim=1)


class TextbookTrunk(nn.Module):
    """Stem + cells. ``forward(x, weights)`` takes ``(w_normal, w_reduce)`` (softmaxed, (14, 8) each)
    or our ArchWeights (with PC-DARTS edge weights if it has them). ``partial_channels=K``: the
    PC-DARTS mixed op."""

    def __init__(self, in_channels, width, depth, stem="cifar", single_reduction=False,
                 steps=4, multiplier=4, stem_multiplier=3, partial_channels=1):
        super().__init__()
        self.stem = build_stem(stem, in_channels, width, stem_multiplier)
        c_pp, c_p, reduction_prev = self.stem.cell_inputs
        reductions = reduction_layers(depth, single_reduction)
        c = width
        self.cells = nn.ModuleList()
        for i in range(depth):
            reduction = i in reductions
            if reduction:
                c *= 2
            self.cells.append(Cell(c_pp, c_p, c, reduction, reduction_prev, steps, multiplier, partial_channels))
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c
        self.out_channels = c_p

    def forward(self, x, weights):
        if hasattr(weights, "normal"):
            w_normal, w_reduce = weights.normal, weights.reduce
            e_normal, e_reduce = getattr(weights, "normal_edges", None), getattr(weights, "reduce_edges", None)
        else:
            (w_normal, w_reduce), e_normal, e_reduce = weights, None, None
        s0, s1 = self.stem(x)
        for cell in self.cells:
            if cell.reduction:
                s0, s1 = s1, cell(s0, s1, w_reduce, e_reduce)
            else:
                s0, s1 = s1, cell(s0, s1, w_normal, e_normal)
        return s1


class TextbookModel(nn.Module):
    def __init__(self, trunk, head):
        super().__init__()
        self.trunk = trunk
        self.head = head

    def forward(self, x, weights):
        return self.head(self.trunk(x, weights), x.shape[-2:])


class TextbookArch(nn.Module):
    """Plain DARTS alphas: two (14, 8) parameters, softmax per row."""

    def __init__(self, steps=4, n_ops=8):
        super().__init__()
        n = sum(2 + i for i in range(steps))
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(n, n_ops))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(n, n_ops))

    def weights(self):
        return torch.softmax(self.alpha_normal, -1), torch.softmax(self.alpha_reduce, -1)


# Our stacked modules -> (textbook op index, path inside the textbook op) for every tensor.
_TEXTBOOK_OP = {name: i for i, name in enumerate(PRIMITIVES)}
_CONV_PATHS = {"dw1": "0.1", "pw1": "0.2", "bn1": "0.3", "dw2": "1.1", "pw2": "1.2", "bn2": "1.3"}
_DIL_PATHS = {"dw1": "1", "pw1": "2", "bn1": "3"}
_GROUP_KEY = re.compile(r"^(?P<cell>.*cells\.\d+\.)groups\.(?P<group>\d+)\.(?P<rest>.+)$")


def _group_rows(group: int, steps: int) -> list[int]:
    """Alpha rows (edge ids) of the edges leaving state ``group``, in target-node order."""
    return [edge_index(i, group) for i in range(max(0, group - 1), steps)]


def _textbook_entries(rest: str, tensor: torch.Tensor, rows: list[int]):
    """Yield (edge id, textbook suffix after ``ops.``, tensor) for one of our group tensors."""
    m = len(rows)
    parts = rest.split(".")
    if parts[0] == "pool_bns":                       # shared by the group's edges: copy to each
        for e in rows:
            yield e, f"{_TEXTBOOK_OP[parts[1]]}.1.{parts[2]}", tensor
        return
    if parts[0] == "skip_reduce":                    # conv_1 / conv_2 / bn, stacked by edge
        for slot, e in enumerate(rows):
            t = tensor if tensor.dim() == 0 else tensor.chunk(m)[slot]
            yield e, f"{_TEXTBOOK_OP['skip_connect']}.{'.'.join(parts[1:])}", t
        return
    if parts[0] == "convs":
        name, module, leaf = parts[1], parts[2], parts[3]
        path = (_CONV_PATHS if name.startswith("sep") else _DIL_PATHS)[module]
        for slot, e in enumerate(rows):
            t = tensor if tensor.dim() == 0 else tensor.chunk(m)[slot]
            yield e, f"{_TEXTBOOK_OP[name]}.{path}.{leaf}", t
        return
    raise KeyError(f"no textbook counterpart for group tensor {rest!r}")


def textbook_state_from_ours(our_state: dict, steps: int = 4) -> dict:
    """Our supernet's (or SearchModel's) state_dict in the textbook's layout: stacked edge tensors
    are split per edge, shared pool BNs copied to every edge of their group."""
    out = {}
    for key, tensor in our_state.items():
        match = _GROUP_KEY.match(key)
        if match is None:
            out[key] = tensor
            continue
        rows = _group_rows(int(match["group"]), steps)
        for e, suffix, t in _textbook_entries(match["rest"], tensor, rows):
            out[f"{match['cell']}edges.{e}.ops.{suffix}"] = t.clone()
    return out


def load_from_ours(textbook: nn.Module, our_state: dict, steps: int = 4) -> None:
    """Load our supernet's (or SearchModel's) state_dict into the textbook module (strict)."""
    textbook.load_state_dict(textbook_state_from_ours(our_state, steps), strict=True)
