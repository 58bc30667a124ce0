"""A split trunk: disjoint sub-networks, each reading its own group of input channels, their
feature maps concatenated along channels (the split-brain autoencoder of Zhang, Isola & Efros,
CVPR 2017: one sub-network sees L, the other ab).

Space-agnostic: it wraps trunks that any space builds (supernets taking ``(x, weights)``, fixed
trunks with ``forward_with_aux``). In a search the sub-networks are two supernets of the same
space called with the same architecture weights, so they share the alphas and derive one genotype;
their weights are separate. The calls the loops make on a trunk (``use_channels_last``,
``set_aux_skip_weight``, P-DARTS' ``skip_dropout``) reach every sub-network.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


class _All:
    """Reads from the first object, writes to all (P-DARTS sets ``skip_dropout.p`` and ``.generator``)."""

    def __init__(self, objs):
        object.__setattr__(self, "_objs", list(objs))

    def __getattr__(self, name):
        return getattr(self._objs[0], name)

    def __setattr__(self, name, value):
        for o in self._objs:
            setattr(o, name, value)


def check_groups(groups: Sequence[Sequence[int]], in_channels: int | None = None) -> tuple[tuple[int, ...], ...]:
    """Non-empty groups of consecutive channels that cover 0..C-1 in order (e.g. ((0,), (1, 2)))."""
    groups = tuple(tuple(int(c) for c in g) for g in groups)
    flat = [c for g in groups for c in g]
    if not groups or any(not g for g in groups) or flat != list(range(len(flat))) \
            or (in_channels is not None and len(flat) != in_channels):
        raise ValueError(f"input groups must split channels 0..C-1 in order into non-empty runs, got {groups}")
    return groups


def split_width(width: int, groups) -> int:
    """Each sub-network's initial channels: the width split evenly, so the concatenated network
    has the unsplit network's channels at every layer."""
    n = len(groups)
    if width % n or width // n < 1:
        raise ValueError(f"a trunk split into {n} sub-networks needs a width divisible by {n}, got {width}")
    return width // n


class SplitTrunk(nn.Module):
    def __init__(self, trunks: Sequence[nn.Module], groups: Sequence[Sequence[int]]):
        super().__init__()
        self.groups = check_groups(groups)
        if len(trunks) != len(self.groups):
            raise ValueError(f"{len(trunks)} sub-networks for {len(self.groups)} input groups")
        self.trunks = nn.ModuleList(trunks)
        self.in_channels = sum(len(g) for g in self.groups)
        self.out_channels = sum(t.out_channels for t in trunks)
        aux = [getattr(t, "aux_channels", None) for t in trunks]
        self.aux_channels = None if any(a is None for a in aux) else sum(aux)

    def parts(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x[:, g[0]:g[-1] + 1] for g in self.groups]

    def forward(self, x, *args, **kwargs):
        return torch.cat([t(p, *args, **kwargs) for t, p in zip(self.trunks, self.parts(x))], dim=1)

    def forward_with_aux(self, x, need_aux=None):
        outs = [t.forward_with_aux(p, need_aux) for t, p in zip(self.trunks, self.parts(x))]
        features = torch.cat([f for f, _ in outs], dim=1)
        auxs = [a for _, a in outs]
        return features, (None if any(a is None for a in auxs) else torch.cat(auxs, dim=1))

    def use_channels_last(self, enabled: bool = True):
        for t in self.trunks:
            t.use_channels_last(enabled)
        return self

    def set_aux_skip_weight(self, beta: float) -> None:
        for t in self.trunks:
            t.set_aux_skip_weight(beta)

    @property
    def skip_dropout(self):
        return _All([t.skip_dropout for t in self.trunks])
