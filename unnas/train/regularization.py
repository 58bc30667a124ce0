"""Training-only regularisers of the DARTS/UnNAS recipes: label smoothing and cutout."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, eps: float) -> torch.Tensor:
    """UnNAS label smoothing: 1 - eps on the target, eps / (K - 1) on each of the other K - 1 classes
    (DARTS instead uses (1 - eps) onehot + eps / K)."""
    logp = F.log_softmax(logits.float(), dim=1)
    nll = -logp.gather(1, targets[:, None]).squeeze(1)
    others = -logp.sum(1) - nll
    k = logits.shape[1]
    return ((1 - eps) * nll + eps / (k - 1) * others).mean()


def cutout(x: torch.Tensor, length: int, generator: torch.Generator | None) -> torch.Tensor:
    """DARTS cutout on network inputs: per sample a ``length`` square (centre uniform over the image,
    clipped at the borders) is set to 0 (the data mean, after normalisation)."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=generator, device=x.device)
    cx = torch.randint(0, w, (n,), generator=generator, device=x.device)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_y = (ys >= (cy[:, None] - length // 2)) & (ys < (cy[:, None] + length - length // 2))
    in_x = (xs >= (cx[:, None] - length // 2)) & (xs < (cx[:, None] + length - length // 2))
    hole = in_y[:, :, None] & in_x[:, None, :]
    return x.masked_fill(hole[:, None], 0.0)
