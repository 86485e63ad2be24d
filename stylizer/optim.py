"""Optimisers over a batch of images, written as a few tensor ops with no host syncs.

`BatchLBFGS` is limited-memory BFGS in the compact representation of Byrd, Nocedal and
Schnabel (1994): the two-loop recursion becomes a handful of batched matrix products
and one small triangular solve, so a step is the same short list of kernels whatever
the history length, and it can be captured in a CUDA graph. Each image in the batch is
its own problem (its own history), so several jobs can be optimised together.

Departures from `torch.optim.LBFGS` (max_iter=1, no line search, as Gatys-style code
uses it): the curvature pair uses the step actually taken after clamping the pixels to
their range (projected L-BFGS), and pairs failing the curvature condition are masked
out on the device instead of being skipped by a Python `if`. The first step can be
sized in the units of x (`first_step`), and the projection onto the feasible set can be
any in-place function (`project`; by default, clamping to [lo, hi]).

With no line search, a unit step can overshoot. Given each step's loss, an image whose
loss is more than twice its best goes back to its best iterate, and its later steps are
halved until one succeeds, then doubled back up to the unit step (a device-side trust
region). Its history is kept, and the next pair, from the overshot point back to the
best one, teaches the model the curvature it had missed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class BatchLBFGS:
    """L-BFGS for x of shape (B, ...) with per-image histories of length `history`."""

    def __init__(self, x: torch.Tensor, history: int = 20, lr: float = 1.0,
                 lo: float = 0.0, hi: float = 255.0, *, first_step: float | None = None,
                 project: Callable[[torch.Tensor], None] | None = None) -> None:
        """`first_step`: the largest change of any entry of x in the first step (default:
        torch's rule, a step of min(1, 1/|g|_1) along -g). `project`: makes a (B, N)
        iterate feasible in place, instead of clamping it to [lo, hi]."""
        b = x.shape[0]
        n = x[0].numel()
        dev = x.device
        self.m, self.lr, self.lo, self.hi = history, lr, lo, hi
        self.first_step, self.project = first_step, project
        self.S = torch.zeros(b, history, n, device=dev)  # (B, m, N) steps s_i
        self.Y = torch.zeros(b, history, n, device=dev)  # (B, m, N) gradient changes y_i
        self.valid = torch.zeros(b, history, device=dev)  # (B, m) 1 where the pair is usable
        self.SY = torch.zeros(b, history, history, device=dev)  # s_i . y_j, in ring order
        self.YY = torch.zeros(b, history, history, device=dev)  # y_i . y_j
        self.gamma = torch.ones(b, device=dev)  # (B,) initial inverse-Hessian scale
        self.prev_x = torch.zeros(b, n, device=dev)
        self.prev_g = torch.zeros(b, n, device=dev)
        self.k = torch.zeros((), dtype=torch.long, device=dev)  # steps taken
        self.scale = torch.ones(b, device=dev)  # (B,) step length after overshoots, <= 1
        self.best_loss = torch.full((b,), float("inf"), device=dev)
        self.best_x = x.detach().reshape(b, -1).float().clone()
        self.slot = torch.zeros(1, dtype=torch.long, device=dev)  # next ring slot
        self._ar = torch.arange(history, device=dev)

    # Every state update below is in place, so that a captured CUDA graph of a step
    # reads and writes the same memory on every replay.
    @torch.no_grad()
    def step(self, x: torch.Tensor, grad: torch.Tensor, loss: torch.Tensor | None = None) -> None:
        """Updates x in place from its gradient (both (B, ...)), then projects it.

        `loss`, (B,), is f(x) before the update; with it the step keeps track of the best
        iterate and sends an image that overshot back to it (see the module notes).
        """
        b = x.shape[0]
        xf = x.reshape(b, -1).float()
        g = grad.reshape(b, -1).float()
        first = self.k == 0  # () bool, on the device: no step taken yet
        # Store the pair from the previous step (none before the first).
        s = xf - self.prev_x
        y = g - self.prev_g
        ys = (s * y).sum(1)  # (B,)
        yy = (y * y).sum(1)
        ok = (ys > 1e-10) & ~first  # curvature condition
        s, y = s * ok[:, None], y * ok[:, None]  # a pair that fails it is stored as zeros
        self.S.index_copy_(1, self.slot, s.unsqueeze(1))
        self.Y.index_copy_(1, self.slot, y.unsqueeze(1))
        self.valid.index_copy_(1, self.slot, ok.float().unsqueeze(1))
        self.gamma.copy_(torch.where(ok, ys / yy.clamp_min(1e-30), self.gamma))
        # Everything below reads the (B, m, N) histories only twice: once for their dot
        # products with g and the new pair, once to form H g. S^T Y and Y^T Y are kept
        # up to date by the new pair's row and column, in ring order; only those (m, m)
        # matrices are put in chronological order, never the histories themselves.
        Sg = torch.bmm(self.S, torch.stack((g, y), 2))  # (B, m, 2): S g, S y_new
        Yg = torch.bmm(self.Y, torch.stack((g, s, y), 2))  # Y g, Y s_new, Y y_new
        w = self.slot
        self.SY.index_copy_(2, w, Sg[:, :, 1:2])  # column: s_i . y_new
        self.SY.index_copy_(1, w, Yg[:, :, 1].unsqueeze(1))  # row: s_new . y_j
        self.YY.index_copy_(2, w, Yg[:, :, 2:3])
        self.YY.index_copy_(1, w, Yg[:, :, 2].unsqueeze(1))
        # Chronological order of the ring: oldest first, the slot just written last.
        order = (self.slot + 1 + self._ar) % self.m
        self.slot.add_(1).remainder_(self.m)
        a = Sg[:, :, 0].index_select(1, order)  # (B, m) S^T g
        bv = Yg[:, :, 0].index_select(1, order)  # (B, m) Y^T g
        SY = self.SY.index_select(1, order).index_select(2, order)  # (B, m, m) s_i . y_j
        YY = self.YY.index_select(1, order).index_select(2, order)
        valid = self.valid.index_select(1, order)  # (B, m)
        # R: upper triangle of S^T Y; masked (all-zero) pairs get a unit diagonal so that
        # R stays invertible and they contribute nothing.
        R = torch.triu(SY) + torch.diag_embed(1.0 - valid)
        D = torch.diagonal(SY, dim1=1, dim2=2)  # (B, m)
        gam = self.gamma[:, None]
        # H g = gam g + S p1 + gam Y p2 with
        #   p2 = -R^-1 a,  p1 = R^-T ((D + gam Y^T Y) R^-1 a - gam b)
        ria = torch.linalg.solve_triangular(R, a.unsqueeze(2), upper=True)  # (B, m, 1)
        inner = (torch.diag_embed(D) + gam[:, :, None] * YY) @ ria - (gam * bv).unsqueeze(2)
        p1 = torch.linalg.solve_triangular(R.transpose(1, 2), inner, upper=False)
        # Back from chronological to ring order, to multiply the histories in place.
        p1 = torch.zeros_like(p1).index_copy_(1, order, p1)
        p2 = torch.zeros_like(ria).index_copy_(1, order, -gam[:, :, None] * ria)
        hg = gam * g + torch.bmm(self.S.transpose(1, 2), p1).squeeze(2) \
            + torch.bmm(self.Y.transpose(1, 2), p2).squeeze(2)
        d = -hg
        # A direction that does not descend (a poor history) falls back to the gradient.
        descent = (d * g).sum(1) < 0
        d = torch.where(descent[:, None], d, -gam * g)
        # First step: torch's L-BFGS scales by min(1, 1/|g|_1), which barely moves a
        # large image; `first_step` sizes it instead. After that a unit step.
        if self.first_step is None:
            t0 = torch.clamp(1.0 / g.abs().sum(1).clamp_min(1e-30), max=1.0)
        else:
            t0 = self.first_step / d.abs().amax(1).clamp_min(1e-30)
        t = torch.where(first, t0, torch.ones_like(t0)) * self.lr * self.scale  # (B,)
        self.prev_x.copy_(xf)
        self.prev_g.copy_(g)
        new = xf + t[:, None] * d
        if self.project is not None:
            self.project(new)
        else:
            new.clamp_(self.lo, self.hi)
        if loss is not None:
            loss = loss.detach().float()
            better = loss < self.best_loss
            self.best_loss.copy_(torch.where(better, loss, self.best_loss))
            self.best_x.copy_(torch.where(better[:, None], xf, self.best_x))
            blown = loss > 2.0 * self.best_loss
            new = torch.where(blown[:, None], self.best_x, new)
            self.scale.copy_(torch.where(blown, self.scale * 0.5,
                                         (self.scale * 2.0).clamp(max=1.0)))
        x.copy_(new.view_as(x))
        self.k.add_(1)

    def forget_best(self) -> None:
        """The objective changed (a new phase of a schedule): old losses no longer compare."""
        self.best_loss.fill_(float("inf"))

    @torch.no_grad()
    def keep_best(self, x: torch.Tensor, loss: torch.Tensor) -> None:
        """Given f(x) for the final x, puts back the best iterate where it was better."""
        worse = loss.detach().float() > self.best_loss
        x.copy_(torch.where(worse[:, None], self.best_x, x.reshape(x.shape[0], -1)).view_as(x))
