"""BiCoT-GRPO loss pieces on numbers derived by hand (t2i_r1.md §6.1 steps 5-6, §15.2)."""
import math

import pytest
import torch
from hydra.utils import instantiate

from grpo.normalization import ModalityMean, SequenceMean, TokenMean
from grpo.objective import GRPOLoss, importance_ratio, k3_kl, policy_gradient_term

F64 = torch.float64


def test_k3_kl_by_hand():
    # logp = log 1/2, ref = log 1/4: d = ref - logp = -log 2 -> kl = e^d - d - 1 = 1/2 + log 2 - 1 = 0.19314...
    logp, ref = torch.tensor([math.log(0.5)], dtype=F64), torch.tensor([math.log(0.25)], dtype=F64)
    assert k3_kl(logp, ref).item() == pytest.approx(0.5 + math.log(2) - 1, abs=1e-15)
    # d = +log 2: kl = 2 - log 2 - 1 = 0.30685...
    assert k3_kl(ref, logp).item() == pytest.approx(1 - math.log(2), abs=1e-15)
    assert k3_kl(logp, logp).item() == 0.0
    grid = torch.linspace(-5, 5, 101, dtype=F64)
    assert (k3_kl(grid, torch.zeros_like(grid)) >= 0).all()  # e^d >= 1 + d


def test_on_policy_ratio_is_one_with_the_gradient_of_logp():
    logp = torch.tensor([-0.3, -2.0], dtype=F64, requires_grad=True)
    ratio = importance_ratio(logp)
    assert ratio.tolist() == [1.0, 1.0]
    ratio.sum().backward()
    assert logp.grad.tolist() == [1.0, 1.0]  # d/dx exp(x - stopgrad(x)) = 1 at x


def test_ppo_clipping_by_hand():
    # old chosen so that ratio = [1.5, 1.5, 0.5, 0.5]; advantages per row = [1, -1, 1, -1]; eps = 0.2.
    #   r=1.5, A=+1: min(1.5, 1.2) = 1.2 clipped, gradient 0 (clamped)
    #   r=1.5, A=-1: min(-1.5, -1.2) = -1.5 unclipped, gradient A * r = -1.5
    #   r=0.5, A=+1: min(0.5, 0.8) = 0.5 unclipped, gradient 0.5
    #   r=0.5, A=-1: min(-0.5, -0.8) = -0.8 clipped, gradient 0
    logp = torch.zeros(4, 1, dtype=F64, requires_grad=True)
    old = -torch.log(torch.tensor([[1.5], [1.5], [0.5], [0.5]], dtype=F64))
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=F64)
    surrogate, clipped = policy_gradient_term(logp, adv, old, clip=(0.2, 0.2))
    torch.testing.assert_close(surrogate[:, 0], torch.tensor([1.2, -1.5, 0.5, -0.8], dtype=F64), rtol=1e-15, atol=1e-15)
    assert clipped[:, 0].tolist() == [True, False, False, True]
    surrogate.sum().backward()
    torch.testing.assert_close(logp.grad[:, 0], torch.tensor([0.0, -1.5, 0.5, 0.0], dtype=F64), rtol=1e-15, atol=1e-15)
    # Asymmetric range (eps_high = 0.6): r=1.5 < 1.6 is no longer clipped for A = +1.
    surrogate, clipped = policy_gradient_term(logp.detach(), adv, old, clip=(0.2, 0.6))
    assert surrogate[0, 0].item() == pytest.approx(1.5) and not clipped[0, 0]


def _batch():
    """B = 2 samples, one group (G = 2). Text: 2 positions, row 0's second is padding. Image: 1 token each.

    Advantages [+1, -1]; reference = policy everywhere except row 1's image token, where ref - logp = log 2
    (kl = 2 - log 2 - 1 = 1 - log 2).
    """
    logps = {
        "text": torch.tensor([[-1.0, -9.0], [-2.0, -0.5]], dtype=F64, requires_grad=True),
        "image": torch.tensor([[-3.0], [-4.0]], dtype=F64, requires_grad=True),
    }
    ref = {"text": logps["text"].detach().clone(), "image": logps["image"].detach().clone()}
    ref["image"][1, 0] += math.log(2)
    masks = {"text": torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=F64), "image": torch.ones(2, 1, dtype=F64)}
    return logps, ref, masks, torch.tensor([1.0, -1.0], dtype=F64)


def test_official_loss_value_and_gradient_by_hand():
    # Per-token loss = -(A - beta * kl): row 0 tokens (text, image) -> -1, -1 ; row 1 (text, text) -> +1, +1 and
    # image -> 1 + 0.1 * (1 - log 2). The padded text token is masked. Token mean over the 5 counted tokens:
    #   (-1 - 1 + 1 + 1 + 1 + 0.1 (1 - log 2)) / 5
    logps, ref, masks, adv = _batch()
    out = GRPOLoss(beta=0.1)(logps, masks, adv, group_size=2, ref_logps=ref)
    kl = 1 - math.log(2)
    assert out.loss.item() == pytest.approx((1 + 0.1 * kl) / 5, abs=1e-15)
    out.loss.backward()
    # d loss / d logp = (-A + beta * d kl/d logp) / 5 ; d kl / d logp = 1 - e^(ref - logp) = 0 where ref = logp and
    # 1 - 2 = -1 on row 1's image token. Masked token: 0.
    torch.testing.assert_close(logps["text"].grad, torch.tensor([[-0.2, 0.0], [0.2, 0.2]], dtype=F64), rtol=0, atol=1e-15)
    torch.testing.assert_close(logps["image"].grad, torch.tensor([[-0.2], [(1 - 0.1) / 5]], dtype=F64), rtol=0, atol=1e-15)
    # kl metric: token mean of kl over the 5 tokens; per modality: text 0, image kl / 2.
    assert out.metrics["kl"] == pytest.approx(kl / 5, abs=1e-15)
    assert out.metrics["kl/text"] == 0.0 and out.metrics["kl/image"] == pytest.approx(kl / 2, abs=1e-15)
    assert out.metrics["loss"] == pytest.approx(out.loss.item()) and out.metrics["clip_fraction"] == 0.0


def test_normalisation_options_by_hand():
    logps, ref, masks, adv = _batch()
    per_token = {"text": torch.tensor([[-1.0, 7.0], [1.0, 1.0]], dtype=F64), "image": torch.tensor([[-1.0], [3.0]], dtype=F64)}
    # Token mean over [text ‖ image]: (-1 + 1 + 1 - 1 + 3) / 5 = 0.6 (the masked 7 is ignored).
    assert TokenMean()(per_token, masks, 2).item() == pytest.approx(0.6)
    # Sequence mean: row 0 (-1 - 1) / 2 = -1, row 1 (1 + 1 + 3) / 3 = 5/3 -> mean 1/3.
    assert SequenceMean()(per_token, masks, 2).item() == pytest.approx(1 / 3)
    # Modality means: text (-1 + 1 + 1) / 3 = 1/3, image (-1 + 3) / 2 = 1 -> 1 * 1/3 + 0.5 * 1.
    assert ModalityMean({"text": 1.0, "image": 0.5})(per_token, masks, 2).item() == pytest.approx(1 / 3 + 0.5)
    # Image-only: a ModalityMean config still serves (the text weight is ignored).
    assert ModalityMean()({"image": per_token["image"]}, {"image": masks["image"]}, 2).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no weight for modalities"):
        ModalityMean({"text": 1.0})(per_token, masks, 2)


def test_per_group_token_mean_weighs_groups_equally():
    # G = 1, two groups. Group 0: values [2, 2] both counted; group 1: [5, (0 masked)].
    #   per group: (2 + 5) / 2 = 3.5 ; pooled over the micro-batch: (2 + 2 + 5) / 3 = 3.
    values = {"text": torch.tensor([[2.0, 2.0], [5.0, 0.0]])}
    masks = {"text": torch.tensor([[1.0, 1.0], [1.0, 0.0]])}
    assert TokenMean()(values, masks, 1).item() == pytest.approx(3.5)
    assert TokenMean(per_group=False)(values, masks, 1).item() == pytest.approx(3.0)
    # One group holding both rows: the two coincide.
    assert TokenMean()(values, masks, 2).item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="no unmasked token"):
        TokenMean()(values, {"text": torch.tensor([[1.0, 1.0], [0.0, 0.0]])}, 1)


def test_loss_at_step_zero_is_minus_mean_advantage_with_zero_kl():
    # Policy = reference = behaviour: kl = 0, ratio = 1; z-scored advantages of a group sum to 0, so with the
    # sequence mean the loss is exactly -mean(A) = 0, and clipping changes nothing on-policy.
    logps, _, masks, adv = _batch()
    ref = {k: v.detach().clone() for k, v in logps.items()}
    plain = GRPOLoss(normalization=SequenceMean())(logps, masks, adv, 2, ref_logps=ref)
    clipped = GRPOLoss(clip_eps=0.2, normalization=SequenceMean())(logps, masks, adv, 2, ref_logps=ref, old_logps=ref)
    assert plain.metrics["kl"] == 0.0 and plain.loss.item() == 0.0
    assert clipped.loss.item() == plain.loss.item() and clipped.metrics["clip_fraction"] == 0.0


def test_errors_name_the_problem():
    logps, ref, masks, adv = _batch()
    with pytest.raises(ValueError, match="needs reference log-probs"):
        GRPOLoss(beta=0.01)(logps, masks, adv, 2)
    assert GRPOLoss(beta=0.0)(logps, masks, adv, 2).metrics["kl"] == 0.0
    with pytest.raises(ValueError, match="modalities"):
        GRPOLoss()(logps, {"text": masks["text"]}, adv, 2, ref_logps=ref)
    with pytest.raises(ValueError, match="advantages must be"):
        GRPOLoss()(logps, masks, adv[:1], 2, ref_logps=ref)
    with pytest.raises(ValueError, match="clip_eps"):
        GRPOLoss(clip_eps=1.5)


def test_objects_are_selected_with_target():
    loss = instantiate(
        {
            "_target_": "grpo.objective.GRPOLoss",
            "beta": 0.1,
            "normalization": {"_target_": "grpo.normalization.ModalityMean", "weights": {"text": 1.0, "image": 0.5}},
        }
    )
    logps, ref, masks, adv = _batch()
    out = loss(logps, masks, adv, 2, ref_logps=ref)
    # text token mean of -(A) = (-1 + 1 + 1) / 3; image: (-1 + 1 + 0.1 (1 - log 2)) / 2, weighted 0.5.
    want = 1 / 3 + 0.5 * (0.1 * (1 - math.log(2))) / 2
    assert out.loss.item() == pytest.approx(want, abs=1e-15)
