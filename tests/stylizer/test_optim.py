"""BatchLBFGS on convex quadratics, where the answer is known."""

from __future__ import annotations

import pytest
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


def test_the_first_step_can_be_sized_in_the_units_of_x() -> None:
    a, m = _problem(6)
    x = torch.full((1, N), 127.5)
    opt = BatchLBFGS(x, first_step=4.0)
    before = x.clone()
    opt.step(x, a * (x - m))
    assert float((x - before).abs().max()) == pytest.approx(4.0)
    # torch's rule, min(1, 1/|g|_1), moves this problem by far less.
    y = torch.full((1, N), 127.5)
    BatchLBFGS(y).step(y, a * (y - m))
    assert float((y - before).abs().max()) < 0.5


def test_a_projection_replaces_the_clamp() -> None:
    """Any in-place projection: here onto x_1 + x_2 = 10 (a plane), with no bounds."""
    def onto_plane(v: torch.Tensor) -> None:
        excess = (v[:, 0] + v[:, 1] - 10.0) / 2
        v[:, :2] -= excess[:, None]

    a, m = _problem(7, lo=-300.0, hi=300.0)
    x = torch.zeros(1, N)
    opt = BatchLBFGS(x, project=onto_plane)
    for _ in range(60):
        opt.step(x, a * (x - m))
        assert float(x[0, 0] + x[0, 1]) == pytest.approx(10.0, abs=1e-3)
    assert float(x.min()) < 0.0 or float(x.max()) > 255.0  # no clamping behind its back
    free = slice(2, N)  # the plane leaves these alone: their minimum is m's
    assert _rel_error(x[0, free], torch.zeros(N - 2), m[free]) < 0.02


def test_an_image_that_overshoots_goes_back_to_its_best_with_a_shorter_step() -> None:
    a, m = _problem(8)
    x = torch.full((2, N), 127.5)
    opt = BatchLBFGS(x)

    def f(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * (a * (v - m).square()).sum(1)

    for _ in range(3):
        opt.step(x, a * (x - m), f(x))
    best = x.clone()
    opt.step(x, a * (x - m), f(x))  # the iterate `best` is scored, then left
    # Image 1's next evaluation comes back far worse (as after an overshoot); image 0's is fine.
    loss = f(x)
    loss[1] = 10 * f(best)[1]
    opt.step(x, a * (x - m), loss)
    assert torch.equal(x[1], best[1])  # back to its best iterate
    assert not torch.equal(x[0], best[0])
    # Its next step will be half the unit step; the other image's stays whole.
    assert opt.scale.tolist() == [1.0, 0.5]
    opt.step(x, a * (x - m), f(x))
    assert float(f(x)[1]) < float(f(best)[1])  # and it makes progress again
    assert opt.scale.tolist() == [1.0, 1.0]  # success: back up to the unit step


def _two_loop(g: torch.Tensor, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The textbook L-BFGS direction -H g (Nocedal & Wright, Algorithm 7.4), float64."""
    q, alphas = g.clone(), []
    for s, y in reversed(pairs):
        alpha = (s @ q) / (y @ s)
        alphas.append(alpha)
        q -= alpha * y
    s, y = pairs[-1]
    r = (s @ y) / (y @ y) * q
    for (s, y), alpha in zip(pairs, reversed(alphas), strict=True):
        r += s * (alpha - (y @ r) / (y @ s))
    return -r


def test_every_step_is_the_two_loop_recursion_with_the_latest_pairs() -> None:
    """Over a ring of 4 pairs wrapped three times, on a coupled (non-diagonal) quadratic:
    each unit step equals the textbook recursion over the last 4 (s, y) pairs."""
    gen = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(N, N, generator=gen, dtype=torch.float64))
    hess = q @ torch.diag(torch.logspace(0, 2, N, dtype=torch.float64)) @ q.T
    m = 100 + 50 * torch.rand(N, generator=gen, dtype=torch.float64)
    x = torch.full((1, N), 128.0)
    opt = BatchLBFGS(x, history=4, lo=-1e9, hi=1e9, first_step=4.0)
    xs, gs = [], []
    for k in range(14):
        xk = x[0].double()
        g = hess @ (xk - m)
        xs.append(xk)
        gs.append(g)
        opt.step(x, g.float().view(1, N))
        if k == 0:
            continue
        pairs = [(xs[i + 1] - xs[i], gs[i + 1] - gs[i]) for i in range(max(0, k - 4), k)]
        expected = xk + _two_loop(g, pairs)
        step = (x[0].double() - xk).norm()
        assert float((x[0].double() - expected).norm() / step) < 1e-3, k
