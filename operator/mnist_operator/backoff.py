"""The operator's one retry schedule helper: each retrying loop names its delays once, here is how they
are walked (in order, then the last one for good, back to the first after a success)."""

from dataclasses import dataclass


@dataclass
class Backoff:
    steps: tuple[float, ...]
    failures: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt, counting one more failure."""
        delay = self.steps[min(self.failures, len(self.steps) - 1)]
        self.failures += 1
        return delay

    def reset(self) -> None:
        """An attempt succeeded: the next failure waits the first step again."""
        self.failures = 0
