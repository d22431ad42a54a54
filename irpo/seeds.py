"""The seed of each stage's random draws, derived from the run's `seed` and the iteration t.

Every stage and iteration gets a stream of its own (for t < 1000 no two coincide), so resuming a run, or
rerunning one stage, draws exactly what the uninterrupted run drew. The offsets are part of what a run is:
changing one changes every result after it.
"""

from __future__ import annotations

SAMPLING_STRIDE = 1000  # iteration t's samples (step 1)
TRAINING_STRIDE = 1  # iteration t's data order, LoRA init and dropout (step 4)
EVAL_STRIDE = 7919  # a prime: M_t's majority-vote samples (step 5), M0's at t = 0


def sampling_seed(seed: int, t: int) -> int:
    return seed + SAMPLING_STRIDE * t


def training_seed(seed: int, t: int) -> int:
    return seed + TRAINING_STRIDE * t


def eval_seed(seed: int, t: int) -> int:
    return seed + EVAL_STRIDE * t


def selection_seed(seed: int) -> int:
    """Checkpoint selection's greedy decoding (the same for every iteration: greedy draws nothing random)."""
    return seed
