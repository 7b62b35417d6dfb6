"""What the operator benchmark reads of a run, whichever API server served it (kmock or a real one).

Both tiers record the same things in the same shapes, so one ``measure`` judges both:

* ``created``: (plural, namespace, name) -> monotonic time the object first appeared;
* ``epochs``: (namespace, name, epoch) -> when a status write first carried ``status.epoch == epoch``;
* ``uids``: (namespace, name) -> the MnistTraining's uid (the grouping key of its metrics pushes);
* ``seen``: the OPERATOR's requests (never the harness's own), for counts per verb and resource;
* ``last_request``: when the operator last made a request, to tell when it has gone quiet.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Any

# Requests the harness itself makes carry this header, so that kmock leaves them out of the operator's
# counts (on the real tier the audit policy logs only the operator's user, which does the same).
HARNESS_HEADER = "X-Mnist-Bench-Harness"


@dataclass(frozen=True)
class Seen:
    """One request as the API server saw it: enough to count API calls per verb and resource.

    ``action`` uses kmock's names (LIST, WATCH, FETCH, CREATE, UPDATE, DELETE) on both tiers."""

    at: float
    method: str
    action: str
    plural: str
    subresource: str


class RecordQueries:
    """The queries ``measure`` makes; mixed into the kmock emulator and the real tier's recorder."""

    created: dict[tuple[str, str, str], float]
    epochs: dict[tuple[str, str, int], float]
    uids: dict[tuple[str, str], str]
    seen: list[Seen]
    last_request: float

    def check(self) -> None:
        """Raise if recording has broken down (kmock's in-process recording cannot)."""

    def count_created(self, plural: str, namespace: str) -> int:
        return sum(1 for p, ns, _ in self.created if p == plural and ns == namespace)

    def request_counts(self, since: float = 0.0) -> Counter[str]:
        """The operator's requests by ``ACTION plural[/subresource]`` made at or after ``since``."""
        return Counter(
            f"{s.action or s.method} {s.plural}{'/' + s.subresource if s.subresource else ''}"
            for s in self.seen
            if s.at >= since
        )

    def note_status(self, namespace: str, name: str, status: Any, at: float) -> None:
        """Stamp the first time a resource's status carried each epoch."""
        epoch = status.get("epoch") if isinstance(status, dict) else None
        if isinstance(epoch, int):
            self.epochs.setdefault((namespace, name, epoch), at)
