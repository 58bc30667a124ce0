"""Collapse diagnostics of a search, and DARTS-ES early stopping (docs/search.md, "Searches that do
not collapse").

After every epoch, :class:`DiagnosticsHook` adds to the epoch's stats (so to metrics.jsonl and to
TensorBoard as ``epoch/<key>``):

* ``normal_skips``, ``reduce_skips``: ``skip_connect`` ops in each derived cell;
* ``normal_param_free``, ``reduce_param_free``: parameter-free ops (:data:`PARAM_FREE`) in it;
* ``normal_entropy``, ``reduce_entropy``: the mean over edges of the entropy (nats) of
  softmax(alpha), ``log(8) = 2.08`` for uniform alphas, 0 for one-hot ones;
* every ``SEARCH.HESSIAN.PERIOD`` epochs ``hessian_eig``: the largest eigenvalue of the Hessian of
  the architecture loss with respect to the alphas (:func:`hessian_eigenvalue`).

RobustDARTS (Zela et al., ICLR 2020; automl/RobustDARTS ``src/search/analyze.py`` ``compute_Hw``,
``src/search/train_search.py``) computes the full Hessian of the validation loss on one held-out
batch (plus the alphas' L2 term, ``arch_weight_decay * I``) and takes ``max(eigvals(H))``. Here the
matrix is never formed: power iteration on Hessian-vector products (double backward through the
supernet) gives the spectral radius ``r`` and, when the dominant eigenvalue is not ``+r`` (a
negative one dominates, or a +/- pair), a second power iteration on ``H + r I`` gives the largest
eigenvalue (:func:`largest_eigenvalue`): the same number, to the iterations' accuracy, up to
``2 * SEARCH.HESSIAN.ITERS`` products. The loss is the task loss on the first
``SEARCH.HESSIAN.BATCHES`` held-out batches, in fp32, with the evaluation's BN mode (running
statistics untouched), plus ``ARCH.WEIGHT_DECAY / 2 * ||alpha||^2`` as RobustDARTS; the
beta-DARTS term is left out, so the curves of all remedies measure the same thing.

DARTS-ES (:func:`darts_es`) is RobustDARTS' ``EVLocalAvg``/``early_stop`` (``src/utils.py``):
centred local averages of ``WINDOW`` eigenvalues; at an epoch whose eigenvalue was just computed
(not the last), stop when the newest local average over the one ``DELTA`` eigenvalues earlier
exceeds ``FACTOR``, and keep the genotype of that earlier average's epoch (the paper: stop when
``avg(i - k) / avg(i) < 0.75``).
"""
from __future__ import annotations

import logging

import torch

from unnas.engine.hooks import Hook

log = logging.getLogger("unnas.search")

__all__ = ["PARAM_FREE", "cell_counts", "op_entropy", "power_iteration", "largest_eigenvalue", "hessian_vector_product",
           "hessian_eigenvalue", "darts_es",
           "collapse_warning", "DiagnosticsHook", "REMEDY_KEYS"]

PARAM_FREE = ("none", "skip_connect", "max_pool_3x3", "avg_pool_3x3")

# Named by the collapse warning: the remedies' keys (docs/search.md, "Searches that do not collapse").
REMEDY_KEYS = ("SEARCH.BETA_DARTS.WEIGHT 50", "SEARCH.AUX_SKIP.ENABLED True", "SEARCH.SDARTS.EPSILON 0.3",
               "SEARCH.PDARTS.ENABLE True", "SEARCH.MAX_SKIPS_NORMAL 2",
               "SEARCH.EARLY_STOP.ENABLED True with SEARCH.HESSIAN.PERIOD 1")


# ---- counts and entropies ---------------------------------------------------------------------
def cell_counts(genotype) -> dict:
    """Skip connections and parameter-free ops in each cell of a genotype."""
    out = {}
    for cell in ("normal", "reduce"):
        ops = [op for op, _ in getattr(genotype, cell)]
        out[f"{cell}_skips"] = sum(op == "skip_connect" for op in ops)
        out[f"{cell}_param_free"] = sum(op in PARAM_FREE for op in ops)
    return out


def op_entropy(weights: torch.Tensor) -> float:
    """Mean over edges (rows) of the entropy, in nats, of each edge's op distribution."""
    p = weights.detach().double()
    return float(-(p * torch.log(p.clamp_min(1e-30))).sum(dim=-1).mean())


# ---- the Hessian's largest eigenvalue -------------------------------------------------------
def power_iteration(hvp, v0: torch.Tensor, iters: int) -> tuple[float, float]:
    """``iters`` products of the symmetric operator ``hvp`` (flat vector -> flat vector) from
    ``v0``: returns the Rayleigh quotient ``v . H v`` and ``||H v||`` of the last unit vector ``v``.
    The norm converges to the spectral radius, the quotient to the dominant eigenvalue when one
    eigenvalue dominates in magnitude (not when e.g. +r and -r do)."""
    v = v0 / v0.norm()
    rayleigh = norm = 0.0
    for _ in range(iters):
        hv = hvp(v)
        rayleigh, n = float(torch.dot(v, hv)), hv.norm()
        norm = float(n)
        if norm == 0:
            break
        v = hv / n
    return rayleigh, norm


def largest_eigenvalue(hvp, v0: torch.Tensor, iters: int, rtol: float = 1e-3) -> float:
    """The largest (most positive) eigenvalue, as RobustDARTS' ``max(eigvals(H))``, by power
    iteration: ``iters`` products give the spectral radius ``r``; when the Rayleigh quotient is not
    ``+r`` (a negative eigenvalue dominates, or a +/- pair), ``iters`` more on ``H + r I`` (whose
    eigenvalues lie in [0, 2r], the largest being ``lambda_max + r``) give ``lambda_max``."""
    rayleigh, r = power_iteration(hvp, v0, iters)
    if r == 0 or abs(rayleigh - r) <= rtol * r:
        return rayleigh
    shifted, _ = power_iteration(lambda v: hvp(v) + r * v, v0, iters)
    return shifted - r


def hessian_vector_product(loss: torch.Tensor, params: list[torch.Tensor], weight_decay: float = 0.0, average=None):
    """``(hvp, n)``: the product of a flat vector with the Hessian of ``loss + weight_decay / 2 *
    sum ||p||^2`` w.r.t. ``params`` (``n`` entries; a parameter the loss does not use contributes
    zero rows), by double backward: the gradient is built once with ``create_graph``, each product
    is one more backward through it. ``average(list of tensors)`` averages each product in place
    over processes (DDP: every rank gets the same products)."""
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    flat_grad = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])
    if not flat_grad.requires_grad:             # the loss is linear in (or independent of) params
        flat_grad = flat_grad + 0 * sum(p.sum() for p in params)

    def hvp(v):
        hv = torch.autograd.grad(flat_grad, params, grad_outputs=v, retain_graph=True, allow_unused=True)
        hv = [torch.zeros_like(p) if h is None else h.detach() for p, h in zip(params, hv)]
        if average is not None:
            average(hv)
        return torch.cat([h.reshape(-1) for h in hv]) + weight_decay * v

    return hvp, flat_grad.numel()


def hessian_eigenvalue(loss: torch.Tensor, params: list[torch.Tensor], iters: int, generator: torch.Generator,
                       weight_decay: float = 0.0, average=None) -> float:
    """Largest eigenvalue of the Hessian of ``loss + weight_decay / 2 * sum ||p||^2`` w.r.t.
    ``params`` (:func:`hessian_vector_product`, :func:`largest_eigenvalue`); the start vector is
    drawn from ``generator``."""
    hvp, n = hessian_vector_product(loss, params, weight_decay, average)
    v0 = torch.randn(n, generator=generator, device=generator.device, dtype=params[0].dtype).to(params[0].device)
    return largest_eigenvalue(hvp, v0, iters)


# ---- DARTS-ES ---------------------------------------------------------------------------------
def darts_es(history: list[tuple[int, float]], window: int = 5, delta: int = 4, factor: float = 1.3,
             start_epoch: int = 10) -> dict | None:
    """RobustDARTS' early-stopping rule on the eigenvalues ``[(epoch, eigenvalue), ...]`` computed
    so far (evenly spaced, the newest last). The local average centred on eigenvalue ``c`` is the
    mean of eigenvalues ``max(0, c - window // 2) .. c + window // 2``; the newest one is centred on
    ``c = n - 1 - window // 2``. Stop when ``avg(c) / avg(c - delta) > factor`` and the epoch of
    ``c - delta`` is >= ``start_epoch``. Returns None, or ``{"kept_epoch", "ratio", "current_avg",
    "previous_avg", "avg_epoch"}`` (keep the genotype of ``kept_epoch``)."""
    evs = [ev for _, ev in history]
    half = window // 2
    c = len(evs) - 1 - half
    p = c - delta
    if p < 0 or history[p][0] < start_epoch:
        return None

    def avg(i):
        part = evs[max(0, i - half): i + half + 1]
        return sum(part) / len(part)

    current, previous = avg(c), avg(p)
    if previous <= 0 or not current / previous > factor:
        return None
    return {"kept_epoch": history[p][0], "ratio": current / previous, "current_avg": current,
            "previous_avg": previous, "avg_epoch": history[c][0]}


# ---- the warning -------------------------------------------------------------------------------
def collapse_warning(genotype, extra_keys=()) -> str | None:
    """One line when the normal cell is mostly parameter-free (at least half its ops), else None."""
    n = len(genotype.normal)
    counts = cell_counts(genotype)
    free = counts["normal_param_free"]
    if 2 * free < n:
        return None
    keys = "; ".join((*REMEDY_KEYS, *extra_keys))
    return (f"the derived normal cell is mostly parameter-free ({free} of {n} ops, {counts['normal_skips']} "
            f"skip_connect): the search may be collapsing; remedies: {keys}")


class DiagnosticsHook(Hook):
    """Per-epoch collapse diagnostics, the Hessian's eigenvalue and DARTS-ES (see the module doc).

    It runs on every rank, right after the evaluation (the eigenvalue's products are averaged over
    ranks, so all ranks take the same early-stopping decision), and is stateless: the eigenvalues so
    far are read back from ``loop.epoch_stats``, which the checkpoint holds."""

    def __init__(self, cfg, extra_keys=()):
        self.h = cfg.SEARCH.HESSIAN
        self.es = cfg.SEARCH.EARLY_STOP
        self.extra_keys = tuple(extra_keys)

    def hessian_due(self, loop, epoch: int) -> bool:
        period = self.h.PERIOD
        return period > 0 and (epoch % period == 0 or epoch == loop.epochs - 1)

    def collect_epoch(self, loop, stats):
        epoch = loop.epoch
        genotype = loop.space.derive(loop.arch)
        w = loop.arch.weights()
        stats.update(cell_counts(genotype))
        stats["normal_entropy"] = op_entropy(w.normal)
        stats["reduce_entropy"] = op_entropy(w.reduce)
        if self.hessian_due(loop, epoch):
            stats["hessian_eig"] = loop.hessian_eigenvalue(epoch, self.h.BATCHES, self.h.ITERS)
        self._warn(loop, genotype, stats)
        if self.es.ENABLED and "hessian_eig" in stats and epoch < loop.epochs - 1:
            history = [(s["epoch"], s["hessian_eig"]) for s in loop.epoch_stats if "hessian_eig" in s]
            history.append((epoch, stats["hessian_eig"]))
            decision = darts_es(history, self.es.WINDOW, self.es.DELTA, self.es.FACTOR, self.es.START_EPOCH)
            if decision is not None:
                reason = (f"DARTS-ES: the local average of the Hessian's largest eigenvalue grew "
                          f"{decision['ratio']:.2f}x (> SEARCH.EARLY_STOP.FACTOR {self.es.FACTOR}) from "
                          f"{decision['previous_avg']:.4g} (centred on epoch {decision['kept_epoch'] + 1}) to "
                          f"{decision['current_avg']:.4g} (centred on epoch {decision['avg_epoch'] + 1})")
                loop.stop_early(decision["kept_epoch"], reason)

    def _warn(self, loop, genotype, stats):
        """Warn when the normal cell becomes mostly parameter-free (not again while it stays so)."""
        if not getattr(loop, "is_main", True):
            return
        n = len(genotype.normal)
        before = loop.epoch_stats[-1].get("normal_param_free") if loop.epoch_stats else None
        if before is not None and 2 * before >= n:
            return
        line = collapse_warning(genotype, self.extra_keys)
        if line is not None:
            log.warning("epoch %d: %s", loop.epoch + 1, line)

