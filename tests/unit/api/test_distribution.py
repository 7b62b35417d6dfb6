"""The multi-worker contract: worker addresses, indexes and TF_CONFIG, as both sides build them."""

import json
from pathlib import Path

import pytest

from mnist_api.distribution import (
    cluster_worker_hosts,
    is_chief,
    local_worker_hosts,
    tf_config,
    tf_config_json,
    worker_index,
)
from mnist_api.env import EnvContractError, TrainerConfig
from tests.conftest import contract_env


def test_cluster_hosts_are_the_indexed_pods_under_the_headless_service_with_the_namespace() -> None:
    assert cluster_worker_hosts("pair-trainer", 3, "team-a") == [
        "pair-trainer-0.pair-trainer.team-a.svc:2222",
        "pair-trainer-1.pair-trainer.team-a.svc:2222",
        "pair-trainer-2.pair-trainer.team-a.svc:2222",
    ]
    assert local_worker_hosts([4001, 4002]) == ["localhost:4001", "localhost:4002"]


def test_tf_config_names_every_worker_and_this_ones_index() -> None:
    hosts = ["a:1", "b:2"]
    assert tf_config(hosts, 1) == {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": 1}}
    assert json.loads(tf_config_json(hosts, 0))["task"] == {"type": "worker", "index": 0}
    with pytest.raises(ValueError, match="outside the 2 workers"):
        tf_config(hosts, 2)
    assert is_chief(0) and not is_chief(1)


def test_the_worker_index_comes_from_the_job_completion_index() -> None:
    assert worker_index({}, 1) == 0  # a single worker needs none
    assert worker_index({"JOB_COMPLETION_INDEX": "1"}, 2) == 1
    for bad in ({}, {"JOB_COMPLETION_INDEX": "2"}, {"JOB_COMPLETION_INDEX": "x"}):
        with pytest.raises(ValueError, match=r"needs its index \(0 to 1\); the Job must be an Indexed Job"):
            worker_index(bad, 2)


def test_the_environment_round_trips_the_workers_and_refuses_a_missing_address(tmp_path: Path) -> None:
    hosts = cluster_worker_hosts("pair-trainer", 2, "team-a")
    env = contract_env(tmp_path, None, MNIST_WORKERS="2", MNIST_WORKER_HOSTS=json.dumps(hosts))
    config = TrainerConfig.from_env(env)
    assert (config.workers, config.worker_hosts) == (2, hosts)
    assert TrainerConfig.from_env(config.to_env()) == config
    with pytest.raises(EnvContractError, match="2 workers need 2 worker_hosts, not 1"):
        TrainerConfig.from_env(env | {"MNIST_WORKER_HOSTS": json.dumps(hosts[:1])})
