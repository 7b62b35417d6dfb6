"""A local run's identity is its spec: the same spec resumes its own files, another spec never does."""

import io
import json
import os
import re
from pathlib import Path

from mnist_api import ExitCode, MnistTraining, describe_exit_code, load_manifest_file
from mnist_api.distribution import COMPLETION_INDEX_ANNOTATION
from mnist_operator.cli import apply_overrides
from mnist_operator.local import (
    TrainerProcess,
    as_local_run,
    local_children,
    local_environment,
    local_run_uid,
    result_lines,
    shared_cpu_threads,
)

SAMPLE = Path(__file__).resolve().parents[3] / "manifests" / "samples" / "mnist-training.yaml"


def sample(*assignments: str) -> MnistTraining:
    (training,) = load_manifest_file(str(SAMPLE))
    return apply_overrides(training, list(assignments))


def start(training: MnistTraining, runs: Path) -> tuple[str, str]:
    """Start a local run as the CLI does and leave a file in it; returns its uid and what was printed."""
    out = io.StringIO()
    local = as_local_run(training, runs, out)
    uid = local.metadata.uid
    assert uid is not None
    (runs / "default" / "mnist-convnet" / "model.keras").write_text(uid)
    return uid, out.getvalue()


def test_the_uid_follows_the_defaulted_spec_not_how_it_was_written() -> None:
    assert local_run_uid(sample()) == local_run_uid(sample("spec.model=convnet"))  # the default, spelled out
    assert local_run_uid(sample()) != local_run_uid(sample("spec.model=mlp"))
    assert local_run_uid(sample()).startswith("local-")


def test_the_same_spec_keeps_its_run_dir_and_says_nothing(tmp_path: Path) -> None:
    first, _ = start(sample(), tmp_path)
    again, printed = start(sample(), tmp_path)
    assert again == first and printed == ""
    assert (tmp_path / "default" / "mnist-convnet" / "model.keras").read_text() == first


def test_a_changed_spec_moves_the_last_run_aside_and_going_back_resumes_it(tmp_path: Path) -> None:
    runs = tmp_path / "default"
    convnet, _ = start(sample(), tmp_path)
    mlp, printed = start(sample("spec.model=mlp"), tmp_path)
    assert printed.count("\n") == 1 and "the spec differs from the last run's; starting a new run" in printed
    assert (runs / f"mnist-convnet.{convnet}" / "model.keras").read_text() == convnet
    assert (runs / "mnist-convnet" / "model.keras").read_text() == mlp

    back, printed = start(sample(), tmp_path)
    assert back == convnet and "resuming this spec's earlier run" in printed
    # start() overwrote model.keras with the same uid, so check the mlp run is the one kept aside.
    assert (runs / f"mnist-convnet.{mlp}" / "model.keras").read_text() == mlp
    assert not (runs / f"mnist-convnet.{convnet}").exists()


def test_a_run_of_an_older_version_without_a_record_is_kept_not_overwritten(tmp_path: Path) -> None:
    runs = tmp_path / "default"
    for old in ("mnist-convnet", "mnist-convnet.local"):
        (runs / old).mkdir(parents=True)
        (runs / old / "model.keras").write_text(old)
    start(sample(), tmp_path)
    assert (runs / "mnist-convnet.local" / "model.keras").read_text() == "mnist-convnet.local"
    assert (runs / "mnist-convnet.local.2" / "model.keras").read_text() == "mnist-convnet"


def test_the_result_names_the_model_card_only_when_the_trainer_wrote_one(tmp_path: Path) -> None:
    training = as_local_run(sample(), tmp_path / "runs", io.StringIO())
    env = {"MNIST_OUTPUT_DIR": str(tmp_path / "runs")}
    run_dir = tmp_path / "runs" / "default" / "mnist-convnet"
    log = run_dir / "trainer.log"

    def result(code: int) -> list[str]:
        return result_lines(training, env, code, interrupted=False, errors=[], log_path=log)

    assert result(0) == [f"mnist-operator: model and metrics.json in {run_dir}"]
    (run_dir / "model_card").mkdir()
    (run_dir / "model_card" / "mnist_model_card.md").write_text("# card\n")
    assert result(0) == [
        f"mnist-operator: model and metrics.json in {run_dir}",
        f"mnist-operator: model card: {run_dir}/model_card/mnist_model_card.md",
    ]
    # A failed run's result is why it failed, whatever files it left.
    reason = describe_exit_code(ExitCode.RELEASE_CRITERIA_NOT_MET)
    assert result(ExitCode.RELEASE_CRITERIA_NOT_MET) == [
        f"mnist-operator: ReleaseCriteriaNotMet: {reason.description} (trainer log: {log})"
    ]


def test_an_evaluation_and_a_prediction_end_on_their_own_figures(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    env = {"MNIST_OUTPUT_DIR": str(runs), "MNIST_BASE_MODEL_PATH": "/m/model.keras"}
    evaluate = sample("spec.task=evaluate", "spec.baseModel={training: digits}")
    run_dir = runs / "default" / "mnist-convnet"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text('{"test": {"accuracy": 0.98765, "loss": 0.04321}}')
    assert result_lines(evaluate, env, 0, interrupted=False, errors=[], log_path=run_dir / "log") == [
        f"mnist-operator: test accuracy 0.9877, loss 0.0432 of /m/model.keras; metrics.json in {run_dir}"
    ]
    predict = sample("spec.task=predict", "spec.baseModel={training: digits}", "spec.predict={claimName: in}")
    (run_dir / "metrics.json").write_text('{"predictions": {"images": 10}}')
    predictions = run_dir / "predictions"
    assert result_lines(predict, env, 0, interrupted=False, errors=[], log_path=run_dir / "log") == [
        f"mnist-operator: 10 images predicted: {predictions}/output_1.h5 and {predictions}/predictions.csv"
    ]


def test_local_claims_are_folders_and_a_named_training_is_in_runs(tmp_path: Path) -> None:
    from mnist_api import TrainerConfig
    from mnist_operator.cli import claim_folders
    from mnist_operator.local import local_environment

    runs = tmp_path / "runs"
    chain = load_manifest_file(str(SAMPLE.with_name("mnist-evaluate.yaml")))
    evaluate = as_local_run(chain[1], runs, io.StringIO())
    config = TrainerConfig.from_env(local_environment(evaluate, runs, None))
    assert config.base_model_path == f"{runs.resolve()}/default/mnist-convnet/model.keras"

    predict = sample(
        "spec.task=predict",
        "spec.baseModel={claimName: models, path: a/model.keras}",
        "spec.predict={claimName: digits, path: batch-1}",
        "spec.dataset={claimName: images}",
    )
    folders = claim_folders([f"models={tmp_path / 'm'}"])
    config = TrainerConfig.from_env(local_environment(predict, runs, None, folders))
    assert config.base_model_path == f"{(tmp_path / 'm').resolve()}/a/model.keras"
    assert config.predict_dir == f"{runs.resolve()}/claims/digits/batch-1"
    assert config.dataset_dir == f"{runs.resolve()}/claims/images"


def test_two_local_workers_get_loopback_addresses_in_the_pods_environment(tmp_path: Path) -> None:
    env = local_environment(sample("spec.workers=2"), tmp_path, None)
    hosts = json.loads(env["MNIST_WORKER_HOSTS"])
    assert env["MNIST_WORKERS"] == "2" and len(set(hosts)) == 2
    assert all(re.fullmatch(r"localhost:\d+", host) for host in hosts)
    assert json.loads(local_environment(sample(), tmp_path, None)["MNIST_WORKER_HOSTS"]) == []


def test_a_worker_set_is_reported_as_an_indexed_jobs_pods() -> None:
    running = [TrainerProcess(f"pair-local-{i}-1", "t0", index=i) for i in (0, 1)]
    job, pods = local_children(running, workers=2)
    assert job is not None and job["status"]["active"] == 2 and job["status"]["ready"] == 2
    assert [p["metadata"]["annotations"][COMPLETION_INDEX_ANNOTATION] for p in pods] == ["0", "1"]

    # Worker 1 killed, worker 0 stopped: both failed pods stay; the restarted set runs.
    ended = [
        TrainerProcess("pair-local-0-1", "t0", ExitCode.INTERRUPTED, "t5", 0),
        TrainerProcess("pair-local-1-1", "t0", 137, "t4", 1),
    ]
    restarted = [TrainerProcess(f"pair-local-{i}-2", "t6", index=i) for i in (0, 1)]
    job, pods = local_children(ended + restarted, workers=2)
    assert job is not None and (job["status"]["failed"], job["status"]["active"]) == (2, 2)
    assert "conditions" not in job["status"], "a set that restarts has not failed"
    assert [p["status"]["phase"] for p in pods] == ["Failed", "Failed", "Running", "Running"]

    done = [TrainerProcess(f"pair-local-{i}-2", "t6", 0, "t9", i) for i in (0, 1)]
    job, _ = local_children(ended + done, workers=2)
    assert job is not None and job["status"]["conditions"][0]["type"] == "Complete"
    job, _ = local_children(ended, workers=2, gave_up=True)
    assert job is not None and job["status"]["conditions"][0]["reason"] == "BackoffLimitExceeded"


def test_a_single_workers_failure_fails_the_job_at_once_as_before() -> None:
    job, pods = local_children([TrainerProcess("one-local", "t0", 66, "t1")])
    assert job is not None and job["status"]["conditions"][0]["reason"] == "PodFailurePolicy"
    assert "annotations" not in pods[0]["metadata"] and "ready" not in job["status"]


def test_local_workers_share_the_cores_unless_the_user_sized_the_pools() -> None:
    shared = shared_cpu_threads({"PATH": "/bin"}, 2)
    share = str(max(1, (os.cpu_count() or 1) // 2))
    assert shared["TF_NUM_INTRAOP_THREADS"] == shared["TF_NUM_INTEROP_THREADS"] == share
    assert shared_cpu_threads({"TF_NUM_INTRAOP_THREADS": "7"}, 2)["TF_NUM_INTRAOP_THREADS"] == "7"
    assert "TF_NUM_INTRAOP_THREADS" not in shared_cpu_threads({}, 1)
