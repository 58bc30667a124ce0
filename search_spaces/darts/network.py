"""Fixed-genotype DARTS networks for (re)training: cells, drop-path, auxiliary heads, builders.

The network is *trunk + task head*, like the search supernet: :class:`FixedTrunk` (stem + cells
built from a :class:`~search_spaces.darts.genotype.Genotype`) returns the last feature map; the
task (``unnas.tasks``) supplies the head, so a found cell can be trained on classification,
segmentation or any pretext task. :class:`FixedNetwork` adds the optional auxiliary classifier.

Cell (DARTS / UnNAS evaluation cell): node ``i`` = ``op_{2i}(state[idx_{2i}]) +
op_{2i+1}(state[idx_{2i+1}])``, ops built with ``affine=True``; in a reduction cell the ops that
read a cell input (index < 2) have stride 2. ``none`` edges (Zero) and a node fed twice by the
same state are allowed (sample-based genotypes, NASNet/AmoebaNet). The output is the channel
concatenation of the states listed in the genotype's concat (multiplier = len(concat)).
preprocess0 is a FactorizedReduce when the previous cell reduced the resolution, else a 1x1
ReLU-conv-BN; preprocess1 is a 1x1 ReLU-conv-BN.

Drop-path (DARTS): in training, when ``drop_prob > 0``, every op output except an Identity is
multiplied by a per-sample Bernoulli(1 - p) mask and divided by 1 - p, in place (the op's own
output; :func:`drop_path_`). The mask is drawn on the
tensor's own device (the release's ``torch.cuda.FloatTensor`` made it GPU-only). The trainer sets
``drop_prob = DROP_PATH * epoch / epochs`` at the start of every epoch (:func:`set_drop_prob`).

Auxiliary heads (DARTS): fed by the output of cell ``2 * depth // 3``, used in training only.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..parts import InputParts
from .genotype import Genotype
from .ops import FactorizedReduce, Identity, ReLUConvBN, build_op, cat_channels
from .stems import build_stem, reduction_layers


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob``; scale survivors by ``1 / (1 - drop_prob)``."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x.div(keep).mul(mask)


def drop_path_(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """:func:`drop_path` in place on ``x``, as DARTS does it: the same mask draw and the same values
    (divide, then multiply by the mask), without two new tensors per dropped op output. For an op's
    own fresh output only (the cell never passes an Identity's, i.e. a state another op reads); the
    ops' last layers (BN, pools, Zero's multiply) keep no output for their backward, and autograd
    would raise if one did."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x.div_(keep).mul_(mask)


class FixedCell(nn.Module):
    def __init__(self, genotype: Genotype, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        pairs = genotype.reduce if reduction else genotype.normal
        concat = genotype.reduce_concat if reduction else genotype.normal_concat
        self.preprocess0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0)
        self.steps = len(pairs) // 2
        self.indices = tuple(idx for _, idx in pairs)
        self.concat = tuple(concat)
        self.multiplier = len(self.concat)
        self.ops = nn.ModuleList(
            build_op(name, c, 2 if reduction and idx < 2 else 1, affine=True) for name, idx in pairs)
        # Identity ops are exempt from drop-path (DARTS); decided once here.
        self._droppable = tuple(not isinstance(op, Identity) for op in self.ops)
        # Ops that start with a ReLU take the state's shared ReLU (ops.ReLUFirst.after_relu); decided once too.
        self._relu_first = tuple(hasattr(op, "after_relu") for op in self.ops)

    def forward(self, s0, s1, drop_prob: float = 0.0, r0=None, r1=None):
        """``r0``/``r1``: ``relu(s0)``/``relu(s1)`` when the caller has them (the trunk shares each
        cell output's ReLU between the two cells that read it); computed here otherwise."""
        states = [self.preprocess0.after_relu(F.relu(s0) if r0 is None else r0),
                  self.preprocess1.after_relu(F.relu(s1) if r1 is None else r1)]
        relus = {}   # state index -> its ReLU, computed once for all the ops that start with one
        apply_drop = self.training and drop_prob > 0.0
        for i in range(self.steps):
            node = node_fresh = None
            for k in (2 * i, 2 * i + 1):
                j, op = self.indices[k], self.ops[k]
                if self._relu_first[k]:
                    if j not in relus:
                        relus[j] = F.relu(states[j])
                    h = op.after_relu(relus[j])
                else:
                    h = op(states[j])
                fresh = self._droppable[k]      # the op's own new tensor (an Identity returns its state)
                if apply_drop and fresh:
                    h = drop_path_(h, drop_prob)
                node, node_fresh = _add_node(node, node_fresh, h, fresh)
            states.append(node)
        return cat_channels([states[i] for i in self.concat])


def _add_node(node, node_fresh, h, fresh):
    """``node + h``, in place into whichever is a fresh op output of the same dtype (no op keeps its
    output for its backward, see :func:`drop_path_`): the same sum, one tensor fewer per node."""
    if node is None:
        return h, fresh
    if node_fresh and node.dtype == h.dtype and node.shape == h.shape:
        return node.add_(h), True
    if fresh and node.dtype == h.dtype and node.shape == h.shape:
        return h.add_(node), True
    return node + h, True


class AuxiliaryHeadCIFAR(nn.Module):
    """ReLU -> AvgPool 5 s3 -> 1x1 conv 128 -> BN -> ReLU -> 2x2 conv 768 -> BN -> ReLU -> Linear.

    Designed for an 8x8 map (32-px CIFAR). Smaller maps (tiny test images) are pooled to 2x2
    adaptively instead, larger ones are averaged after the 2x2 conv, so any size works.
    """

    pool_stride = 3
    final_bn = True

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        layers = [nn.Conv2d(in_channels, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
                  nn.Conv2d(128, 768, 2, bias=False)]
        if self.final_bn:
            layers.append(nn.BatchNorm2d(768))
        layers.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        x = F.relu(x)
        if min(x.shape[-2:]) >= 5:
            x = F.avg_pool2d(x, 5, stride=self.pool_stride, padding=0, count_include_pad=False)
        else:
            x = F.adaptive_avg_pool2d(x, 2)
        x = self.features(x)
        if x.shape[-2:] != (1, 1):
            x = F.adaptive_avg_pool2d(x, 1)
        return self.classifier(x.flatten(1))


class AuxiliaryHeadImageNet(AuxiliaryHeadCIFAR):
    """As the CIFAR head with AvgPool 5 stride 2 and no BN after the 768-channel conv (as DARTS)."""

    pool_stride = 2
    final_bn = False


class FixedTrunk(nn.Module):
    """Stem + fixed cells; ``forward(x)`` returns the last cell's feature map.

    ``forward_with_aux(x)`` also returns the output of cell ``2 * depth // 3`` (the auxiliary head's
    input) when ``auxiliary`` is on and the module is training, else None.
    """

    def __init__(self, genotype: Genotype, in_channels: int, width: int, depth: int, stem: str = "cifar",
                 single_reduction: bool = False, auxiliary: bool = False, stem_multiplier: int = 3):
        super().__init__()
        self.genotype = genotype
        self.width, self.depth, self.stem_kind = width, depth, stem
        self.single_reduction = single_reduction
        self.auxiliary = auxiliary
        self.in_channels = in_channels
        self.drop_prob = 0.0
        self.reductions = reduction_layers(depth, single_reduction)
        self.aux_position = 2 * depth // 3
        self.stem = build_stem(stem, in_channels, width, stem_multiplier)
        c_pp, c_p, reduction_prev = self.stem.cell_inputs
        c = width
        self.cells = nn.ModuleList()
        self.aux_channels = None
        for i in range(depth):
            reduction = i in self.reductions
            if reduction:
                c *= 2
            cell = FixedCell(genotype, c_pp, c_p, c, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c
            if i == self.aux_position:
                self.aux_channels = c_p
        self.out_channels = c_p

    def forward_with_aux(self, x, need_aux: Optional[bool] = None):
        if need_aux is None:
            need_aux = self.auxiliary and self.training
        s0, s1 = self.stem(x)
        # Cell i reads relu(s0) and relu(s1) first thing and cell i+1 reads the same relu(s1) as
        # its relu(s0): each is computed once (the CIFAR stem's two outputs are one tensor).
        r0 = F.relu(s0)
        r1 = r0 if s1 is s0 else F.relu(s1)
        aux = None
        last = len(self.cells) - 1
        for i, cell in enumerate(self.cells):
            out = cell(s0, s1, self.drop_prob, r0, r1)
            s0, s1, r0, r1 = s1, out, r1, (F.relu(out) if i < last else None)
            if need_aux and i == self.aux_position:
                aux = s1
        return s1, aux

    def forward(self, x):
        return self.forward_with_aux(x, need_aux=False)[0]


class FixedNetwork(nn.Module):
    """Trunk + task head (+ auxiliary head). Returns logits in eval mode, and (logits, aux_logits)
    in training mode when it has an auxiliary head."""

    def __init__(self, trunk: FixedTrunk, head: nn.Module, aux_head: Optional[nn.Module] = None):
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.aux_head = aux_head

    def forward(self, x):
        if isinstance(x, InputParts):   # several tasks' inputs (task multi): one trunk pass each, one head
            return self.head([self.trunk(p) for p in x], x.sizes())
        use_aux = self.training and self.aux_head is not None
        features, aux = self.trunk.forward_with_aux(x, need_aux=use_aux)
        logits = self.head(features, x.shape[-2:])
        if use_aux:
            return logits, self.aux_head(aux)
        return logits


def set_drop_prob(model: nn.Module, drop_prob: float) -> None:
    """Set the drop-path probability of every fixed trunk inside ``model``."""
    for m in model.modules():
        if isinstance(m, FixedTrunk):
            m.drop_prob = float(drop_prob)


def count_params(module: Optional[nn.Module]) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def _aux_head_for(stem: str):
    return AuxiliaryHeadCIFAR if stem == "cifar" else AuxiliaryHeadImageNet


def build_network(genotype: Genotype, head_factory, num_aux_classes: int, in_channels: int, width: int,
                  depth: int, stem: str, single_reduction: bool = False, auxiliary: bool = False) -> FixedNetwork:
    """Generic builder: ``head_factory(C)`` builds the task head on the trunk's C output channels
    (e.g. ``task.build_head``); the auxiliary head (if any) predicts ``num_aux_classes`` classes."""
    trunk = FixedTrunk(genotype, in_channels, width, depth, stem, single_reduction, auxiliary)
    aux_head = _aux_head_for(stem)(trunk.aux_channels, num_aux_classes) if auxiliary else None
    return FixedNetwork(trunk, head_factory(trunk.out_channels), aux_head)


def _classifier_factory(num_classes: int):
    from unnas.tasks.base import ClassifierHead
    return lambda c: ClassifierHead(c, num_classes)


def build_cifar_network(genotype: Genotype, num_classes: int = 10, width: int = 36, depth: int = 20,
                        auxiliary: bool = True, in_channels: int = 3, task=None) -> FixedNetwork:
    """DARTS CIFAR network (3C stem, stride 1). ``task`` (optional) supplies the head, its input
    channels and output count instead of a ``num_classes`` linear classifier."""
    if task is not None:
        return build_network(genotype, task.build_head, task.num_outputs, task.in_channels, width, depth,
                             "cifar", task.single_reduction, auxiliary)
    return build_network(genotype, _classifier_factory(num_classes), num_classes, in_channels, width, depth,
                         "cifar", False, auxiliary)


def build_imagenet_network(genotype: Genotype, num_classes: int = 1000, width: int = 48, depth: int = 14,
                           auxiliary: bool = True, in_channels: int = 3, task=None) -> FixedNetwork:
    """DARTS ImageNet (mobile) network: stride-8 stem, reductions at depth//3 and 2*depth//3."""
    if task is not None:
        return build_network(genotype, task.build_head, task.num_outputs, task.in_channels, width, depth,
                             "imagenet", task.single_reduction, auxiliary)
    return build_network(genotype, _classifier_factory(num_classes), num_classes, in_channels, width, depth,
                         "imagenet", False, auxiliary)


def build_segmentation_network(genotype: Genotype, num_classes: int = 19, width: int = 82, depth: int = 12,
                               aspp_channels: int = 256, aspp_rates: Sequence[int] = (6, 12, 18),
                               in_channels: int = 3, task=None) -> FixedNetwork:
    """UnNAS Cityscapes network: ImageNet stem, one reduction (output stride 16), the segmentation
    task's ASPP head (image pooling, bilinear align_corners upsampling to the input size)."""
    if task is None:
        from unnas.data import DataInfo
        from unnas.tasks import build_task
        info = DataInfo(num_classes=num_classes, image_size=769, mean=(0.485, 0.456, 0.406),
                        std=(0.229, 0.224, 0.225), dense_labels=True)
        task = build_task("seg", info, seg_aspp_channels=aspp_channels, seg_aspp_rates=tuple(aspp_rates))
    return build_network(genotype, task.build_head, task.num_outputs, in_channels, width, depth, "imagenet",
                         True, False)
