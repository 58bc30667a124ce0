"""Remedies against DARTS' skip-connection collapse that change the search itself (docs/search.md,
"Searches that do not collapse"). Each is one config block, off by default, and every value it
uses is a function of the epoch (or of seed, epoch and step), so a resumed search recomputes it.

* beta-DARTS (Ye et al., CVPR 2022; Sunshine-Ye/Beta-DARTS ``optimizers/darts/architect.py``,
  ``mlc_loss`` and ``_backward_step``): ``lambda(epoch) * mean over edges of logsumexp(alpha_edge)``
  is added to the architecture loss; the official code ramps ``lambda = 50 * epoch / 100`` (its
  100-epoch NAS-Bench-201 search), i.e. ``WEIGHT * epoch / EPOCHS``.
* DARTS- (Chu et al., ICLR 2021; Meituan-AutoML/DARTS- ``src/search/model_search.py`` ``MixedOp``,
  ``src/utils.py`` ``DecayScheduler``): an auxiliary skip connection on every edge, outside the
  softmax mixture, weighted by ``beta(epoch)`` that decays from ``BETA`` towards 0 (linear:
  ``BETA * (E - epoch) / E``, cosine: ``BETA * (1 + cos(pi * epoch / E)) / 2``); on stride-2 edges
  it is a FactorizedReduce with its own weights (the supernet's ``aux_skip``).
* SDARTS-RS (Chen & Hsieh, ICML 2020; xiangning-chen/SmoothDARTS ``attacker/perturb.py``
  ``Random_alpha``, ``sota/cnn/train_search.py``, ``sota/cnn/model_search.py`` ``clip``): in the weight
  step only, the softmax-normalised op weights get ``U[-eps, eps]`` noise and are projected back
  onto the simplex (clamp to [0, 1], renormalise each edge); ``eps(epoch) = 0.03 + (EPSILON -
  0.03) * epoch / EPOCHS``.
"""
from __future__ import annotations

import math

import torch

from search_spaces.darts.supernet import ArchWeights
from unnas.data import step_generator

__all__ = ["beta_decay_loss", "beta_decay_weight", "arch_logits", "aux_skip_weight", "sdarts_epsilon",
           "sdarts_perturb", "SDARTS_STREAM", "Remedies"]

# Stream of the per-step generator of the SDARTS noise (unnas.data.loader.step_generator). The loop's
# own streams are 0-4 plus 10 * rank; this one is the same on every rank, so all ranks perturb alike.
SDARTS_STREAM = 8


# ---- beta-DARTS ------------------------------------------------------------------------------
def beta_decay_loss(alphas) -> torch.Tensor:
    """beta-DARTS' Beta-Decay term: the mean over all edges (of every cell type) of
    ``logsumexp(alpha_edge)``. ``alphas``: (edges, ops) logit tensors, e.g. the normal and the
    reduction cell's. Its gradient is ``softmax(alpha_edge) / number of edges``."""
    rows = torch.cat([a.reshape(-1, a.shape[-1]) for a in alphas])
    return torch.logsumexp(rows, dim=-1).mean()


def beta_decay_weight(weight: float, schedule: str, epoch: int, epochs: int) -> float:
    """lambda at ``epoch``: ``linear`` ramps from 0 (``weight * epoch / epochs``, the official
    code's ``50 * epoch / 100``), ``constant`` is ``weight`` from the start."""
    if weight == 0:
        return 0.0
    if schedule == "constant":
        return float(weight)
    return float(weight) * epoch / epochs


# ---- DARTS- ----------------------------------------------------------------------------------
def aux_skip_weight(beta: float, decay: str, epoch: int, epochs: int) -> float:
    """Weight of DARTS-' auxiliary skip connection during ``epoch`` (DecayScheduler with T_start 0,
    T_max = T_stop = ``epochs``): 1 -> 1/E linearly, or a half cosine, or constant (``none``)."""
    if decay == "linear":
        return beta * (epochs - epoch) / epochs
    if decay == "cosine":
        return beta * (1 + math.cos(math.pi * epoch / epochs)) / 2.0
    return float(beta)


# ---- SDARTS-RS -------------------------------------------------------------------------------
def sdarts_epsilon(epsilon: float, start: float, schedule: str, epoch: int, epochs: int) -> float:
    """The noise radius at ``epoch``: ``linear`` ramps ``start -> epsilon`` (the official
    ``0.03 + (epsilon_alpha - 0.03) * epoch / epochs``), ``constant`` is ``epsilon``."""
    if epsilon == 0:
        return 0.0
    if schedule == "constant":
        return float(epsilon)
    return start + (epsilon - start) * epoch / epochs


def _project(w: torch.Tensor) -> torch.Tensor:
    """SmoothDARTS' ``clip``: clamp each edge's weights to [0, 1] and renormalise them to sum 1;
    an edge clamped to all zeros puts weight 1 on its largest (perturbed) entry."""
    top = w.argmax(dim=-1, keepdim=True)
    c = w.clamp(0, 1)
    dead = c.sum(dim=-1, keepdim=True) == 0
    c = torch.where(dead, torch.zeros_like(c).scatter(-1, top, 1.0), c)
    return c / c.sum(dim=-1, keepdim=True)


def sdarts_perturb(weights: ArchWeights, epsilon: float, generator: torch.Generator, masks=None) -> ArchWeights:
    """SDARTS-RS: softmax op weights + U[-epsilon, epsilon] (drawn from ``generator``), projected
    back onto the simplex. PC-DARTS edge weights (``*_edges``) are left as they are, and with edge
    normalisation the op weights are perturbed before the edge weight multiplies them. ``masks``
    (normal, reduce) of the ops kept on each edge (P-DARTS): the pruned ones stay at 0."""
    def noisy(w, mask):
        u = torch.rand(w.shape, generator=generator, device=w.device, dtype=w.dtype)
        w = w + (2 * u - 1) * epsilon
        return _project(w if mask is None else w.masked_fill(~mask, float("-inf")))

    w = weights.detach()
    mn, mr = masks if masks is not None else (None, None)
    return ArchWeights(noisy(w.normal, mn), noisy(w.reduce, mr), w.normal_edges, w.reduce_edges)


def arch_logits(arch) -> list[torch.Tensor]:
    """The alphas of both cells; entries of ops pruned by P-DARTS (``arch.masked``) at -inf, so the
    beta-DARTS term runs over each edge's kept ops, as its softmax does."""
    alphas = [arch.alpha_normal, arch.alpha_reduce]
    if not getattr(arch, "masked", False):
        return alphas
    return [a.masked_fill(~m, float("-inf")) for a, m in zip(alphas, (arch.mask_normal, arch.mask_reduce))]


class Remedies:
    """The remedies of a search config applied to a :class:`~unnas.search.Searcher`: the epoch's
    schedule values (``values``, also written to the epoch's stats), set at the start of each epoch
    (``begin_epoch``: the auxiliary skip's weight, the beta-DARTS term of the architecture step),
    and the weights of each weight step (``weight_step_weights``: SDARTS' perturbed ones, or None).
    Everything is a function of (config, epoch, step), so a resumed search recomputes it."""

    def __init__(self, cfg):
        self.seed, self.epochs = cfg.SEED, cfg.SEARCH.EPOCHS
        self.beta, self.aux, self.sdarts = cfg.SEARCH.BETA_DARTS, cfg.SEARCH.AUX_SKIP, cfg.SEARCH.SDARTS

    def values(self, epoch: int) -> dict:
        out = {}
        if self.beta.WEIGHT:
            out["beta_decay_weight"] = beta_decay_weight(self.beta.WEIGHT, self.beta.SCHEDULE, epoch, self.epochs)
        if self.aux.ENABLED:
            out["aux_skip_weight"] = aux_skip_weight(self.aux.BETA, self.aux.DECAY, epoch, self.epochs)
        if self.sdarts.EPSILON:
            out["sdarts_epsilon"] = sdarts_epsilon(self.sdarts.EPSILON, self.sdarts.EPSILON_START,
                                                   self.sdarts.SCHEDULE, epoch, self.epochs)
        return out

    def begin_epoch(self, searcher, epoch: int) -> dict:
        v = self.values(epoch)
        if "aux_skip_weight" in v:
            searcher.model.trunk.set_aux_skip_weight(v["aux_skip_weight"])
        lam = v.get("beta_decay_weight", 0.0)
        searcher.step_fn.arch_regularizer = (lambda arch: lam * beta_decay_loss(arch_logits(arch))) if lam else None
        return v

    def weight_step_weights(self, searcher, epoch: int, step: int) -> ArchWeights | None:
        eps = self.values(epoch).get("sdarts_epsilon", 0.0)
        if not eps:
            return None
        gen = step_generator(self.seed, epoch, step, SDARTS_STREAM, searcher.device)
        arch = searcher.arch
        masks = (arch.mask_normal, arch.mask_reduce) if getattr(arch, "masked", False) else None
        with torch.no_grad():
            return sdarts_perturb(arch.weights(), eps, gen, masks)
