"""An in-memory stand-in for the operator's one API client (mnist_operator.kube.Kube), for unit tests of
the parts that call it: it records every call and answers as the API server would. The real client is
exercised against a real API server in tests/k8s and tests/kmock."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from mnist_operator.kube import ApiError


@dataclass
class FakeKube:
    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    services: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)  # the kinds created, in order
    statuses: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    suspends: list[tuple[str, str, bool]] = field(default_factory=list)
    deleted: list[tuple[str, str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    uids: set[str] = field(default_factory=set)
    failures: list[ApiError] = field(default_factory=list)  # raised, in order, by the next status writes
    trainings: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # what read_training finds

    async def read_training(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.trainings.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def create_job(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key in self.jobs:
            return copy.deepcopy(self.jobs[key]), False
        self.jobs[key] = copy.deepcopy(body)
        self.created.append("Job")
        return copy.deepcopy(body), True

    async def create_service(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key in self.services:
            return copy.deepcopy(self.services[key]), False
        self.services[key] = copy.deepcopy(body)
        self.created.append("Service")
        return copy.deepcopy(body), True

    async def patch_job_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        self.suspends.append((namespace, name, suspend))

    async def patch_training_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.statuses.append((namespace, name, copy.deepcopy(status)))

    async def delete_training(self, namespace: str, name: str, uid: str) -> None:
        self.deleted.append((namespace, name, uid))

    async def training_uids(self, namespaces: tuple[str, ...]) -> set[str]:
        return set(self.uids)

    async def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        self.events.append(body)
