"""InitialSamplingPercentage, drawn per invocation.

One C call per captured endpoint's invocation (`random.random`, the Mersenne Twister of the
`random` module: statistically sound for sampling, not for secrets, and far cheaper than
`secrets`). 100 % draws a value below 1.0 every time and 0 % never: no branch is needed.
"""

from __future__ import annotations

import random


class Sampler:
    """True for about `percentage` of the calls to `sampled`."""

    __slots__ = ("_random", "_threshold", "percentage")

    def __init__(self, percentage: int, rng: random.Random | None = None) -> None:
        if not 0 <= percentage <= 100:
            raise ValueError(f"sampling percentage must be 0-100, not {percentage}")
        self.percentage = percentage
        self._threshold = percentage / 100
        self._random = (rng or random).random

    def sampled(self) -> bool:
        return self._random() < self._threshold
