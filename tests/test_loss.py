"""Equation 1 against numbers worked by hand.

policy chosen/rejected = [-1, -2] / [-3, -1], reference chosen/rejected = [-2, -2] / [-2, -2],
|w| = [2, 4], β = 0.5, α = 1:
  chosen reward   = 0.5·([-1, -2] - [-2, -2]) = [0.5, 0.0]
  rejected reward = 0.5·([-3, -1] - [-2, -2]) = [-0.5, 0.5]
  DPO  = -log σ([1.0, -0.5]) = [log(1 + e^-1), log(1 + e^0.5)] = [0.3132617, 0.9740770]
  NLL  = [1/2, 2/4] = [0.5, 0.5]
  loss = [0.8132617, 1.4740770]
"""

import math

import pytest
import torch
from torch.testing import assert_close

from irpo.loss import LOSSES, compute_loss, dpo_nll_loss, nll_lengths, sft_loss

POLICY_CHOSEN = torch.tensor([-1.0, -2.0])
POLICY_REJECTED = torch.tensor([-3.0, -1.0])
REFERENCE = torch.tensor([-2.0, -2.0])
LENGTHS = torch.tensor([2.0, 4.0])


def test_dpo_nll_matches_hand_computed_values():
    terms = dpo_nll_loss(POLICY_CHOSEN, POLICY_REJECTED, REFERENCE, REFERENCE, LENGTHS, beta=0.5, alpha=1.0)
    assert_close(terms.chosen_reward, torch.tensor([0.5, 0.0]))
    assert_close(terms.rejected_reward, torch.tensor([-0.5, 0.5]))
    assert_close(terms.dpo, torch.tensor([math.log(1 + math.exp(-1)), math.log(1 + math.exp(0.5))]))
    assert_close(terms.nll, torch.tensor([0.5, 0.5]))
    assert_close(terms.loss, torch.tensor([0.8132617, 1.4740770]))


def test_alpha_zero_is_plain_dpo():
    terms = dpo_nll_loss(POLICY_CHOSEN, POLICY_REJECTED, REFERENCE, REFERENCE, LENGTHS, beta=0.5, alpha=0.0)
    assert_close(terms.loss, terms.dpo)
    assert_close(terms.loss, -torch.nn.functional.logsigmoid(torch.tensor([1.0, -0.5])))


def test_alpha_scales_only_the_nll_term():
    one = dpo_nll_loss(POLICY_CHOSEN, POLICY_REJECTED, REFERENCE, REFERENCE, LENGTHS, beta=0.5, alpha=1.0)
    two = dpo_nll_loss(POLICY_CHOSEN, POLICY_REJECTED, REFERENCE, REFERENCE, LENGTHS, beta=0.5, alpha=2.0)
    assert_close(two.loss - one.loss, one.nll)


def test_nll_is_normalised_by_winner_length():
    # The same total log-likelihood over twice the tokens gives half the NLL.
    terms = sft_loss(torch.tensor([-6.0, -6.0]), torch.tensor([3.0, 6.0]))
    assert_close(terms.nll, torch.tensor([2.0, 1.0]))
    assert_close(terms.loss, terms.nll)


def test_gradients_push_chosen_up_and_rejected_down():
    chosen = POLICY_CHOSEN.clone().requires_grad_()
    rejected = POLICY_REJECTED.clone().requires_grad_()
    for alpha in (0.0, 1.0):
        chosen.grad = rejected.grad = None
        dpo_nll_loss(chosen, rejected, REFERENCE, REFERENCE, LENGTHS, beta=0.1, alpha=alpha).loss.sum().backward()
        # Gradient descent moves against the gradient: chosen log-probs rise, rejected fall.
        assert (chosen.grad < 0).all() and (rejected.grad > 0).all()


def test_the_nll_term_adds_pull_on_the_chosen_sequence():
    chosen = POLICY_CHOSEN.clone().requires_grad_()
    dpo_nll_loss(chosen, POLICY_REJECTED, REFERENCE, REFERENCE, LENGTHS, beta=0.1, alpha=0.0).loss.sum().backward()
    without = chosen.grad.clone()
    chosen.grad = None
    dpo_nll_loss(chosen, POLICY_REJECTED, REFERENCE, REFERENCE, LENGTHS, beta=0.1, alpha=1.0).loss.sum().backward()
    assert_close(chosen.grad - without, -1.0 / LENGTHS)


def test_registry_dispatch_and_unknown_name():
    terms = compute_loss(
        "sft", beta=0.1, alpha=1.0, policy_chosen_logps=torch.tensor([-4.0]), chosen_lengths=torch.tensor([2.0])
    )
    assert_close(terms.loss, torch.tensor([2.0]))
    with pytest.raises(KeyError, match="unknown loss .ipo.; valid choices: dpo_nll, sft"):
        LOSSES.get("ipo")


def test_compute_loss_hands_dpo_nll_each_argument_in_its_place():
    """compute_loss calls the registered dpo_nll positionally: every tensor distinct, so a swap of any two
    (policy and reference, chosen and rejected, lengths) changes a number below. Worked by hand:
    chosen reward = 0.5 * (-1 - -4) = 1.5, rejected reward = 0.5 * (-3 - -2) = -0.5,
    DPO = -log sigmoid(2) = log(1 + e^-2), NLL = 1 / 4; loss = DPO + 2 * NLL."""
    terms = compute_loss(
        "dpo_nll",
        beta=0.5,
        alpha=2.0,
        policy_chosen_logps=torch.tensor([-1.0]),
        chosen_lengths=torch.tensor([4.0]),
        policy_rejected_logps=torch.tensor([-3.0]),
        reference_chosen_logps=torch.tensor([-4.0]),
        reference_rejected_logps=torch.tensor([-2.0]),
    )
    assert_close(terms.chosen_reward, torch.tensor([1.5]))
    assert_close(terms.rejected_reward, torch.tensor([-0.5]))
    assert_close(terms.nll, torch.tensor([0.25]))
    assert_close(terms.loss, torch.tensor([math.log(1 + math.exp(-2)) + 0.5]))


def test_token_normalisation_divides_by_the_steps_mean_winner_length():
    """A step of 3 pairs with |w| = 2, 4, 6 in micro-batches of 2 and 1: token normalisation divides every pair's
    NLL by 12 / 3 = 4, so the mean over the step's pairs is (6 + 6 + 6) / 12 whatever the split."""
    step = [2, 4, 6]
    assert_close(nll_lengths(torch.tensor([2.0, 4.0]), step, "sequence"), torch.tensor([2.0, 4.0]))
    assert_close(nll_lengths(torch.tensor([2.0, 4.0]), step, "token"), torch.tensor([4.0, 4.0]))
    assert_close(nll_lengths(torch.tensor([6.0]), step, "token"), torch.tensor([4.0]))
    nll = torch.cat(
        [
            sft_loss(torch.tensor([-6.0, -6.0]), nll_lengths(torch.tensor([2.0, 4.0]), step, "token")).nll,
            sft_loss(torch.tensor([-6.0]), nll_lengths(torch.tensor([6.0]), step, "token")).nll,
        ]
    )
    assert_close(nll.mean(), torch.tensor(18.0 / 12))
    with pytest.raises(ValueError, match="loss.nll_normalization must be one of sequence, token"):
        nll_lengths(LENGTHS, step, "tokens")


def test_an_unknown_nll_normalization_fails_at_config_time(make_config):
    from irpo.config import validate

    with pytest.raises(ValueError, match=r"loss.nll_normalization must be one of sequence, token \(.*\), not .mean."):
        validate(make_config("loss.nll_normalization=mean"))
