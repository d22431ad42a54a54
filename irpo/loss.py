"""The training objectives, as pure functions of sequence log-probabilities.

Equation 1 of the paper (DPO + NLL), per (winner w, loser l) pair for prompt x::

    L = -log σ( β·[log πθ(w|x) - log πref(w|x)] - β·[log πθ(l|x) - log πref(l|x)] )
        - α · log πθ(w|x) / |w|

where log π(y|x) is summed over the response tokens only and |w| is the winner's response length
in tokens. α = 0 is standard DPO; the NLL term alone (no loser, no reference) is SFT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from irpo.registry import Registry


@dataclass
class LossTerms:
    """Per-example tensors of shape (B,); `loss` is what gets averaged and back-propagated."""

    loss: torch.Tensor
    dpo: torch.Tensor
    nll: torch.Tensor
    chosen_reward: torch.Tensor
    rejected_reward: torch.Tensor


def dpo_nll_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    beta: float,
    alpha: float,
) -> LossTerms:
    """DPO + α·NLL (Equation 1). All inputs have shape (B,); lengths count response tokens."""
    chosen_reward = beta * (policy_chosen_logps - reference_chosen_logps)
    rejected_reward = beta * (policy_rejected_logps - reference_rejected_logps)
    dpo = -F.logsigmoid(chosen_reward - rejected_reward)
    nll = -policy_chosen_logps / chosen_lengths
    return LossTerms(
        loss=dpo + alpha * nll,
        dpo=dpo,
        nll=nll,
        chosen_reward=chosen_reward.detach(),
        rejected_reward=rejected_reward.detach(),
    )


def sft_loss(policy_chosen_logps: torch.Tensor, chosen_lengths: torch.Tensor) -> LossTerms:
    """Length-normalised NLL of the chosen response: the NLL term of Equation 1 alone."""
    nll = -policy_chosen_logps / chosen_lengths
    zeros = torch.zeros_like(nll).detach()
    return LossTerms(loss=nll, dpo=zeros, nll=nll, chosen_reward=zeros, rejected_reward=zeros)


@dataclass(frozen=True)
class Objective:
    """A registered loss and what data it needs from the trainer."""

    name: str
    uses_rejected: bool
    compute: Callable[..., LossTerms]


LOSSES: Registry[Objective] = Registry("loss")
LOSSES.register("dpo_nll")(Objective("dpo_nll", uses_rejected=True, compute=dpo_nll_loss))
LOSSES.register("sft")(Objective("sft", uses_rejected=False, compute=sft_loss))


def compute_loss(
    name: str,
    *,
    beta: float,
    alpha: float,
    policy_chosen_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    policy_rejected_logps: torch.Tensor | None = None,
    reference_chosen_logps: torch.Tensor | None = None,
    reference_rejected_logps: torch.Tensor | None = None,
) -> LossTerms:
    objective = LOSSES.get(name)
    if not objective.uses_rejected:
        return objective.compute(policy_chosen_logps, chosen_lengths)
    return objective.compute(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        chosen_lengths,
        beta=beta,
        alpha=alpha,
    )
