"""Parameter and multiply-add counts of fixed networks (fvcore ``FlopCountAnalysis``).

Convention: fvcore counts one fused multiply-add as one "flop", so the numbers are **MACs**
(multiply-accumulates), the unit DARTS and UnNAS report as "FLOPs"/"multi-adds" (e.g. DARTS_V2
ImageNet mobile ~ 574M). Counted in eval mode for one sample: one image, or for tasks that turn an
image into several trunk passes (rotation: 4 rotations, jigsaw: G^2 tiles) everything one source
image produces. Parameters exclude the auxiliary head (DARTS' convention); the auxiliary head is
reported separately, with its MACs on the feature map it reads.
"""
from __future__ import annotations

import copy

import torch

from search_spaces.darts.network import FixedNetwork, count_params
from search_spaces.parts import InputParts


def _macs(module, inputs) -> int:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notes from fvcore's import and tracer
        from fvcore.nn import FlopCountAnalysis
        fca = FlopCountAnalysis(module, inputs)
        fca.unsupported_ops_warnings(False)
        fca.uncalled_modules_warnings(False)
        return int(fca.total())


class _PartsAsArguments(torch.nn.Module):
    """A network fed InputParts, with the parts as separate arguments and the outputs as a tuple:
    the form a tracer takes."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, *parts):
        return tuple(self.net(InputParts(parts)))


@torch.no_grad()
def complexity(model: FixedNetwork, sample) -> dict:
    """{'params', 'params_aux', 'macs', 'macs_aux'} for ``model`` on one network input ``sample``
    (a tensor, or the InputParts of a multi-task sample: every part's trunk pass and head)."""
    net = copy.deepcopy(model).float().eval().cpu()
    if isinstance(sample, InputParts):
        macs = _macs(_PartsAsArguments(net), tuple(p.detach().float().cpu() for p in sample))
    else:
        x = sample.detach().float().cpu()
        macs = _macs(net, (x,))
    out = {"params": count_params(net) - count_params(net.aux_head), "params_aux": count_params(net.aux_head),
           "macs": macs, "macs_aux": 0}
    if net.aux_head is not None:
        _, aux = net.trunk.forward_with_aux(x, need_aux=True)
        out["macs_aux"] = _macs(net.aux_head, (aux,))
    return out


def sample_input(task, info, image_size: int | None = None) -> torch.Tensor:
    """The network input that one (grey) image of side ``image_size`` becomes under ``task``."""
    s = image_size or info.image_size
    h, w = (s, s) if isinstance(s, int) else s
    images = torch.full((1, 3, h, w), 128, dtype=torch.uint8)
    labels = torch.zeros((1, h, w) if info.dense_labels else (1,), dtype=torch.long)
    x, _ = task.make_batch(images, labels, False, torch.Generator().manual_seed(0))
    return x


def format_complexity(c: dict) -> str:
    s = f"params {c['params'] / 1e6:.3f}M, MACs {c['macs'] / 1e6:.1f}M (fvcore flops = multiply-adds)"
    if c.get("params_aux"):
        s += (f"; with aux head: params {(c['params'] + c['params_aux']) / 1e6:.3f}M, "
              f"MACs {(c['macs'] + c['macs_aux']) / 1e6:.1f}M")
    return s
