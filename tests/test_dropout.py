"""The faster CPU dropout: torch's semantics (rate, scaling, gradient, modes, seeding)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlabel.dropout import Dropout, dropout, eager_attention, effective_p, use_fast_dropout


@pytest.mark.parametrize("p, bits", [(0.1, 8), (0.5, 8), (0.01, 16)])
def test_drops_at_rate_p_and_scales_the_rest(p, bits):
    assert effective_p(p) * 2**bits == round(p * 2**bits)  # 0.1 -> 26/256, 0.01 -> 655/65536
    torch.manual_seed(0)
    x = torch.rand(1000, 1000) + 0.5  # no zeros of its own
    y = dropout(x, p, training=True)
    assert (y == 0).float().mean().item() == pytest.approx(effective_p(p), abs=0.001)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / (1 - effective_p(p)))


@pytest.mark.parametrize("p", [0.001, 0.01, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.9])
def test_rounded_rate_stays_within_two_percent_of_p(p):
    assert abs(effective_p(p) - p) <= 0.02 * p


@pytest.mark.parametrize("p", [0.999, 0.99999, 1 - 1e-9])
def test_rates_just_under_one_keep_some_elements_and_a_finite_scale(p):
    assert 0 < 1 - effective_p(p) <= 1 / 256
    torch.manual_seed(0)
    y = dropout(torch.ones(1000, 1000), p, training=True)
    assert torch.isfinite(y).all() and (y != 0).any()


def test_rates_too_small_for_16_bits_drop_nothing():
    assert effective_p(1e-7) == 0.0
    x = torch.rand(100, 100) + 0.5
    assert dropout(x, 1e-7, training=True) is x


def test_masks_differ_between_calls_and_repeat_under_a_seed():
    x = torch.ones(64, 64)
    torch.manual_seed(3)
    first, second = dropout(x, 0.5, True), dropout(x, 0.5, True)
    torch.manual_seed(3)
    assert not torch.equal(first, second)
    assert torch.equal(dropout(x, 0.5, True), first)


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(0)
    x = torch.rand(300, 7, requires_grad=True)
    y = dropout(x, 0.3, training=True)
    y.sum().backward()
    expected = (y.detach() != 0).float() / (1 - effective_p(0.3))
    torch.testing.assert_close(x.grad, expected)


def test_identity_when_not_training_or_p_zero_and_zeros_at_p_one():
    x = torch.rand(10, 10)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    assert not dropout(x, 1.0, training=True).any()


def test_keeps_bf16():
    x = torch.rand(8, 8, dtype=torch.bfloat16)
    assert dropout(x, 0.1, True).dtype == torch.bfloat16


def test_swaps_every_dropout_module_and_keeps_p():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.2), nn.Sequential(nn.Dropout(0.3)))
    use_fast_dropout(model)
    assert [m.p for m in model.modules() if isinstance(m, Dropout)] == [0.2, 0.3]
    model.eval()
    x = torch.rand(4, 2)
    torch.testing.assert_close(model(x), model[0](x))


def test_attention_matches_sdpa_without_dropout():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    mask = torch.zeros(2, 1, 5, 5)
    mask[1, ..., 3:] = torch.finfo(torch.float32).min  # the second text has 3 real tokens
    module = nn.Module().eval()
    out, _ = eager_attention(module, q, k, v, mask)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, expected.transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_attention_dropout_zeroes_probabilities_and_rescales_the_output():
    torch.manual_seed(0)
    q, k, v = (torch.randn(4, 8, 64, 16) for _ in range(3))
    module = nn.Module().train()
    out, weights = eager_attention(module, q, k, v, None, dropout=0.1)
    full = torch.softmax(q @ k.transpose(2, 3) / 4.0, dim=-1)
    kept = weights != 0
    assert (~kept).float().mean().item() == pytest.approx(effective_p(0.1), abs=0.005)
    torch.testing.assert_close(weights[kept], full[kept])
    torch.testing.assert_close(out, (weights @ v / (1 - effective_p(0.1))).transpose(1, 2))
    zero, _ = eager_attention(module, q, k, v, None, dropout=1.0)
    assert not zero.any()
