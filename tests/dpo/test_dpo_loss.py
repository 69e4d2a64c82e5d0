"""DPO / cDPO / IPO losses on numbers derived by hand (imagegen_cot.md §8.3)."""
import math

import pytest
import torch

from dpo.loss import IPOLoss, SigmoidLoss, dpo_loss, preference_logits

# policy chosen/rejected, reference chosen/rejected: h = (-10 + 12) - (-11 + 11) = 2
PC, PR, RC, RR = torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0]), torch.tensor([-11.0])


def test_preference_logit_and_implied_rewards():
    assert preference_logits(PC, PR, RC, RR).item() == pytest.approx(2.0)
    out = dpo_loss(PC, PR, RC, RR, SigmoidLoss(beta=0.1))
    # rewards = beta * (policy - reference): 0.1 * 1 and 0.1 * (-1)
    assert out.chosen_rewards.item() == pytest.approx(0.1)
    assert out.rejected_rewards.item() == pytest.approx(-0.1)
    assert out.margins.item() == pytest.approx(0.2)
    assert out.accuracy.item() == 1.0


def test_sigmoid_loss_value_and_gradient():
    pc = PC.clone().requires_grad_(True)
    out = dpo_loss(pc, PR, RC, RR, SigmoidLoss(beta=0.1))
    # -log sigmoid(0.2) = log(1 + e^-0.2)
    assert out.losses.item() == pytest.approx(math.log1p(math.exp(-0.2)), abs=1e-6)
    out.losses.sum().backward()
    # d/d pc = -beta * sigmoid(-beta h) = -0.1 / (1 + e^0.2)
    assert pc.grad.item() == pytest.approx(-0.1 / (1 + math.exp(0.2)), abs=1e-7)


def test_beta_scales_the_logit():
    out = dpo_loss(PC, PR, RC, RR, SigmoidLoss(beta=0.5))
    assert out.losses.item() == pytest.approx(math.log1p(math.exp(-1.0)), abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.5)


def test_label_smoothing():
    out = dpo_loss(PC, PR, RC, RR, SigmoidLoss(beta=0.1, label_smoothing=0.1))
    expected = 0.9 * math.log1p(math.exp(-0.2)) + 0.1 * math.log1p(math.exp(0.2))
    assert out.losses.item() == pytest.approx(expected, abs=1e-6)  # 0.6181389...
    assert expected == pytest.approx(0.6181389, abs=1e-6)


def test_ipo():
    out = dpo_loss(PC, PR, RC, RR, IPOLoss(beta=0.1))
    assert out.losses.item() == pytest.approx((2 - 1 / 0.2) ** 2)  # (2 - 5)^2 = 9
    out = dpo_loss(PC, PR, RC, RR, IPOLoss(beta=0.25))
    assert out.losses.item() == pytest.approx((2 - 2) ** 2, abs=1e-9)


def test_batch_losses_are_per_pair():
    pc, pr = torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -1.0])
    out = dpo_loss(pc, pr, torch.zeros(2), torch.zeros(2), SigmoidLoss(beta=1.0))
    assert out.losses.tolist() == pytest.approx([math.log1p(math.exp(-1)), math.log1p(math.exp(2))], abs=1e-6)
    assert out.accuracy.tolist() == [1.0, 0.0]


@pytest.mark.parametrize("make", [lambda: SigmoidLoss(beta=0.0), lambda: IPOLoss(beta=0.0), lambda: SigmoidLoss(beta=-1)])
def test_beta_zero_is_an_error(make):
    with pytest.raises(ValueError, match="beta must be > 0"):
        make()


def test_missing_reference_is_an_error_unless_explicit():
    with pytest.raises(ValueError, match="reference_free=True"):
        dpo_loss(PC, PR, None, None, SigmoidLoss(beta=0.1))
    out = dpo_loss(PC, PR, None, None, SigmoidLoss(beta=0.1), reference_free=True)
    assert out.losses.item() == pytest.approx(math.log1p(math.exp(-0.2)), abs=1e-6)  # h = -10 + 12
    with pytest.raises(ValueError, match="both reference"):
        preference_logits(PC, PR, RC, None)


def test_label_smoothing_range():
    with pytest.raises(ValueError, match="label_smoothing"):
        SigmoidLoss(beta=0.1, label_smoothing=0.5)
