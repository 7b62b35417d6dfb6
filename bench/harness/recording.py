"""What the operator benchmark reads of a run, in the shapes ``measure`` judges (the real API server's audit
log fills them: cluster.py):

* ``created``: (plural, namespace, name) -> monotonic time the object first appeared;
* ``epochs``: (namespace, name, epoch) -> when a status write first carried ``status.epoch == epoch``;
* ``statuses``: (namespace, name) -> when the resource's status was first written;
* ``uids``: (namespace, name) -> the MnistTraining's uid (the grouping key of its metrics pushes);
* ``seen``: the OPERATOR's requests (never the harness's own), for counts per verb and resource;
* ``last_request``: when the operator last made a request, to tell when it has gone quiet.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Seen:
    """One request as the API server saw it: enough to count API calls per verb and resource.

    ``action`` is one of LIST, WATCH, FETCH, CREATE, UPDATE (a patch too), DELETE."""

    at: float
    method: str
    action: str
    plural: str
    subresource: str


class RecordQueries:
    """The queries ``measure`` makes of a recorder (cluster.ClusterRecorder)."""

    created: dict[tuple[str, str, str], float]
    epochs: dict[tuple[str, str, int], float]
    statuses: dict[tuple[str, str], float]
    uids: dict[tuple[str, str], str]
    seen: list[Seen]
    last_request: float

    def check(self) -> None:
        """Raise if recording has broken down."""

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
        """Stamp the first time a resource's status was written, and carried each epoch."""
        self.statuses.setdefault((namespace, name), at)
        epoch = status.get("epoch") if isinstance(status, dict) else None
        if isinstance(epoch, int):
            self.epochs.setdefault((namespace, name, epoch), at)
