"""The training objectives, as pure functions of sequence log-probabilities.

Equation 1 of the paper (DPO + NLL), per (winner w, loser l) pair for prompt x::

    L = -log σ( β·[log πθ(w|x) - log πref(w|x)] - β·[log πθ(l|x) - log πref(l|x)] )
        - α · log πθ(w|x) / |w|

where log π(y|x) is summed over the response tokens only and |w| is the winner's response length
in tokens. α = 0 is standard DPO; the NLL term alone (no loser, no reference) is SFT.

`loss.nll_normalization=token` divides the NLL term by the mean winner length of the optimizer step instead
of each winner's own (`nll_lengths`): averaged over the step's pairs, it is the winners' summed NLL over all
their tokens, the convention of TRL's and Liger Kernel's NLL terms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


NLL_NORMALIZATIONS = ("sequence", "token")


def check_nll_normalization(normalization: str) -> None:
    if normalization not in NLL_NORMALIZATIONS:
        raise ValueError(
            f"loss.nll_normalization must be one of {', '.join(NLL_NORMALIZATIONS)} (sequence: each winner's NLL "
            f"over its own length, the paper's; token: over all winner tokens of the step), not {normalization!r}"
        )


def nll_lengths(lengths: torch.Tensor, step_lengths: list[int], normalization: str) -> torch.Tensor:
    """What each pair's NLL is divided by, for per-pair losses that the trainer averages over the step's pairs.

    lengths: the winner lengths |w| of some pairs of the step, (B,); step_lengths: those of every pair of the
    optimizer step (all micro-batches, all ranks). sequence: |w| itself, so the step's NLL is the mean of
    -log π(w|x)/|w|. token: the step's mean |w|, so it is Σ -log π(w|x) / Σ |w| over the step, whatever the
    micro-batch size or the number of ranks.
    """
    check_nll_normalization(normalization)
    if normalization == "sequence":
        return lengths
    return torch.full_like(lengths, sum(step_lengths) / len(step_lengths))


@dataclass(frozen=True)
class Objective:
    """A registered loss and what data it needs from the trainer."""

    name: str
    uses_rejected: bool
    compute: Callable[..., LossTerms]

    def check(self, cfg: Any) -> None:
        """loss.nll_normalization: sequence or token."""
        check_nll_normalization(cfg.loss.nll_normalization)


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
