"""The DARTS bilevel step: an architecture step on the held-out half, then a weight step.

First order: grad_alpha L_val(w, alpha).
Second order (DARTS eq. 7-8): grad_alpha L_val(w', alpha) - xi * H v with
w' = w - xi * (momentum buffer + grad_w L_train(w, alpha) + wd * w), v = grad_w' L_val(w', alpha),
and the Hessian-vector product H v = grad^2_{alpha,w} L_train(w, alpha) v approximated by central
finite differences: (grad_alpha L_train(w + R v) - grad_alpha L_train(w - R v)) / 2R,
R = 0.01 / ||v|| (``fd_eps``).

Both steps average their gradients over ranks (the weight step through DDP, the architecture
step explicitly), so every rank holds identical alphas.

``arch_regularizer`` (a function of the ArchParameters module, or None) is added to the architecture
loss of either order (beta-DARTS); it does not depend on the weights, so its gradient is added as
it is. ``weight_step(..., weights=)`` runs the weight step with other architecture weights than
softmax(alpha) (SDARTS' perturbed ones).
"""
from __future__ import annotations

import torch
from torch.func import functional_call

from unnas.utils.distributed import all_reduce_mean_


class BilevelStep:
    def __init__(self, model, arch, task, w_optimizer, a_optimizer, order: str = "first",
                 grad_clip: float = 5.0, unroll_lr: float = 0.0, ddp_model=None, fd_eps: float = 0.01,
                 amp_dtype: torch.dtype | None = None):
        if order not in ("first", "second"):
            raise ValueError(f"order must be 'first' or 'second', got {order!r}")
        self.model = model                       # the bare SearchModel
        self.ddp_model = ddp_model or model      # DDP-wrapped for the weight step when distributed
        self.arch = arch
        self.task = task
        self.w_opt = w_optimizer
        self.a_opt = a_optimizer
        self.order = order
        self.grad_clip = grad_clip
        self.unroll_lr = unroll_lr
        self.fd_eps = fd_eps                     # DARTS: R = 0.01 / ||v||
        self.amp_dtype = amp_dtype               # autocast dtype of the forward passes (None = fp32)
        self.arch_params = list(arch.parameters())
        self.weight_params = [p for p in model.parameters() if p.requires_grad]
        self.arch_regularizer = None             # arch -> scalar added to the architecture loss (beta-DARTS)

    def autocast(self):
        """Autocast context of every forward pass of the search (a no-op in fp32)."""
        device_type = next(self.model.parameters()).device.type
        return torch.autocast(device_type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None)

    # ---- architecture step ---------------------------------------------------------------
    def arch_step(self, val_in, val_tgt, train_in=None, train_tgt=None, lr: float | None = None) -> float:
        if self.order == "first":
            loss, grads = self._first_order_grads(val_in, val_tgt)
        else:
            xi = self.unroll_lr or lr
            loss, grads = self.second_order_grads(train_in, train_tgt, val_in, val_tgt, xi)
        all_reduce_mean_(grads)
        if self.arch_regularizer is not None:    # the same on every rank: added after the average
            grads = [g + r for g, r in zip(grads, self._grads(self.arch_regularizer(self.arch), self.arch_params))]
        for p, g in zip(self.arch_params, grads):
            p.grad = g
        self.a_opt.step()
        self.a_opt.zero_grad(set_to_none=True)
        return float(loss)

    def _first_order_grads(self, val_in, val_tgt):
        # Only alpha gradients are needed: autograd.grad skips all weight-gradient kernels.
        with self.autocast():
            loss = self.task.loss(self.model(val_in, self.arch.weights()), val_tgt)
        return loss.detach(), self._grads(loss, self.arch_params)

    @staticmethod
    def _grads(loss, tensors):
        """Gradients, with zeros for tensors the graph does not use (e.g. no normal cell at depth 2)."""
        grads = torch.autograd.grad(loss, tensors, allow_unused=True)
        return [torch.zeros_like(t) if g is None else g.detach() for t, g in zip(tensors, grads)]

    def _loss_at(self, params: dict, buffers: dict, x, y):
        # Buffers are cloned so the extra forwards do not move the real BN running statistics.
        state = {**params, **{k: b.clone() for k, b in buffers.items()}}
        with self.autocast():
            return self.task.loss(functional_call(self.model, state, (x, self.arch.weights())), y)

    def second_order_grads(self, train_in, train_tgt, val_in, val_tgt, xi: float):
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        names = [n for n, _ in named]
        params = [p for _, p in named]
        buffers = dict(self.model.named_buffers())
        group = self.w_opt.param_groups[0]
        momentum, wd = group.get("momentum", 0.0), group.get("weight_decay", 0.0)

        # 1. one virtual SGD step on the training batch: w' = w - xi * (m + g + wd * w)
        loss_t = self._loss_at(dict(zip(names, params)), buffers, train_in, train_tgt)
        g_train = self._grads(loss_t, params)
        all_reduce_mean_(g_train)
        unrolled = []
        for p, g in zip(params, g_train):
            buf = self.w_opt.state.get(p, {}).get("momentum_buffer")
            m = momentum * buf if (buf is not None and momentum) else 0.0
            unrolled.append((p.detach() - xi * (m + g + wd * p.detach())).requires_grad_(True))

        # 2. validation loss at w': gradients for alpha and for w'
        loss_v = self._loss_at(dict(zip(names, unrolled)), buffers, val_in, val_tgt)
        grads = self._grads(loss_v, self.arch_params + unrolled)
        d_alpha = grads[:len(self.arch_params)]
        v = grads[len(self.arch_params):]
        all_reduce_mean_(v)

        # 3. Hessian-vector product by central finite differences around w
        r = self.fd_eps / torch.sqrt(sum((t * t).sum() for t in v))
        plus = {n: p.detach() + r * t for n, p, t in zip(names, params, v)}
        minus = {n: p.detach() - r * t for n, p, t in zip(names, params, v)}
        g_plus = self._grads(self._loss_at(plus, buffers, train_in, train_tgt), self.arch_params)
        g_minus = self._grads(self._loss_at(minus, buffers, train_in, train_tgt), self.arch_params)
        out = [da - xi * (gp - gm) / (2 * r) for da, gp, gm in zip(d_alpha, g_plus, g_minus)]
        return loss_v.detach(), out

    # ---- weight step ---------------------------------------------------------------------
    def weight_step(self, inputs, targets, weights=None):
        """``weights``: the ArchWeights to train under (default: softmax(alpha), detached)."""
        if weights is None:
            with torch.no_grad():
                weights = self.arch.weights()
        with self.autocast():
            logits = self.ddp_model(inputs, weights)
            loss = self.task.loss(logits, targets)
        self.w_opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.weight_params, self.grad_clip)
        self.w_opt.step()
        return loss.detach(), logits.detach()
