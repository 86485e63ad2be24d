"""BatchLBFGS on convex quadratics, where the answer is known."""

from __future__ import annotations

import torch

from stylizer.optim import BatchLBFGS

N = 50


def _problem(seed: int, lo: float = 20.0, hi: float = 230.0) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x) = 1/2 sum a_i (x_i - m_i)^2 with curvatures 1..100 and minimum m in [lo, hi]."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.logspace(0, 2, N)[torch.randperm(N, generator=gen)]
    m = lo + (hi - lo) * torch.rand(N, generator=gen)
    return a, m


def _rel_error(x: torch.Tensor, x0: torch.Tensor, target: torch.Tensor) -> float:
    return float((x - target).norm() / (x0 - target).norm())


def _lbfgs(a: torch.Tensor, m: torch.Tensor, x0: torch.Tensor, steps: int,
           lo: float = 0.0, hi: float = 255.0) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    x = x0.clone().view(1, N)
    opt = BatchLBFGS(x, lo=lo, hi=hi)
    ranges = []
    for _ in range(steps):
        opt.step(x, a * (x - m))
        ranges.append((float(x.min()), float(x.max())))
    return x[0], ranges


def test_converges_far_faster_than_gradient_descent_on_an_ill_conditioned_quadratic() -> None:
    a, m = _problem(0)
    x0 = torch.full((N,), 127.5)
    steps = 30
    x, _ = _lbfgs(a, m, x0, steps)
    # Gradient descent with the best fixed step for this problem, 1 / largest curvature.
    y = x0.clone()
    for _ in range(steps):
        y = y - a * (y - m) / a.max()
    lbfgs_err, gd_err = _rel_error(x, x0, m), _rel_error(y, x0, m)
    assert lbfgs_err < 0.01
    assert gd_err > 0.2
    assert lbfgs_err < gd_err / 20


def test_the_error_keeps_falling() -> None:
    a, m = _problem(1)
    x0 = torch.full((N,), 127.5)
    errors = [_rel_error(_lbfgs(a, m, x0, k)[0], x0, m) for k in (5, 15, 30)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.02


def test_clamping_keeps_every_iterate_in_range_and_finds_the_constrained_minimum() -> None:
    a, m = _problem(2, lo=-100.0, hi=400.0)  # many minima lie outside 0..255
    outside = (m < 0) | (m > 255)
    assert 5 < int(outside.sum()) < N - 5
    x0 = torch.full((N,), 127.5)
    x, ranges = _lbfgs(a, m, x0, 60)
    assert all(lo >= 0.0 and hi <= 255.0 for lo, hi in ranges)
    target = m.clamp(0, 255)  # for a separable quadratic, the box minimum is the clipped one
    assert torch.equal(x[outside], target[outside])  # pinned exactly at the bounds
    assert _rel_error(x, x0, target) < 0.05


def test_clamping_uses_the_bounds_it_is_given() -> None:
    a, m = _problem(3, lo=-3.0, hi=3.0)
    x, ranges = _lbfgs(a, m, torch.zeros(N), 40, lo=-1.0, hi=1.0)
    assert all(lo >= -1.0 and hi <= 1.0 for lo, hi in ranges)
    assert float((x - m.clamp(-1, 1)).abs().max()) < 0.5


def test_a_batch_of_two_problems_is_solved_as_if_each_ran_alone() -> None:
    (a1, m1), (a2, m2) = _problem(4), _problem(5)
    a = torch.stack([a1, 3 * a2])
    m = torch.stack([m1, m2])
    # Images are (B, C, H, W): the optimiser flattens each one.
    xb = torch.stack([torch.full((N,), 100.0), torch.full((N,), 150.0)]).view(2, 2, 5, 5)
    batch = BatchLBFGS(xb)
    alone = [xb[i:i + 1].clone() for i in range(2)]
    opts = [BatchLBFGS(x) for x in alone]
    for _ in range(25):
        batch.step(xb, (a * (xb.view(2, N) - m)).view_as(xb))
        for i in range(2):
            opts[i].step(alone[i], (a[i] * (alone[i].view(1, N) - m[i])).view_as(alone[i]))
    for i in range(2):
        # Equal up to float rounding (batched and single matrix products round differently).
        torch.testing.assert_close(xb[i], alone[i][0], rtol=0, atol=0.02)
        assert _rel_error(xb[i].flatten(), torch.full((N,), 100.0 + 50 * i), m[i]) < 0.05
    assert float((xb[0] - xb[1]).abs().max()) > 10  # two different answers


def test_a_zero_gradient_leaves_x_alone_and_stays_finite() -> None:
    x = torch.full((1, 3, 4, 4), 42.0)
    opt = BatchLBFGS(x)
    for _ in range(3):
        opt.step(x, torch.zeros_like(x))
    assert torch.equal(x, torch.full((1, 3, 4, 4), 42.0))
