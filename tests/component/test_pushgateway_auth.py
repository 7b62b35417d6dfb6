"""A Pushgateway that requires basic auth (``--web.config.file``), the real one, with a real trainer run:
the trainer pushes with the credentials of the training's ``authSecretRef``, the operator's poll reads
and its delete removes the run's group with the operator's own credentials, and without them both fail
visibly (the status message, the log, a metric) rather than passing for success."""

import asyncio
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest

from mnist_api.env import PUSHGATEWAY_PASSWORD_ENV, PUSHGATEWAY_USERNAME_ENV
from mnist_operator import opmetrics
from mnist_operator.config import BasicAuth
from mnist_operator.pushgateway import Poller, RunKey, delete_group
from tests.conftest import contract_env, data_mirror_for, run_trainer
from tests.support.servers import Pushgateway, start_pushgateway, write_basic_auth_web_config

USERNAME, PASSWORD = "metrics", "correct horse battery staple"
RUN: RunKey = ("default", "test", "uid-1")  # contract_env's run
JOB = "mnist"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushgateway]:
    web_config = write_basic_auth_web_config(
        tmp_path_factory.mktemp("pushgateway") / "web.yml", USERNAME, PASSWORD
    )
    started = start_pushgateway(web_config=web_config, auth=(USERNAME, PASSWORD))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def pushed(
    tmp_path_factory: pytest.TempPathFactory,
    gateway: Pushgateway,
    synthetic_arrays: dict[str, npt.NDArray[np.uint8]],
) -> Pushgateway:
    """One mlp epoch pushed with the credentials a pod gets from ``spec.metrics.authSecretRef``."""
    tmp_path = tmp_path_factory.mktemp("auth-run")
    with data_mirror_for(tmp_path, synthetic_arrays) as data:
        env = contract_env(
            tmp_path,
            data,
            MNIST_MODEL="mlp",
            MNIST_EPOCHS="1",
            MNIST_PUSHGATEWAY_URL=gateway.url,
            MNIST_IGNORE_EXCEPTIONS="false",  # a refused push fails the run instead of a warning
            **{PUSHGATEWAY_USERNAME_ENV: USERNAME, PUSHGATEWAY_PASSWORD_ENV: PASSWORD},
        )
        run = run_trainer(env)
    assert run.returncode == 0, run.stdout + run.stderr
    return gateway


def has_group(gateway: Pushgateway) -> bool:
    return any(
        (g["labels"].get("namespace"), g["labels"].get("training"), g["labels"].get("uid")) == RUN
        for g in gateway.groups()
    )


def deletes(outcome: str) -> float:
    return (
        opmetrics.REGISTRY.get_sample_value("mnist_operator_pushgateway_deletes_total", {"outcome": outcome})
        or 0.0
    )


async def poll(url: str, auth: BasicAuth | None) -> Poller:
    async def ignore(url: str, runs: set[RunKey] | None) -> None:
        return None

    poller = Poller(url, 1.0, ignore, auth)
    async with aiohttp.ClientSession() as session:
        await poller.poll_once(session)
    return poller


def test_the_pushgateway_refuses_anyone_without_credentials(pushed: Pushgateway) -> None:
    assert has_group(pushed), "the trainer's authenticated push did not arrive"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(pushed.url + "/api/v1/metrics", timeout=10)
    assert refused.value.code == 401


def test_the_operator_reads_the_figures_with_its_credentials(pushed: Pushgateway) -> None:
    poller = asyncio.run(poll(pushed.url, BasicAuth(USERNAME, PASSWORD)))
    assert poller.reachable, poller.error
    assert poller.view(RUN).values["gangplank_train_epochs_count"] == 1
    assert poller.jobs[RUN] == JOB


def test_without_credentials_the_status_says_why_there_are_no_figures(pushed: Pushgateway) -> None:
    poller = asyncio.run(poll(pushed.url, None))
    view = poller.view(RUN)
    assert not view.reachable and not view.values
    assert view.error is not None
    assert "answered HTTP 401 Unauthorized" in view.error
    assert "MNIST_OPERATOR_PUSHGATEWAY_USERNAME" in view.error


def test_a_refused_delete_is_a_counted_logged_failure_and_the_right_one_removes_the_group(
    pushed: Pushgateway, caplog: pytest.LogCaptureFixture
) -> None:
    failed_before, ok_before = deletes("error"), deletes("ok")
    wrong = BasicAuth(USERNAME, "not the password")
    with caplog.at_level(logging.WARNING, logger="mnist_operator.pushgateway"):
        assert not asyncio.run(delete_group(pushed.url, JOB, *RUN, auth=wrong))
        assert not asyncio.run(delete_group(pushed.url, JOB, *RUN))
        # A wrong URL (a path prefix the Pushgateway does not serve) answers 404: no success either.
        right = BasicAuth(USERNAME, PASSWORD)
        assert not asyncio.run(delete_group(pushed.url + "/no-such-prefix", JOB, *RUN, auth=right))
    assert deletes("error") == failed_before + 3
    assert "could not delete the metrics of default/test (uid uid-1)" in caplog.text
    assert "answered HTTP 401" in caplog.text and "answered HTTP 404" in caplog.text
    assert PASSWORD not in caplog.text and "not the password" not in caplog.text
    assert has_group(pushed), "a refused delete removed the group"

    assert asyncio.run(delete_group(pushed.url, JOB, *RUN, auth=BasicAuth(USERNAME, PASSWORD)))
    assert deletes("ok") == ok_before + 1
    assert not has_group(pushed)


def test_the_credentials_never_appear_in_a_repr() -> None:
    assert PASSWORD not in repr(BasicAuth(USERNAME, PASSWORD))
