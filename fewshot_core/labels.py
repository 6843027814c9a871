"""The names the ranking study's tables give the rankings that are not a metric's trees: the one-shot
baselines, random splits and the ground truth's own agreement (the ceiling). Torch-free.
"""

from __future__ import annotations

#: The name the one-shot baselines' rows carry, followed by their budget: "one-shot (8 leaves)".
ONESHOT = "one-shot"
RANDOM = "random"
CEILING = "ground truth seeds"


def oneshot_name(budget: int) -> str:
    """The name of the one-shot baseline trained as long as ``budget`` leaves."""
    return f"{ONESHOT} ({budget} lea{'f' if budget == 1 else 'ves'})"
