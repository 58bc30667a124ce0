"""The textbook DARTS evaluation network: the reference our fixed network is checked and timed against.

NetworkCIFAR and NetworkImageNet as the DARTS code (quark0/darts, cnn/model.py, operations.py,
utils.py) and the UnNAS release (pycls/models/nas/nas.py, operations.py, common.py) build them,
written as plainly as they are there:

* one module per op of the genotype (``_ops``), every conv block an ``nn.Sequential`` called
  ``op`` (ReLU, convs, BN) as in pycls' operations.py; NCHW, fp32; nothing fused, shared or
  skipped;
* preprocessing: ``FactorizedReduce`` (ReLU, two stride-2 1x1 convs, the second on the input
  zero-padded by one pixel at the far edges and cropped by one at the near edges, concatenated,
  BN) after a reduction, else ``ReLUConvBN`` 1x1;
* drop path as DARTS' ``utils.drop_path``: a Bernoulli(keep) mask of shape (N, 1, 1, 1), then the
  op's output divided by keep and multiplied by the mask *in place*; applied to every op output
  but an Identity's, after both ops of a node ran. The release allocates the mask with
  ``torch.cuda.FloatTensor`` (GPU only); here it is an fp32 tensor on the input's device, drawn
  from the default generator of that device;
* auxiliary heads fed by the output of cell ``2 * layers // 3`` in training mode, starting with
  an *in-place* ReLU (it rectifies that cell's output for the cells after it too, as in DARTS; they
  all start with a ReLU, so nothing changes unless that cell is the last one: use a depth where it
  is not); the CIFAR head assumes an 8x8 map, the ImageNet one a 7x7 or 8x8 map (its docstring's
  "14x14" is stale) and has no BN after the 768-channel conv;
* the task classifier of UnNAS (``pycls/models/common.py``'s ``Classifier``): adaptive average
  pool and one linear layer for cls and rot; for jig the pooled features of the G^2 tiles of a
  sample concatenated slot-major into one linear layer (the input is either the release's
  (B, G^2, 3, t, t) or our flattened (B * G^2, 3, t, t)). DARTS' NetworkImageNet pools with
  ``AvgPool2d(7)``, which is the same at 224 px;
* ``forward`` returns ``(logits, logits_aux)`` in training mode with the auxiliary head, else
  the logits (UnNAS' convention; DARTS always returns the pair).

:func:`load_from_ours` copies the parameters and buffers of our
:class:`~search_spaces.darts.network.FixedNetwork` into it, module by module along the structure
(stem, each cell's preprocessing and ops, classifier, auxiliary head), and fails on any tensor it
cannot match. Nothing here is imported from ``search_spaces`` but the genotype and the reduction
layout, which are data, not computation.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_spaces.darts.stems import reduction_layers  # noqa: E402


# ---- operations (pycls/models/nas/operations.py) ---------------------------------------------------
class ReLUConvBN(nn.Module):
    def __init__(self, c_in, c_out, kernel_size, stride, padding, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


class DilConv(nn.Module):
    def __init__(self, c_in, c_out, kernel_size, stride, padding, dilation, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=c_in,
                      bias=False),
            nn.Conv2d(c_in, c_out, 1, padding=0, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


class SepConv(nn.Module):
    def __init__(self, c_in, c_out, kernel_size, stride, padding, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride=stride, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_in, 1, padding=0, bias=False),
            nn.BatchNorm2d(c_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride=1, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, padding=0, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


class Identity(nn.Module):
    def forward(self, x):
        return x


class Zero(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    def __init__(self, c_in, c_out, affine=True):
        super().__init__()
        assert c_out % 2 == 0
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)
        self.pad = nn.ConstantPad2d((0, 1, 0, 1), 0)

    def forward(self, x):
        x = self.relu(x)
        y = self.pad(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(y[:, :, 1:, 1:])], dim=1))


OPS = {
    "none": lambda c, stride, affine: Zero(stride),
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "max_pool_3x3": lambda c, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "skip_connect": lambda c, stride, affine: Identity() if stride == 1 else FactorizedReduce(c, c, affine=affine),
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine=affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine=affine),
    "sep_conv_7x7": lambda c, stride, affine: SepConv(c, c, 7, stride, 3, affine=affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine=affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine=affine),
    "conv_7x1_1x7": lambda c, stride, affine: nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c, c, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(c, c, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
        nn.BatchNorm2d(c, affine=affine),
    ),
}


# ---- drop path (cnn/utils.py) and the cell (cnn/model.py) -----------------------------------------
def drop_path(x, drop_prob):
    if drop_prob > 0.0:
        keep_prob = 1.0 - drop_prob
        mask = torch.empty(x.size(0), 1, 1, 1, dtype=torch.float32, device=x.device).bernoulli_(keep_prob)
        x.div_(keep_prob)
        x.mul_(mask)
    return x


class Cell(nn.Module):
    def __init__(self, genotype, c_prev_prev, c_prev, c, reduction, reduction_prev):
        super().__init__()
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(c_prev_prev, c)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, c, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0)
        if reduction:
            op_names, indices = zip(*genotype.reduce)
            concat = genotype.reduce_concat
        else:
            op_names, indices = zip(*genotype.normal)
            concat = genotype.normal_concat
        self._steps = len(op_names) // 2
        self._concat = concat
        self.multiplier = len(concat)
        self._ops = nn.ModuleList()
        for name, index in zip(op_names, indices):
            stride = 2 if reduction and index < 2 else 1
            self._ops.append(OPS[name](c, stride, True))
        self._indices = indices

    def forward(self, s0, s1, drop_prob):
        s0 = self.preprocess0(s0)
        s1 = self.preprocess1(s1)
        states = [s0, s1]
        for i in range(self._steps):
            h1 = states[self._indices[2 * i]]
            h2 = states[self._indices[2 * i + 1]]
            op1 = self._ops[2 * i]
            op2 = self._ops[2 * i + 1]
            h1 = op1(h1)
            h2 = op2(h2)
            if self.training and drop_prob > 0.0:
                if not isinstance(op1, Identity):
                    h1 = drop_path(h1, drop_prob)
                if not isinstance(op2, Identity):
                    h2 = drop_path(h2, drop_prob)
            states.append(h1 + h2)
        return torch.cat([states[i] for i in self._concat], dim=1)


# ---- heads -------------------------------------------------------------------------------------
class AuxiliaryHeadCIFAR(nn.Module):
    def __init__(self, c, num_classes):
        """assuming input size 8x8"""
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),   # 2x2
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


class AuxiliaryHeadImageNet(nn.Module):
    def __init__(self, c, num_classes):
        """assuming input size 7x7 (or 8x8)"""
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.AvgPool2d(5, stride=2, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            # no BatchNorm2d(768) here, as in DARTS and the release
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


TASK_CLASSIFIERS = ("cls", "rot", "jig")


class Classifier(nn.Module):
    """pycls' ``Classifier`` for cls, rot (pool + linear) and jig (per-tile pool, slot-major
    concatenation, linear); ``jig_tiles`` = G^2."""

    def __init__(self, channels, num_classes, task="cls", jig_tiles=4):
        super().__init__()
        if task not in TASK_CLASSIFIERS:
            raise ValueError(f"the textbook network has the classifiers of {', '.join(TASK_CLASSIFIERS)}, not {task!r}")
        self.task = task
        self.pooling = nn.AdaptiveAvgPool2d(1)
        if task == "jig":
            self.jig_sq = jig_tiles
            self.classifier = nn.Linear(channels * jig_tiles, num_classes)
        else:
            self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x, shape=None):
        x = self.pooling(x)
        if self.task == "jig":
            x = x.view([x.shape[0] // self.jig_sq, x.shape[1] * self.jig_sq, x.shape[2], x.shape[3]])
        return self.classifier(x.view(x.size(0), -1))


def preprocess(x):
    """pycls' ``Preprocess``: a jigsaw batch (B, G^2, 3, t, t) -> (B * G^2, 3, t, t)."""
    if x.dim() == 5:
        x = x.view([x.shape[0] * x.shape[1], x.shape[2], x.shape[3], x.shape[4]])
    return x


# ---- networks ----------------------------------------------------------------------------------
class NetworkCIFAR(nn.Module):
    def __init__(self, C, num_classes, layers, auxiliary, genotype, in_channels=3, task="cls", jig_tiles=4):
        super().__init__()
        self._layers = layers
        self._auxiliary = auxiliary
        self.drop_path_prob = 0.0
        stem_multiplier = 3
        c_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            if i in [layers // 3, 2 * layers // 3]:
                c_curr *= 2
                reduction = True
            else:
                reduction = False
            cell = Cell(genotype, c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
            reduction_prev = reduction
            self.cells.append(cell)
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
            if i == 2 * layers // 3:
                c_to_auxiliary = c_prev
        if auxiliary:
            self.auxiliary_head = AuxiliaryHeadCIFAR(c_to_auxiliary, num_classes)
        self.classifier = Classifier(c_prev, num_classes, task, jig_tiles)

    def forward(self, input):
        input = preprocess(input)
        logits_aux = None
        s0 = s1 = self.stem(input)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == 2 * self._layers // 3:
                if self._auxiliary and self.training:
                    logits_aux = self.auxiliary_head(s1)
        logits = self.classifier(s1, input.shape[2:])
        if self._auxiliary and self.training:
            return logits, logits_aux
        return logits


class NetworkImageNet(nn.Module):
    """``single_reduction``: the release's seg layout (one reduction cell at layers // 3)."""

    def __init__(self, C, num_classes, layers, auxiliary, genotype, in_channels=3, task="cls", jig_tiles=4,
                 single_reduction=False):
        super().__init__()
        self._layers = layers
        self._auxiliary = auxiliary
        self.drop_path_prob = 0.0
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        c_prev_prev, c_prev, c_curr = C, C, C
        self.cells = nn.ModuleList()
        reduction_prev = True
        reductions = [layers // 3] if single_reduction else [layers // 3, 2 * layers // 3]
        for i in range(layers):
            if i in reductions:
                c_curr *= 2
                reduction = True
            else:
                reduction = False
            cell = Cell(genotype, c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
            reduction_prev = reduction
            self.cells.append(cell)
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
            if i == 2 * layers // 3:
                c_to_auxiliary = c_prev
        if auxiliary:
            self.auxiliary_head = AuxiliaryHeadImageNet(c_to_auxiliary, num_classes)
        self.classifier = Classifier(c_prev, num_classes, task, jig_tiles)

    def forward(self, input):
        input = preprocess(input)
        logits_aux = None
        s0 = self.stem0(input)
        s1 = self.stem1(s0)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == 2 * self._layers // 3:
                if self._auxiliary and self.training:
                    logits_aux = self.auxiliary_head(s1)
        logits = self.classifier(s1, input.shape[2:])
        if self._auxiliary and self.training:
            return logits, logits_aux
        return logits


def textbook_like(ours, task: str = "cls") -> nn.Module:
    """The textbook network of the same shape as our ``FixedNetwork`` ``ours`` (genotype, width,
    depth, stem, input channels, auxiliary head, classes), with its own initialisation;
    :func:`load_from_ours` then copies our weights in."""
    trunk = ours.trunk
    genotype = getattr(trunk, "genotype", None)
    if genotype is None or not hasattr(trunk, "cells"):
        raise TypeError(f"the textbook network mirrors DARTS fixed networks, not a {type(trunk).__name__}")
    if trunk.reductions != reduction_layers(trunk.depth, trunk.single_reduction):
        raise ValueError("unexpected reduction layout")
    head_out = _head_linear(ours.head).out_features
    jig_tiles = getattr(ours.head, "tiles", 4)
    aux = ours.aux_head is not None
    num_classes = head_out
    if aux and _head_linear(ours.aux_head).out_features != head_out:
        raise ValueError("the textbook network's auxiliary head predicts the classifier's classes")
    if trunk.stem_kind == "cifar":
        if trunk.single_reduction:
            raise ValueError("NetworkCIFAR always has two reduction cells")
        return NetworkCIFAR(trunk.width, num_classes, trunk.depth, aux, genotype, trunk.in_channels, task, jig_tiles)
    return NetworkImageNet(trunk.width, num_classes, trunk.depth, aux, genotype, trunk.in_channels, task, jig_tiles,
                           trunk.single_reduction)


def _head_linear(head: nn.Module) -> nn.Linear:
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TypeError(f"no linear classifier in {type(head).__name__}")
    return linears[-1]


# ---- our FixedNetwork -> the textbook, by structure ---------------------------------------------
def module_pairs(ours, textbook):
    """(our module, textbook module, what) for each unit the two share: stem, every cell's two
    preprocessing blocks and its ops in genotype order, the classifier, the auxiliary head."""
    trunk = ours.trunk
    if len(trunk.cells) != len(textbook.cells):
        raise ValueError(f"{len(trunk.cells)} cells in ours, {len(textbook.cells)} in the textbook")
    if trunk.stem_kind == "cifar":
        pairs = [(trunk.stem.stem, textbook.stem, "stem")]
    else:
        pairs = [(trunk.stem.stem0, textbook.stem0, "stem0"), (trunk.stem.stem1, textbook.stem1, "stem1")]
    for i, (cell, tcell) in enumerate(zip(trunk.cells, textbook.cells)):
        if len(cell.ops) != len(tcell._ops):
            raise ValueError(f"cell {i}: {len(cell.ops)} ops in ours, {len(tcell._ops)} in the textbook")
        pairs.append((cell.preprocess0, tcell.preprocess0, f"cell {i} preprocess0"))
        pairs.append((cell.preprocess1, tcell.preprocess1, f"cell {i} preprocess1"))
        pairs += [(op, top, f"cell {i} op {k}") for k, (op, top) in enumerate(zip(cell.ops, tcell._ops))]
    pairs.append((ours.head, textbook.classifier, "classifier"))
    if (ours.aux_head is None) != (getattr(textbook, "auxiliary_head", None) is None):
        raise ValueError("one network has an auxiliary head, the other not")
    if ours.aux_head is not None:
        pairs.append((ours.aux_head, textbook.auxiliary_head, "auxiliary head"))
    return pairs


def _tensors(module: nn.Module) -> list:
    """(name, tensor) of a module's parameters and buffers in registration order (conv, BN, linear
    leaves visited as they are nested)."""
    return list(module.state_dict(keep_vars=True).items())


def key_map(ours, textbook) -> dict:
    """{our state_dict key: the textbook's key}: the tensors of each pair of corresponding modules
    are matched in order, and each match must agree in kind (weight, bias, running_mean, ...),
    shape and the type of the module that holds it. Raises on any tensor left over on either side."""
    names = {id(m): n for n, m in textbook.named_modules()}
    ours_names = {id(m): n for n, m in ours.named_modules()}
    out = {}
    for mine, theirs, what in module_pairs(ours, textbook):
        a, b = _tensors(mine), _tensors(theirs)
        if len(a) != len(b):
            raise ValueError(f"{what}: {len(a)} tensors in ours ({[n for n, _ in a]}), {len(b)} in the textbook "
                             f"({[n for n, _ in b]})")
        prefix_a, prefix_b = ours_names[id(mine)], names[id(theirs)]
        for (na, ta), (nb, tb), ka, kb in zip(a, b, _leaf_kinds(mine), _leaf_kinds(theirs)):
            if na.rsplit(".", 1)[-1] != nb.rsplit(".", 1)[-1] or ta.shape != tb.shape or ka != kb:
                raise ValueError(f"{what}: ours' {na} ({ka}, {tuple(ta.shape)}) does not match the textbook's {nb} "
                                 f"({kb}, {tuple(tb.shape)})")
            out[f"{prefix_a}.{na}"] = f"{prefix_b}.{nb}"
    missing = set(textbook.state_dict()) - set(out.values())
    if missing:
        raise ValueError(f"textbook tensors with no counterpart in ours: {sorted(missing)}")
    left = set(ours.state_dict()) - set(out)
    if left:
        raise ValueError(f"our tensors with no place in the textbook: {sorted(left)}")
    return out


def textbook_state_from_ours(ours, textbook) -> dict:
    """The textbook's state_dict filled from ours' tensors (copies), along :func:`key_map`."""
    state = ours.state_dict()
    return {theirs: state[mine].detach().clone() for mine, theirs in key_map(ours, textbook).items()}


def _leaf_kinds(module: nn.Module) -> list:
    """The class name of the module holding each tensor of ``_tensors(module)``, in the same order."""
    kinds = []
    for _, m in module.named_modules():
        n = len(list(m.named_parameters(recurse=False))) + len(list(m.named_buffers(recurse=False)))
        kinds += [type(m).__name__] * n
    return kinds


def load_from_ours(textbook: nn.Module, ours) -> None:
    """Copy our FixedNetwork's parameters and buffers into the textbook network (strict)."""
    textbook.load_state_dict(textbook_state_from_ours(ours, textbook), strict=True)
