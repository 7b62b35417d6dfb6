"""The fast tier: the real operator (kopf) against kmock, an API emulator over real HTTP on loopback.

kmock keeps objects and streams watch events but has no controllers, no schema validation and no uids:
tests post resources with a uid and play the Job controller by writing Job status themselves.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
import pytest_asyncio
import yaml
from kopf.testing import KopfRunner

from tests.support.servers import Pushgateway, start_pushgateway

CRD = "training.mnist-operator.io/v1alpha1/mnisttrainings"


@pytest.fixture
def gateway() -> Iterator[Pushgateway]:
    started = start_pushgateway()
    yield started
    started.stop()


@pytest.fixture
def kube(kmock: kmock.KubernetesEmulator) -> kmock.KubernetesEmulator:
    verbs = {"get", "list", "watch", "create", "update", "patch", "delete"}
    info = kmock.ResourceInfo
    kmock.resources[CRD] = info(kind="MnistTraining", namespaced=True, verbs=verbs, subresources={"status"})
    kmock.resources["batch/v1/jobs"] = info(kind="Job", namespaced=True, verbs=verbs, subresources={"status"})
    kmock.resources["v1/pods"] = info(kind="Pod", namespaced=True, verbs=verbs, subresources={"status"})
    kmock.resources["v1/services"] = info(kind="Service", namespaced=True, verbs=verbs)
    kmock.resources["v1/events"] = info(kind="Event", namespaced=True, verbs=verbs)
    # kopf waits for these two in discovery before it starts any watcher, even cluster-wide.
    kmock.resources["v1/namespaces"] = info(kind="Namespace", namespaced=False, verbs=verbs)
    crds = "apiextensions.k8s.io/v1/customresourcedefinitions"
    kmock.resources[crds] = info(kind="CustomResourceDefinition", namespaced=False, verbs=verbs)
    return kmock


@pytest.fixture
def operator_env(
    kube: kmock.KubernetesEmulator, gateway: Pushgateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Point both kopf and the kubernetes client at kmock through a kubeconfig, as for a real cluster."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": str(kube.url).rstrip("/")}}],
                "users": [{"name": "kmock", "user": {"token": "test"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
                "current-context": "kmock",
            }
        )
    )
    env = {
        "KUBECONFIG": str(kubeconfig),
        "MNIST_OPERATOR_PUSHGATEWAY_URL": gateway.url,
        "MNIST_OPERATOR_POLL_INTERVAL_SECONDS": "0.3",
        "MNIST_OPERATOR_METRICS_PORT": "0",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@contextlib.asynccontextmanager
async def running_operator() -> AsyncIterator[KopfRunner]:
    """The operator in a background thread. Entering and leaving happen in worker threads too: kmock
    serves from this test's event loop, which must keep running while the operator starts and stops."""
    args = ["run", "-m", "mnist_operator.handlers", "--standalone", "--all-namespaces", "--verbose"]
    runner = KopfRunner(args, timeout=60)
    await asyncio.to_thread(runner.__enter__)
    try:
        yield runner
    except BaseException as error:
        await asyncio.to_thread(runner.__exit__, type(error), error, error.__traceback__)
        print(runner.output[-20000:])  # the operator's own log, for whoever reads the failure
        raise
    await asyncio.to_thread(runner.__exit__, None, None, None)
    assert runner.exception is None, runner.output
    assert runner.exit_code == 0, runner.output


async def eventually(check: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy (assertions inside count as 'not yet')."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (AssertionError, KeyError, IndexError, TypeError, ValueError) as error:
            last = error
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}: {last!r}")


class Api:
    """Plain HTTP calls to kmock, as kubectl would make them."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        async with self.session.request(
            method, path, json=body, headers={"Content-Type": content_type}
        ) as reply:
            assert reply.status < 400, await reply.text()
            return await reply.json()


@pytest_asyncio.fixture
async def api(kube: kmock.KubernetesEmulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(base_url=str(kube.url)) as session:
        yield Api(session)
