"""One coarse-to-fine level's optimisation: the optimiser, the weight schedule and the
replay of each step as a CUDA graph. The caller owns the loop around `LevelOptimiser.step`
(cancellation, progress), so this module knows nothing of jobs or reports.

Only the pixels (or the pyramid canvas's offsets, see `stylizer.canvas`) are optimised;
the network is frozen (Gatys et al. 2016). Optimisers: L-BFGS (Liu & Nocedal 1989, "On
the limited memory BFGS method for large scale optimization"; batched and projected in
`stylizer.optim`) or Adam (Kingma & Ba 2015), the founding notes' choice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from stylizer.canvas import PyramidCanvas
from stylizer.objective import Objective
from stylizer.optim import BatchLBFGS

log = logging.getLogger(__name__)

LBFGS_HISTORY = 20  # curvature pairs kept per image (Nocedal & Wright 2006, ch. 7: 3-20)
# On the pyramid canvas, the first L-BFGS step moves no offset by more than this (0-255
# units): torch's rule, min(1, 1/|g|_1), barely moves a large picture and wastes the step.
FIRST_STEP = 4.0
GRAPH_WARMUP = 3  # eager steps before a step is captured (cuDNN picks its kernels)
# The founding notes' two-phase schedule: style weight during the first phase.
TWO_PHASE_SPLIT = 0.4
# With 0.1 the style term still outweighed content ~100x and the photo never formed.
TWO_PHASE_STYLE = 1e-3

Losses = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (total, content, style), (B,) each


class LevelOptimiser:
    """Optimises a (B, 3, H, W) picture batch in 0-255 on `objective` for `n_steps` steps,
    with the optimiser, canvas and schedule of `objective.params` (the pyramid canvas has
    one level, the pixels, when the objective holds a coarser view).

    Call `step(i)` for i = 0 .. n_steps - 1, then `finish()` for the pictures. After each
    step, `losses` holds that step's (total, content, style), each (B,) on the device, and
    `style_mult` the schedule's weight on style. `channels_last`: keep the canvas NHWC,
    as the network is. `cuda_graphs`: replay the constant-schedule L-BFGS step as one
    CUDA graph after GRAPH_WARMUP eager steps; if the capture fails, the steps stay eager
    and `graph_failed` says so.
    """

    def __init__(self, objective: Objective, img: torch.Tensor, n_steps: int, *,
                 channels_last: bool, cuda_graphs: bool) -> None:
        params = objective.params
        self.objective = objective
        self.n_steps = n_steps
        # A level held to the look of the level before (`objective.coarser`) optimises
        # its pixels: that level settled the large shapes, and the pyramid's coarse
        # offsets moved them again in this level's first steps (README, "Large
        # paintings: coarse to fine").
        self._pyramid = (PyramidCanvas(img, 1 if objective.coarser is not None else None,
                                       channels_last=channels_last)
                         if params.optimizer == "lbfgs" and params.canvas == "pyramid"
                         else None)
        if self._pyramid is not None:
            var = self._pyramid.z  # the offsets are optimised; `picture()` is the image
        else:
            var = img.detach().clone()
            if channels_last:
                var = var.contiguous(memory_format=torch.channels_last)
        var.requires_grad_(True)
        self._var = var
        self._lbfgs: BatchLBFGS | None = None
        self._adam: torch.optim.Adam | None = None
        if params.optimizer == "lbfgs":
            self._lbfgs = (BatchLBFGS(var, history=LBFGS_HISTORY) if self._pyramid is None
                           else BatchLBFGS(var, history=LBFGS_HISTORY, first_step=FIRST_STEP,
                                           project=self._pyramid.project_))
        else:
            self._adam = torch.optim.Adam([var], lr=params.lr,
                                          fused=img.device.type == "cuda")
        # On the GPU a step is ~100 small kernels; replaying them as one CUDA graph removes
        # the launch overhead that otherwise dominates at batch 1. A schedule that changes
        # the weights between steps cannot be replayed.
        self._graphable = (cuda_graphs and img.device.type == "cuda"
                           and self._lbfgs is not None and params.schedule == "constant"
                           and n_steps > GRAPH_WARMUP + 2)
        self._graph: torch.cuda.CUDAGraph | None = None
        self.graph_failed = False
        self.losses: Losses | None = None
        self.style_mult = 1.0

    def picture(self) -> torch.Tensor:
        """The current pictures, (B, 3, H, W) in 0-255 (the canvas, or what its offsets
        make), attached to the optimised tensor's graph."""
        return self._var if self._pyramid is None else self._pyramid.picture(self._var)

    def step(self, i: int) -> None:
        """Takes step `i` (0-based) of the level."""
        if self._graph is not None:
            self._graph.replay()  # updates `losses` in place
            return
        self.style_mult = 1.0
        if self.objective.params.schedule == "two-phase":
            split = TWO_PHASE_SPLIT * self.n_steps
            if i < split:
                self.style_mult = TWO_PHASE_STYLE  # structure first, then style
            elif self._lbfgs is not None and i - 1 < split:
                # The first phase's best iterate was best on another objective.
                self._lbfgs.forget_best()
        self.losses = self._step(self.style_mult)
        if self._graphable and i == GRAPH_WARMUP - 1:
            self._graph, captured = self._capture(lambda: self._step(1.0))
            self.losses = captured or self.losses

    def finish(self) -> torch.Tensor:
        """The level's pictures, (B, 3, H, W) in 0-255, detached: with L-BFGS each image's
        best iterate on the full objective (see `BatchLBFGS.keep_best`)."""
        with torch.no_grad():
            if self._lbfgs is not None:
                self._lbfgs.keep_best(self._var.data, self.objective(self.picture())[0])
            return self.picture().detach()  # the pixel canvas is the leaf itself

    def _step(self, style_mult: float) -> Losses:
        total, c, s = self.objective(self.picture(), style_mult)
        if self._lbfgs is not None:
            (grad,) = torch.autograd.grad(total.sum(), self._var)
            self._lbfgs.step(self._var.data, grad, total)  # projects: what is optimised is saved
        else:
            assert self._adam is not None
            self._var.grad = None
            total.sum().backward()  # type: ignore[no-untyped-call]
            self._adam.step()
            with torch.no_grad():
                self._var.clamp_(0, 255)
        return total.detach(), c.detach(), s.detach()

    def _capture(self, fn: Callable[[], Losses]
                 ) -> tuple[torch.cuda.CUDAGraph | None, Losses | None]:
        """Records one step as a CUDA graph (not run now: the next replay runs it)."""
        device = self._var.device
        graph = torch.cuda.CUDAGraph()
        try:
            torch.cuda.synchronize(device)
            with torch.cuda.graph(graph):
                out = fn()
        except RuntimeError:
            log.warning("CUDA graph capture failed; continuing without graphs", exc_info=True)
            self.graph_failed = True
            torch.cuda.synchronize(device)
            return None, None
        return graph, out
