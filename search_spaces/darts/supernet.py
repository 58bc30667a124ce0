"""DARTS search supernet: softmax-relaxed mixed ops on every edge of every cell.

The supernet holds only network weights. Architecture logits live in
:class:`ArchParameters`, apart from the weights, and their softmax is passed to ``forward``: the
weight optimiser never sees them and DDP can wrap the supernet alone.

What is computed is exactly the textbook DARTS supernet (``benchmarks/textbook_supernet.py``; a
test checks outputs and gradients against it), but organised for speed. A cell's 14 edges are
grouped by the state they read (:class:`EdgeGroup`): the 4 edges leaving ``s0`` are one group, the
3 leaving node 0 another, and so on. Within a group

* ``none`` is never computed (it contributes exactly zero);
* the pools, their non-affine BN and the identity skip do not depend on the edge, so they are
  computed once per group and broadcast to its edges with each edge's weight (same values, same
  BN running statistics as one BN per edge);
* the ReLU in front of every conv op is computed once;
* a conv primitive's parameters for the group's ``m`` edges are stored stacked (one tensor per
  layer; each edge convolves with its slice: running the stacked tensor as one grouped conv was
  slower on CPU, see docs/benchmarks.md);
* stride-2 dilated convs run as plain convs on the even pixels (the only ones they read);
* the mixed-op weight is folded into the last BN of each conv op (``w * BN(x)`` is a BN with
  scale ``w``): one kernel instead of BN, multiply and add.

Parameter layout therefore differs from the textbook's one-module-per-op; the benchmark module
maps one onto the other. ``channels_last`` memory format (``SupernetTrunk.use_channels_last``)
makes oneDNN's depthwise convolutions several times faster on CPU.

PC-DARTS (Xu et al., ICLR 2020) is an option: ``partial_channels=K`` sends only the first C/K
channels of a state through the mixed ops and passes the rest by (max-pooled when strided), then
shuffles channels; edge normalisation weights each incoming edge of a node by a softmax over the
node's edges (``ArchParameters(edge_normalization=True)``).

DARTS- (Chu et al., ICLR 2021) is another: ``aux_skip=True`` adds to every edge's output, outside
the softmax mixture, ``beta * x`` (stride 1) or ``beta * FactorizedReduce(x)`` (stride 2, with its
own weights, as DARTS-' ``MixedOp.auxiliary_op``), on the edge's whole input even under partial
channels; ``SupernetTrunk.set_aux_skip_weight(beta)`` sets the decaying ``beta``.

P-DARTS (Chen et al., ICCV 2019) searches a restricted op set per edge: ``op_mask`` (one
(edges, ops) boolean mask per cell type) builds only the kept ops of every edge (a conv
primitive's stacked parameters hold only the edges that keep it; a shared pool or skip is computed
when some edge of the group keeps it and added to those edges only), and ``ArchParameters(op_mask=)``
gives the pruned ops weight exactly 0 (softmax over the kept ops). ``SupernetTrunk.skip_dropout``
sets P-DARTS' dropout on the stride-1 skip connections (an independent mask per edge, in training
mode only, drawn from a generator the loop sets every step).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..parts import InputParts
from .genotype import edge_index, genotype_from_weights, limit_skip_connections, num_edges
from .ops import PRIMITIVES, FactorizedReduce, ReLUConvBN, build_op, cat_channels, factorized_phases, grad_channels_last
from .stems import build_stem, reduction_layers

# name -> (kernel, dilation, separable: two stacked ReLU-dw-pw-BN blocks)
CONV_PRIMITIVES = {
    "sep_conv_3x3": (3, 1, True),
    "sep_conv_5x5": (5, 1, True),
    "dil_conv_3x3": (3, 2, False),
    "dil_conv_5x5": (5, 2, False),
}
POOL_PRIMITIVES = ("max_pool_3x3", "avg_pool_3x3")


class ArchWeights(NamedTuple):
    """Relaxed architecture weights handed to the supernet: per-edge op weights per cell type,
    and optional per-edge weights (PC-DARTS edge normalisation)."""
    normal: torch.Tensor
    reduce: torch.Tensor
    normal_edges: Optional[torch.Tensor] = None
    reduce_edges: Optional[torch.Tensor] = None

    def detach(self) -> "ArchWeights":
        return ArchWeights(*(None if t is None else t.detach() for t in self))


class StackedConvOp(nn.Module):
    """One conv primitive (sep or dil conv) on the ``m`` edges of a group, parameters stacked.

    Edge ``e`` owns channels ``[e*C, (e+1)*C)`` of every layer. The layers are declared as
    grouped convs (one group per channel for depthwise, one per edge for pointwise) so each edge's
    weights are initialised exactly like one ``nn.Conv2d`` per edge (same fan-in).
    """

    def __init__(self, c: int, m: int, stride: int, kernel: int, dilation: int, separable: bool):
        super().__init__()
        mc = m * c
        pad = dilation * (kernel - 1) // 2
        self.separable = separable
        self.c, self.m = c, m
        self.dw1 = nn.Conv2d(mc, mc, kernel, stride, pad, dilation, groups=mc, bias=False)
        self.pw1 = nn.Conv2d(mc, mc, 1, groups=m, bias=False)
        self.bn1 = nn.BatchNorm2d(mc, affine=False)
        if separable:
            self.dw2 = nn.Conv2d(mc, mc, kernel, 1, pad, groups=mc, bias=False)
            self.pw2 = nn.Conv2d(mc, mc, 1, groups=m, bias=False)
            self.bn2 = nn.BatchNorm2d(mc, affine=False)

    def forward(self, relu_x: torch.Tensor, scales: torch.Tensor) -> list[torch.Tensor]:
        """``scales``: (m,) mixed-op weight of this primitive on each edge -> m edge outputs."""
        for bn in (self.bn1, self.bn2) if self.separable else (self.bn1,):
            _count_batch(bn)
        return [self.edge(relu_x, e, scales[e]) for e in range(self.m)]

    def edge(self, relu_x: torch.Tensor, e: int, scale: torch.Tensor) -> torch.Tensor:
        # One edge through its slice of the stacked weights: on CPU, oneDNN's depthwise kernels
        # are faster on C channels at a time than on m*C stacked ones (cache), so only the
        # parameters are stacked, not the computation.
        c = self.c
        sl = slice(e * c, (e + 1) * c)
        if self.dw1.stride[0] == 2 and self.dw1.dilation[0] == 2:
            # A stride-2, dilation-2 conv only ever reads the even pixels: it is a plain conv on
            # them (padding (k-1)/2), which oneDNN runs ~5x faster than the strided dilated one.
            y = F.conv2d(relu_x[:, :, ::2, ::2], self.dw1.weight[sl], None, 1, self.dw1.padding[0] // 2, 1, c)
        else:
            y = F.conv2d(relu_x, self.dw1.weight[sl], None, self.dw1.stride, self.dw1.padding, self.dw1.dilation, c)
        y = F.conv2d(y, self.pw1.weight[sl])
        if not self.separable:
            return _edge_bn(self.bn1, y, sl, scale)
        y = F.relu(_edge_bn(self.bn1, y, sl, None))
        y = F.conv2d(y, self.dw2.weight[sl], None, 1, self.dw2.padding, 1, c)
        return _edge_bn(self.bn2, F.conv2d(y, self.pw2.weight[sl]), sl, scale)


def _count_batch(bn: nn.BatchNorm2d) -> None:
    """``nn.BatchNorm2d``'s batch counter, for BNs applied slice by slice through :func:`_edge_bn`."""
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)


def _edge_bn(bn: nn.BatchNorm2d, x: torch.Tensor, sl: slice, scale: torch.Tensor | None) -> torch.Tensor:
    """``scale * bn(x)`` on the channel slice ``sl`` of a stacked non-affine BN (running statistics
    are updated in place through the buffer views); ``scale`` is one edge's scalar weight or None."""
    use_batch_stats = bn.training or bn.running_mean is None
    rm = None if bn.running_mean is None else bn.running_mean[sl]
    rv = None if bn.running_var is None else bn.running_var[sl]
    if scale is not None:
        # materialised: torch's channels-last batch_norm backward gets grad_weight wrong for an
        # expanded (stride-0) weight
        scale = scale.expand(x.shape[1]).contiguous()
    return F.batch_norm(x, rm, rv, scale, None, use_batch_stats,
                        bn.momentum if bn.momentum is not None else 0.0, bn.eps)


class StackedFactorizedReduce(nn.Module):
    """The strided ``skip_connect`` (FactorizedReduce) of ``m`` edges: parameters stacked by edge,
    each edge's output is [its conv_1 half, its conv_2 half] as in :class:`ops.FactorizedReduce`."""

    def __init__(self, c: int, m: int):
        super().__init__()
        if c % 2:
            raise ValueError(f"FactorizedReduce needs an even number of channels, got {c}")
        self.c, self.m = c, m
        self.conv_1 = nn.Conv2d(c, m * c // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c, m * c // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(m * c, affine=False)

    def forward(self, relu_x: torch.Tensor, scales: torch.Tensor) -> list[torch.Tensor]:
        _count_batch(self.bn)
        even, odd = factorized_phases(grad_channels_last(relu_x))
        half, outs = self.c // 2, []
        for e in range(self.m):
            hs = slice(e * half, (e + 1) * half)
            y = cat_channels([F.conv2d(even, self.conv_1.weight[hs]), F.conv2d(odd, self.conv_2.weight[hs])])
            outs.append(_edge_bn(self.bn, y, slice(e * self.c, (e + 1) * self.c), scales[e]))
        return outs


class SkipDropout:
    """P-DARTS' dropout on the stride-1 ``skip_connect`` of every mixed edge (chenxin061/pdarts
    ``model_search.py``: ``nn.Dropout(p)`` after each edge's ``Identity``): in training mode every
    edge zeroes its own random fraction ``p`` of the skip's elements and scales the rest by
    ``1 / (1 - p)``. One instance is shared by all edge groups of a trunk; the loop sets ``p`` and,
    for reproducible draws, ``generator`` (None: torch's global generator)."""

    def __init__(self):
        self.p = 0.0
        self.generator: torch.Generator | None = None

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        u = torch.empty_like(y, dtype=torch.float32).uniform_(generator=self.generator)
        return y * (u >= self.p) * (1.0 / (1.0 - self.p))


class EdgeGroup(nn.Module):
    """All mixed edges leaving one state: ``m`` edges, each ``sum_k w[e, k] * op_k(x)``.

    ``forward(x, w)`` with ``w`` of shape (m, len(primitives)) returns the list of the ``m`` edge
    outputs, each (N, C, H/stride, W/stride).
    """

    def __init__(self, c: int, m: int, stride: int, primitives: Sequence[str] = PRIMITIVES,
                 partial_channels: int = 1, aux_skip: bool = False, keep: Sequence[Sequence[str]] | None = None):
        """``keep``: the ops kept on each of the ``m`` edges (P-DARTS' pruned op space); None = all."""
        super().__init__()
        if c % partial_channels:
            raise ValueError(f"partial_channels={partial_channels} must divide the cell width {c}")
        self.c, self.m, self.stride, self.k = c, m, stride, partial_channels
        cp = c // partial_channels       # channels that go through the ops
        self.cp = cp
        self.columns = {name: i for i, name in enumerate(primitives)}
        if keep is not None and (len(keep) != m or any(not set(ops) - {"none"} for ops in keep)):
            raise ValueError(f"keep must list, for each of the {m} edges, at least one op other than 'none'")
        # the edges computing each primitive (all of them unless ``keep`` prunes some)
        self.edges_of = {p: [e for e in range(m) if keep is None or p in keep[e]] for p in primitives}
        names = {p for p in primitives if self.edges_of[p]}
        self.pool_bns = nn.ModuleDict({p: nn.BatchNorm2d(cp, affine=False) for p in POOL_PRIMITIVES if p in names})
        self.convs = nn.ModuleDict({p: StackedConvOp(cp, len(self.edges_of[p]), stride, *CONV_PRIMITIVES[p])
                                    for p in primitives if p in CONV_PRIMITIVES and p in names})
        self.skip_reduce = (StackedFactorizedReduce(cp, len(self.edges_of["skip_connect"]))
                            if "skip_connect" in names and stride == 2 else None)
        # Ops outside the 8 DARTS primitives run one module per edge.
        known = {"none", "skip_connect", *POOL_PRIMITIVES, *CONV_PRIMITIVES}
        self.others = nn.ModuleDict({p: nn.ModuleList(build_op(p, cp, stride, affine=False) for _ in self.edges_of[p])
                                     for p in primitives if p not in known and p in names})
        self.skip_dropout: SkipDropout | None = None    # P-DARTS (set by SupernetTrunk)
        # DARTS- auxiliary skip (created last, so the mixed ops initialise as without it)
        self.aux_skip = aux_skip
        self.aux_weight = 1.0
        self.aux_reduce = StackedFactorizedReduce(c, m) if aux_skip and stride == 2 else None

    def forward(self, x: torch.Tensor, w: torch.Tensor, edge_scale: torch.Tensor | None = None) -> list[torch.Tensor]:
        """``w``: (m, ops) mixed-op weights (already multiplied by ``edge_scale`` when edges are
        normalised); ``edge_scale`` (m,) also scales the passed-by channels under partial channels."""
        xs = x[:, :self.cp] if self.k > 1 else x
        outs: list = [None] * self.m

        def add(ys, name):
            for e, y in zip(self.edges_of[name], ys):
                outs[e] = y if outs[e] is None else outs[e] + y

        def column(name):     # the weights of op ``name`` on the edges that compute it
            edges = self.edges_of[name]
            return w[:, self.columns[name]] if len(edges) == self.m else w[edges, self.columns[name]]

        if self.convs or self.skip_reduce is not None:
            relu_x = F.relu(xs)                      # shared by every conv op of every edge
            for name, op in self.convs.items():
                add(op(relu_x, column(name)), name)
            if self.skip_reduce is not None:
                add(self.skip_reduce(relu_x, column("skip_connect")), "skip_connect")
        for name, mods in self.others.items():
            add([mod(xs) * w[e, self.columns[name]] for e, mod in zip(self.edges_of[name], mods)], name)

        # Edge-independent ops: computed once, added to every edge with its weight.
        shared = []
        if "max_pool_3x3" in self.pool_bns:
            shared.append((self.pool_bns["max_pool_3x3"](F.max_pool2d(xs, 3, self.stride, 1)), "max_pool_3x3"))
        if "avg_pool_3x3" in self.pool_bns:
            shared.append((self.pool_bns["avg_pool_3x3"](
                F.avg_pool2d(xs, 3, self.stride, 1, count_include_pad=False)), "avg_pool_3x3"))
        if "skip_connect" in self.columns and self.stride == 1 and self.edges_of["skip_connect"]:
            shared.append((xs, "skip_connect"))
        drop = self.skip_dropout if self.training and self.skip_dropout is not None and self.skip_dropout.p > 0 else None
        for y, name in shared:
            col = w[:, self.columns[name]]
            for e in self.edges_of[name]:
                ye = drop(y) if drop is not None and name == "skip_connect" else y
                outs[e] = ye * col[e] if outs[e] is None else torch.addcmul(outs[e], ye, col[e])
        if any(o is None for o in outs):
            raise ValueError("an edge group needs at least one primitive other than 'none'")
        if self.k > 1:
            outs = [self._partial_merge(x, y, None if edge_scale is None else edge_scale[e]) for e, y in enumerate(outs)]
        if self.aux_skip:
            outs = self._add_aux_skip(x, outs)
        return outs

    def _add_aux_skip(self, x, outs):
        """DARTS-: ``+ aux_weight * skip(x)`` on every edge, outside the mixture and the edge weights."""
        if self.aux_reduce is None:
            return [torch.add(y, x, alpha=self.aux_weight) for y in outs]
        scales = torch.full((self.m,), float(self.aux_weight), dtype=x.dtype, device=x.device)
        return [y + a for y, a in zip(outs, self.aux_reduce(F.relu(x), scales))]

    def _partial_merge(self, x, mixed, edge_scale):
        """PC-DARTS: [mixed ops on C/K channels, the other channels passed by (max-pooled when
        strided)], then the channel shuffle with K groups."""
        bypass = x[:, self.cp:]
        if self.stride == 2:
            bypass = F.max_pool2d(bypass, 2, 2)
        if edge_scale is not None:
            bypass = bypass * edge_scale
        n, _, h, wd = mixed.shape
        y = torch.cat([mixed, bypass], 1).view(n, self.k, self.cp, h, wd).transpose(1, 2)
        return y.reshape(n, self.c, h, wd)


class SearchCell(nn.Module):
    """Two inputs, ``steps`` nodes; node i sums one mixed edge from every earlier state.

    Edge ``e`` (alpha row ``e``) runs from state ``j`` to node ``i`` in DARTS order
    (node by node, then by input). The edges are evaluated grouped by their input state.
    """

    def __init__(self, steps, multiplier, c_pp, c_p, c, reduction, reduction_prev,
                 primitives: Sequence[str] = PRIMITIVES, partial_channels: int = 1, aux_skip: bool = False,
                 op_mask=None):
        """``op_mask``: (edges, ops) booleans, the ops kept on each edge (P-DARTS); None = all."""
        super().__init__()
        self.reduction = reduction
        self.steps = steps
        self.multiplier = multiplier
        self.preprocess0 = (FactorizedReduce(c_pp, c, affine=False) if reduction_prev
                            else ReLUConvBN(c_pp, c, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=False)
        self.groups = nn.ModuleList()
        self.first_target = []
        for j in range(steps + 1):                                    # states that feed some node
            first = max(0, j - 1)
            rows = [edge_index(i, j) for i in range(first, steps)]
            self.first_target.append(first)
            self.register_buffer(f"rows_{j}", torch.tensor(rows), persistent=False)
            keep = None if op_mask is None else [[p for p, k in zip(primitives, op_mask[r]) if k] for r in rows]
            self.groups.append(EdgeGroup(c, len(rows), 2 if reduction and j < 2 else 1, primitives, partial_channels,
                                         aux_skip, keep))

    def _group(self, j, state, weights, edge_weights):
        rows = getattr(self, f"rows_{j}")
        if edge_weights is None:
            return self.groups[j](state, weights[rows])
        # sum_e beta_e * sum_k w_ek op_k = sum_k (beta_e w_ek) op_k: fold the edge weight in.
        beta = edge_weights[rows]
        return self.groups[j](state, weights[rows] * beta[:, None], beta)

    def forward(self, s0, s1, weights, edge_weights=None):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        outs = [self._group(0, states[0], weights, edge_weights), self._group(1, states[1], weights, edge_weights)]
        for i in range(self.steps):
            s = None
            for j in range(i + 2):
                y = outs[j][i - self.first_target[j]]
                s = y if s is None else s + y
            states.append(s)
            if i + 2 <= self.steps:
                outs.append(self._group(i + 2, s, weights, edge_weights))
        return cat_channels(states[-self.multiplier:])


class SupernetTrunk(nn.Module):
    """Stem + cells; returns the last cell's feature map (the task supplies the head)."""

    def __init__(self, in_channels: int, width: int, depth: int, stem: str = "cifar",
                 single_reduction: bool = False, primitives: Sequence[str] = PRIMITIVES,
                 steps: int = 4, multiplier: int = 4, stem_multiplier: int = 3, partial_channels: int = 1,
                 aux_skip: bool = False, op_mask=None):
        """``op_mask``: None, or (normal, reduce) (edges, ops) boolean masks of the ops kept on each
        edge (P-DARTS' pruned op space): only those are built and computed."""
        super().__init__()
        self.steps = steps
        self.primitives = tuple(primitives)
        self.reductions = reduction_layers(depth, single_reduction)
        self.stem = build_stem(stem, in_channels, width, stem_multiplier)
        self.memory_format = torch.contiguous_format
        c_pp, c_p, reduction_prev = self.stem.cell_inputs
        c = width
        self.cells = nn.ModuleList()
        for i in range(depth):
            reduction = i in self.reductions
            if reduction:
                c *= 2
            mask = None if op_mask is None else [[bool(k) for k in row] for row in op_mask[1 if reduction else 0]]
            self.cells.append(SearchCell(steps, multiplier, c_pp, c_p, c, reduction, reduction_prev, primitives,
                                         partial_channels, aux_skip, mask))
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c
        self.out_channels = c_p
        self.skip_dropout = SkipDropout()        # P-DARTS; p = 0 (off) unless the loop sets it
        for cell in self.cells:
            for group in cell.groups:
                group.skip_dropout = self.skip_dropout

    def set_aux_skip_weight(self, beta: float) -> None:
        """Weight of the DARTS- auxiliary skip connections (built with ``aux_skip=True``)."""
        for cell in self.cells:
            for group in cell.groups:
                group.aux_weight = float(beta)

    def use_channels_last(self, enabled: bool = True) -> "SupernetTrunk":
        """Run in channels-last memory format (weights and activations); values are unchanged."""
        self.memory_format = torch.channels_last if enabled else torch.contiguous_format
        return self.to(memory_format=self.memory_format)

    def forward(self, x, weights: ArchWeights):
        s0, s1 = self.stem(x.contiguous(memory_format=self.memory_format))
        for cell in self.cells:
            if cell.reduction:
                s0, s1 = s1, cell(s0, s1, weights.reduce, weights.reduce_edges)
            else:
                s0, s1 = s1, cell(s0, s1, weights.normal, weights.normal_edges)
        return s1


class SearchModel(nn.Module):
    """Trunk + task head. ``forward(x, weights)`` with :class:`ArchWeights` from ``ArchParameters.weights()``."""

    def __init__(self, trunk: SupernetTrunk, head: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.head = head

    def forward(self, x, weights: ArchWeights):
        if isinstance(x, InputParts):   # several tasks' inputs (task multi): one trunk pass each, one head
            return self.head([self.trunk(p, weights) for p in x], x.sizes())
        return self.head(self.trunk(x, weights), x.shape[-2:])


def node_softmax(logits: torch.Tensor, steps: int) -> torch.Tensor:
    """Softmax over each node's incoming edges (PC-DARTS edge normalisation)."""
    parts, start = [], 0
    for i in range(steps):
        parts.append(torch.softmax(logits[start:start + i + 2], dim=-1))
        start += i + 2
    return torch.cat(parts)


class ArchParameters(nn.Module):
    """One (edges, ops) logit tensor per cell type, initialised 1e-3 * N(0, 1) as in DARTS; with
    ``edge_normalization`` also one (edges,) logit tensor per cell type (PC-DARTS betas).

    ``op_mask`` (P-DARTS): (normal, reduce) (edges, ops) booleans of the ops kept on each edge,
    stored as the buffers ``mask_normal``/``mask_reduce``; the softmax runs over the kept ops only
    and the pruned ops get weight exactly 0. ``max_skips_normal > 0``: the derived genotype keeps at
    most that many skip connections in the normal cell (P-DARTS' rule, ``limit_skip_connections``)."""

    def __init__(self, steps: int = 4, primitives: Sequence[str] = PRIMITIVES,
                 generator: torch.Generator | None = None, edge_normalization: bool = False,
                 op_mask=None, max_skips_normal: int = 0):
        super().__init__()
        self.steps = steps
        self.primitives = tuple(primitives)
        self.edge_normalization = edge_normalization
        self.max_skips_normal = max_skips_normal
        shape = (num_edges(steps), len(primitives))
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(shape, generator=generator))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(shape, generator=generator))
        if edge_normalization:
            self.beta_normal = nn.Parameter(1e-3 * torch.randn(shape[0], generator=generator))
            self.beta_reduce = nn.Parameter(1e-3 * torch.randn(shape[0], generator=generator))
        self.masked = op_mask is not None
        if self.masked:
            for name, mask in zip(("mask_normal", "mask_reduce"), op_mask):
                mask = torch.as_tensor(mask, dtype=torch.bool)
                if mask.shape != shape or not bool(mask.any(dim=-1).all()):
                    raise ValueError(f"op_mask must be ({shape[0]}, {shape[1]}) booleans keeping >= 1 op per edge")
                self.register_buffer(name, mask.clone())

    def weights(self) -> ArchWeights:
        if self.masked:
            wn = torch.softmax(self.alpha_normal.masked_fill(~self.mask_normal, float("-inf")), dim=-1)
            wr = torch.softmax(self.alpha_reduce.masked_fill(~self.mask_reduce, float("-inf")), dim=-1)
        else:
            wn, wr = torch.softmax(self.alpha_normal, dim=-1), torch.softmax(self.alpha_reduce, dim=-1)
        if not self.edge_normalization:
            return ArchWeights(wn, wr)
        return ArchWeights(wn, wr, node_softmax(self.beta_normal, self.steps), node_softmax(self.beta_reduce, self.steps))

    def derivation_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-edge op strengths the genotype is read from: softmax(alpha), times the edge
        weight when edges are normalised (as PC-DARTS parses its genotype)."""
        w = self.weights().detach()
        if not self.edge_normalization:
            return w.normal, w.reduce
        return w.normal * w.normal_edges[:, None], w.reduce * w.reduce_edges[:, None]

    def genotype(self):
        return genotype_from_weights(*self.derivation_weights(), self.primitives, self.steps, self.max_skips_normal)

    def skip_limit_report(self) -> dict | None:
        """What the skip-connection limit changed in the genotype of these alphas (None without a limit):
        the alpha rows whose skip was replaced, in order, and the genotype without the limit."""
        if not self.max_skips_normal:
            return None
        wn, wr = self.derivation_weights()
        _, rows = limit_skip_connections(wn, self.primitives, self.steps, self.max_skips_normal)
        plain = genotype_from_weights(wn, wr, self.primitives, self.steps)
        return {"max_skips_normal": self.max_skips_normal, "replaced_edges": rows,
                "skips_without_limit": sum(op == "skip_connect" for op, _ in plain.normal),
                "genotype_without_limit": repr(plain)}
