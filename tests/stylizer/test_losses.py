"""The objective's pieces against hand computations with explicit loops, in float64."""

from __future__ import annotations

import math

import pytest
import torch

from stylizer import losses


def _features(b: int, c: int, h: int, w: int, phase: float = 0.0) -> torch.Tensor:
    """Deterministic, non-symmetric activations (some negative, like a conv's output)."""
    n = torch.arange(b * c * h * w, dtype=torch.float32)
    return (torch.sin(n * 0.7 + phase) * 3.0 + n * 0.01).reshape(b, c, h, w)


def _hand_gram(f: torch.Tensor) -> list[list[list[float]]]:
    b, c, h, w = f.shape
    out = []
    for bi in range(b):
        rows = []
        for i in range(c):
            row = []
            for j in range(c):
                total = 0.0
                for y in range(h):
                    for x in range(w):
                        total += float(f[bi, i, y, x]) * float(f[bi, j, y, x])
                row.append(total / (h * w))
            rows.append(row)
        out.append(rows)
    return out


def test_gram_is_the_sum_over_positions_divided_by_their_count() -> None:
    f = _features(2, 3, 2, 3)
    g = losses.gram(f)
    assert g.shape == (2, 3, 3)
    assert g.dtype == torch.float32
    expected = torch.tensor(_hand_gram(f), dtype=torch.float64)
    torch.testing.assert_close(g.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g, g.transpose(1, 2))  # symmetric


def test_gram_is_computed_in_fp32_from_half_precision_input() -> None:
    f = _features(1, 4, 3, 3)
    g = losses.gram(f.to(torch.bfloat16))
    assert g.dtype == torch.float32


def test_content_loss_is_0_01_times_squared_error_over_chw() -> None:
    f = _features(2, 3, 2, 2)
    t = _features(2, 3, 2, 2, phase=1.0)
    got = losses.content_loss(f, t)
    assert got.shape == (2,)
    for bi in range(2):
        sq = 0.0
        for i in range(3):
            for y in range(2):
                for x in range(2):
                    sq += (float(f[bi, i, y, x]) - float(t[bi, i, y, x])) ** 2
        assert float(got[bi]) == pytest.approx(0.01 * sq / (3 * 2 * 2), rel=1e-5)


def test_content_loss_is_zero_for_identical_features() -> None:
    f = _features(1, 2, 3, 3)
    assert float(losses.content_loss(f, f.clone())[0]) == 0.0


def test_style_layer_loss_is_10_over_c_squared_times_mean_squared_gram_error() -> None:
    c = 3
    f = _features(2, c, 2, 3)
    target_f = _features(1, c, 4, 2, phase=2.0)  # the style may have another size
    target = losses.gram(target_f)
    got = losses.style_layer_loss(losses.gram(f), target)
    assert got.shape == (2,)
    g_hand = _hand_gram(f)
    t_hand = _hand_gram(target_f)[0]
    for bi in range(2):
        sq = sum((g_hand[bi][i][j] - t_hand[i][j]) ** 2 for i in range(c) for j in range(c))
        expected = 10.0 / c**2 * sq / c**2
        assert float(got[bi]) == pytest.approx(expected, rel=1e-4)


def test_style_loss_sums_the_layers_with_equal_weights() -> None:
    feats = [_features(1, 2, 4, 4), _features(1, 3, 2, 2, phase=0.5)]
    targets = [losses.gram(_features(1, 2, 3, 3, phase=1.5)),
               losses.gram(_features(1, 3, 2, 3, phase=2.5))]
    total = losses.style_loss(feats, targets)
    parts = [losses.style_layer_loss(losses.gram(f), t) for f, t in zip(feats, targets,
                                                                        strict=True)]
    assert float(total[0]) == pytest.approx(float(parts[0][0] + parts[1][0]), rel=1e-6)
    assert float(parts[0][0]) > 0
    assert float(parts[1][0]) > 0


def test_style_loss_is_zero_against_its_own_grams() -> None:
    feats = [_features(1, 2, 4, 4), _features(1, 3, 2, 2)]
    assert float(losses.style_loss(feats, [losses.gram(f) for f in feats])[0]) == 0.0


def test_style_loss_ignores_where_the_features_are() -> None:
    # Grams forget position: a spatially flipped image has the same style.
    f = _features(1, 3, 4, 5)
    t = [losses.gram(f)]
    assert float(losses.style_loss([f.flip(-1).flip(-2)], t)[0]) == pytest.approx(0.0, abs=1e-6)


def test_tv_loss_on_a_known_image() -> None:
    # A horizontal ramp rising 2 per pixel: dx² = 4 everywhere, dy² = 0.
    ramp = (torch.arange(5, dtype=torch.float32) * 2).expand(1, 3, 4, 5).clone()
    assert float(losses.tv_loss(ramp)[0]) == pytest.approx(0.5 * (4.0 + 0.0))
    # A checkerboard of 0 and 10: every neighbour differs by 10 both ways (squared: 100).
    yy, xx = torch.meshgrid(torch.arange(4), torch.arange(6), indexing="ij")
    board = ((yy + xx) % 2 * 10.0).expand(2, 3, 4, 6).clone()
    tv = losses.tv_loss(board)
    assert tv.shape == (2,)
    assert tv.tolist() == pytest.approx([100.0, 100.0])
    assert float(losses.tv_loss(torch.full((1, 3, 4, 4), 7.0))[0]) == 0.0


def test_tv_loss_matches_an_explicit_loop() -> None:
    img = _features(1, 2, 3, 4)
    dx = dy = 0.0
    for ch in range(2):
        for y in range(3):
            for x in range(3):
                dx += float(img[0, ch, y, x + 1] - img[0, ch, y, x]) ** 2
        for y in range(2):
            for x in range(4):
                dy += float(img[0, ch, y + 1, x] - img[0, ch, y, x]) ** 2
    expected = 0.5 * (dx / (2 * 3 * 3) + dy / (2 * 2 * 4))
    assert float(losses.tv_loss(img)[0]) == pytest.approx(expected, rel=1e-5)


def test_losses_are_differentiable_and_finite() -> None:
    f = _features(1, 4, 3, 3).requires_grad_(True)
    t = _features(1, 4, 3, 3, phase=1.0)
    total = (losses.content_loss(f, t) + losses.style_loss([f], [losses.gram(t)])).sum()
    total.backward()  # type: ignore[no-untyped-call]
    assert f.grad is not None
    assert math.isfinite(float(f.grad.abs().sum()))
    assert float(f.grad.abs().sum()) > 0
