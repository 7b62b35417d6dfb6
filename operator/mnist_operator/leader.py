"""Leader election on a ``coordination.k8s.io/v1`` Lease, as kube-controller-manager and controller-runtime
do it: any number of operator replicas may run (a Deployment with ``replicas: 2``); one acts, the others
stand by and take over when the leader's Lease goes unrenewed for its duration.

Why a Lease and not kopf's peering: peering freezes only kopf's own handlers (our watches of Jobs and
pods, the Pushgateway pollers and the sweep would go on in every replica), it needs a CRD of its own, and
peers of equal priority -- every replica of one Deployment -- keep running side by side with a warning.
A Lease keeps a standby idle, needs no CRD, and is where Kubernetes users look
(``kubectl get lease -n <namespace>``).

The rules, in the order a reader of the log meets them:

- A candidate takes the Lease when it has no holder, or when its holder and renewTime have stayed the
  same for ``leaseDurationSeconds`` *as this candidate saw them*, on its own monotonic clock (client-go's
  rule, so no clock skew between nodes matters). Time during which it could not read the Lease does not
  count: after an API-server outage the leader gets a whole lease duration to renew before anyone may
  take over.
- The leader renews every third of the duration. It steps down only when it sees another holder. Failing
  to reach the API server is no reason to: it then cannot act on the cluster either, and a lone operator
  rides out an API-server restart without being restarted itself.
- Stepping down is exiting, as client-go's ``OnStoppedLeading`` does: the kubelet restarts the container,
  which then stands by. A graceful stop (SIGTERM) hands the Lease back, so a standby takes over at once.
"""

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .kube import ApiError, Kube

log = logging.getLogger(__name__)


def new_identity(hostname: str) -> str:
    """The pod's name (what ``kubectl get pods`` shows) and a suffix unique to this process: a container
    restarted in the same pod must not mistake its predecessor's Lease for its own."""
    return f"{hostname}_{uuid.uuid4().hex[:8]}"


def micro_time(moment: datetime) -> str:
    """A Lease's MicroTime, e.g. ``2026-12-04T05:06:07.123456Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def holder_of(lease: dict[str, Any] | None) -> str | None:
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or None


@dataclass(frozen=True)
class Sighting:
    """What a candidate last saw of the Lease, and when (its own monotonic clock)."""

    holder: str | None
    renew_time: str | None
    seen_at: float


def sighting(lease: dict[str, Any] | None, previous: Sighting | None, now: float) -> Sighting:
    """The sighting after reading ``lease`` at ``now``: it keeps the earlier time while nothing changed."""
    spec = (lease or {}).get("spec") or {}
    holder, renew_time = spec.get("holderIdentity") or None, spec.get("renewTime")
    if previous is not None and (previous.holder, previous.renew_time) == (holder, renew_time):
        return previous
    return Sighting(holder, renew_time, now)


def may_take(seen: Sighting, identity: str, duration_seconds: float, now: float) -> bool:
    """Whether ``identity`` may write itself into the Lease: it holds it already, nobody does, or the
    holder has not renewed it for a whole duration that this candidate watched."""
    return seen.holder in (None, identity) or now - seen.seen_at >= duration_seconds


def claimed(
    lease: dict[str, Any] | None, identity: str, duration_seconds: float, now: datetime
) -> dict[str, Any]:
    """The Lease's spec with ``identity`` as holder: renewed if it held it, taken over otherwise."""
    spec = dict((lease or {}).get("spec") or {})
    stamp = micro_time(now)
    if spec.get("holderIdentity") != identity:
        spec["acquireTime"] = stamp
        if spec.get("holderIdentity"):
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec.setdefault("leaseTransitions", 0)
    spec.update(holderIdentity=identity, leaseDurationSeconds=int(duration_seconds), renewTime=stamp)
    return spec


class LeaderElection:
    """:meth:`acquire` returns once this process leads; :meth:`keep` returns when it no longer does;
    :meth:`release` hands the Lease back."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        *,
        duration_seconds: float = 15.0,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration_seconds = duration_seconds
        self.renew_seconds = duration_seconds / 3
        self.retry_seconds = min(2.0, self.renew_seconds)
        self._seen: Sighting | None = None
        self._logged_holder: str | None = None

    @property
    def lease(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def acquire(self) -> None:
        log.info("leader election: %s wants the Lease %s", self.identity, self.lease)
        while not await self._attempt("standby"):
            await asyncio.sleep(self.retry_seconds)
        log.info("leader election: %s now leads (Lease %s)", self.identity, self.lease)

    async def keep(self) -> str | None:
        """Renew until another holder shows up; returns that holder."""
        while True:
            await asyncio.sleep(self.renew_seconds)
            if not await self._attempt("leader"):
                holder = self._seen.holder if self._seen else None
                log.error(
                    "leader election: %s lost the Lease %s to %s; exiting so that one operator acts at a time",
                    self.identity,
                    self.lease,
                    holder,
                )
                return holder

    async def release(self) -> None:
        """Hand the Lease back (best effort), as a stopping leader does, so a standby need not wait."""
        try:
            lease = await self.kube.read_lease(self.namespace, self.name)
            if holder_of(lease) != self.identity or lease is None:
                return
            spec = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
            await self.kube.replace_lease(self.namespace, self.name, {**lease, "spec": spec})
            log.info("leader election: %s released the Lease %s", self.identity, self.lease)
        except Exception as error:  # stopping anyway; the Lease then expires on its own
            log.warning("leader election: could not release the Lease %s (%s)", self.lease, error)

    async def _attempt(self, role: str, conflicts: int = 0) -> bool:
        """One read and, if allowed, one write: whether this process holds the Lease afterwards. An
        unreachable API server leaves the role as it was: a standby waits, a leader keeps acting. A write
        that lost a race (409) reads again at once."""
        try:
            lease = await self.kube.read_lease(self.namespace, self.name)
        except Exception as error:
            log.warning("leader election: cannot read the Lease %s (%s); retrying", self.lease, error)
            # A standby must not count this silence against the leader, which may be cut off as well.
            self._seen = None
            return role == "leader"
        now = time.monotonic()
        self._seen = sighting(lease, self._seen, now)
        if not may_take(self._seen, self.identity, self.duration_seconds, now):
            if self._seen.holder != self._logged_holder:
                log.info("leader election: standing by; %s holds the Lease %s", self._seen.holder, self.lease)
                self._logged_holder = self._seen.holder
            return False
        spec = claimed(lease, self.identity, self.duration_seconds, datetime.now(UTC))
        body = {**(lease or {}), "spec": spec}
        if lease is None:
            body.update(apiVersion="coordination.k8s.io/v1", kind="Lease")
            body["metadata"] = {"name": self.name, "namespace": self.namespace}
        try:
            if lease is None:
                await self.kube.create_lease(self.namespace, body)
            else:
                await self.kube.replace_lease(self.namespace, self.name, body)
        except ApiError as error:
            if error.status == 409 and conflicts < 3:  # written by someone else since our read
                return await self._attempt(role, conflicts + 1)
            log.warning("leader election: cannot write the Lease %s (%s)", self.lease, error)
            return role == "leader"
        except Exception as error:
            log.warning("leader election: cannot write the Lease %s (%s); retrying", self.lease, error)
            return role == "leader"
        self._seen = Sighting(self.identity, spec["renewTime"], now)
        return True
