"""The status reducer, one transition at a time; conditions are read by type, never by position."""

from typing import Any

from mnist_api import load_manifests
from mnist_operator.pushgateway import parse_groups
from mnist_operator.reducer import MetricsView, reduce_status

NOW, LATER = "2026-11-23T10:00:00Z", "2026-11-23T10:05:00Z"


def training(spec: str = "{epochs: 4}") -> Any:
    text = (
        "apiVersion: training.mnist-operator.io/v1alpha1\nkind: MnistTraining\n"
        f"metadata: {{name: digits, namespace: ml, uid: u-1, generation: 3}}\nspec: {spec}\n"
    )
    return load_manifests(text)[0]


def job(*conditions: tuple[str, str, str], suspend: bool = False, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "digits-trainer"},
        "spec": {"suspend": suspend},
        "status": {
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": LATER}
                for t, r, m in conditions
            ],
            **status,
        },
    }


def pod(name: str, created: str, phase: str, **state: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {"phase": phase, "containerStatuses": [{"name": "trainer", "state": state}]},
    }


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [c for c in status["conditions"] if c["type"] == kind]
    return found


def test_no_job_yet_is_pending() -> None:
    status = reduce_status(training(), None, [], None, None, NOW)
    assert status["phase"] == "Pending"
    assert condition(status, "Created")["status"] == "False"
    assert status["progress"] == "0/4" and status["observedGeneration"] == 3


def test_running_pod_with_pushed_metrics_shows_live_figures() -> None:
    metrics = MetricsView(
        {
            "gangplank_train_epochs_count": 2,
            "gangplank_train_accuracy": 0.912345678,
            "gangplank_train_loss": 0.3,
            "gangplank_train_val_accuracy": 0.95,
            "gangplank_train_val_loss": 0.2,
            "gangplank_train_elapsed_time_seconds": 12.345,
            "gangplank_train_model_parameters_count": 104202,
        }
    )
    status = reduce_status(
        training(), job(active=1, startTime=NOW), [pod("p1", NOW, "Running", running={})], metrics, None, NOW
    )
    assert status["phase"] == "Running"
    assert (status["epoch"], status["progress"], status["accuracy"]) == (2, "2/4", 0.9123)
    assert (status["valAccuracy"], status["elapsedSeconds"], status["modelParameters"]) == (
        0.95,
        12.3,
        104202,
    )
    assert (status["podName"], status["attempts"], status["startTime"]) == ("p1", 1, NOW)
    assert condition(status, "Running")["status"] == "True"
    assert condition(status, "MetricsAvailable")["reason"] == "MetricsFound"


def test_a_custom_prefix_is_read() -> None:
    metrics = MetricsView({"acme_train_epochs_count": 3, "gangplank_train_epochs_count": 1})
    status = reduce_status(training("{metrics: {prefix: acme}}"), job(active=1), [], metrics, None, NOW)
    assert status["epoch"] == 3


def test_complete_job_succeeds_with_test_accuracy_and_model_path() -> None:
    metrics = MetricsView({"gangplank_test_accuracy": 0.9876, "gangplank_train_epochs_count": 4})
    status = reduce_status(
        training("{output: {claimName: models}}"),
        job(("Complete", "CompletionsReached", ""), succeeded=1, completionTime=LATER),
        [pod("p1", NOW, "Succeeded", terminated={"exitCode": 0})],
        metrics,
        None,
        LATER,
    )
    assert status["phase"] == "Succeeded" and status["testAccuracy"] == 0.9876
    assert status["modelPath"] == "pvc://models/ml/digits/model.keras"
    assert status["completionTime"] == LATER
    assert condition(status, "Succeeded")["status"] == "True"
    assert condition(status, "Running")["status"] == "False"
    assert condition(status, "ModelPersistent")["status"] == "True"


def test_data_error_fails_at_once_with_the_exit_code_meaning() -> None:
    failed_pod = pod(
        "p1", NOW, "Failed", terminated={"exitCode": 66, "reason": "Error", "message": "mirror down"}
    )
    status = reduce_status(
        training(),
        job(
            ("FailureTarget", "PodFailurePolicy", "x"),
            ("Failed", "PodFailurePolicy", "Container trainer ... 66"),
        ),
        [failed_pod],
        None,
        None,
        NOW,
    )
    assert status["phase"] == "Failed"
    failed = condition(status, "Failed")
    assert failed["reason"] == "DataUnavailable"
    assert "exit code 66" in failed["message"] and "(mirror down)" in failed["message"]
    assert status["completionTime"] == LATER


def test_backoff_limit_names_the_last_attempts_cause() -> None:
    pods = [
        pod("p1", "2026-11-23T09:00:00Z", "Failed", terminated={"exitCode": 1}),
        pod("p2", "2026-11-23T09:10:00Z", "Failed", terminated={"exitCode": 137, "reason": "OOMKilled"}),
    ]
    status = reduce_status(training(), job(("Failed", "BackoffLimitExceeded", "")), pods, None, None, NOW)
    failed = condition(status, "Failed")
    assert failed["reason"] == "OOMKilled" and "raise spec.resources.memory" in failed["message"]
    assert status["podName"] == "p2"


def test_deadline_and_eviction() -> None:
    status = reduce_status(
        training(), job(("Failed", "DeadlineExceeded", "Job was active longer")), [], None, None, NOW
    )
    assert condition(status, "Failed")["reason"] == "DeadlineExceeded"
    evicted = {
        "metadata": {"name": "p1", "creationTimestamp": NOW},
        "status": {"phase": "Failed", "reason": "Evicted", "message": "node pressure"},
    }
    status = reduce_status(
        training(), job(("Failed", "BackoffLimitExceeded", "")), [evicted], None, None, NOW
    )
    assert condition(status, "Failed")["reason"] == "Evicted"


def test_a_retry_in_progress_is_pending_and_counts_attempts() -> None:
    pods = [pod("p1", NOW, "Failed", terminated={"exitCode": 143})]
    status = reduce_status(training(), job(failed=1, active=1), pods, None, None, NOW)
    assert status["phase"] == "Pending" and status["attempts"] == 2
    assert "Interrupted" in status["message"]


def test_a_finished_pod_before_the_job_completes_is_not_a_step_back() -> None:
    pods = [pod("p1", NOW, "Succeeded", terminated={"exitCode": 0})]
    status = reduce_status(training(), job(active=0), pods, None, None, NOW)
    assert status["phase"] == "Running" and condition(status, "Running")["reason"] == "TrainerFinished"


def test_a_failed_pod_the_job_has_not_counted_yet_is_a_retry() -> None:
    pods = [pod("p1", NOW, "Failed", terminated={"exitCode": 1})]
    status = reduce_status(training(), job(active=0), pods, None, None, NOW)
    assert status["phase"] == "Pending" and "retrying after TrainerError" in status["message"]


def test_image_pull_problems_surface_while_pending() -> None:
    waiting = {"reason": "ImagePullBackOff", "message": "Back-off pulling image trainer:nope"}
    status = reduce_status(
        training(), job(active=1), [pod("p1", NOW, "Pending", waiting=waiting)], None, None, NOW
    )
    assert status["phase"] == "Pending" and status["message"] == "Back-off pulling image trainer:nope"


def test_suspended_job() -> None:
    status = reduce_status(training(), job(suspend=True), [], None, None, NOW)
    assert status["phase"] == "Suspended" and condition(status, "Suspended")["status"] == "True"


def test_unreachable_pushgateway_keeps_figures_and_says_so() -> None:
    previous = reduce_status(
        training(), job(active=1), [], MetricsView({"gangplank_train_epochs_count": 2}), None, NOW
    )
    status = reduce_status(
        training(), job(active=1), [], MetricsView({}, False, "connection refused"), previous, LATER
    )
    assert status["epoch"] == 2
    metrics = condition(status, "MetricsAvailable")
    assert (metrics["status"], metrics["reason"], metrics["lastTransitionTime"]) == (
        "False",
        "PushgatewayUnreachable",
        LATER,
    )


def test_transition_times_change_only_with_the_status() -> None:
    first = reduce_status(training(), job(active=1), [pod("p1", NOW, "Running", running={})], None, None, NOW)
    again = reduce_status(
        training(), job(active=1), [pod("p1", NOW, "Running", running={})], None, first, LATER
    )
    assert condition(again, "Running")["lastTransitionTime"] == NOW
    done = reduce_status(training(), job(("Complete", "x", "")), [], None, again, LATER)
    assert condition(done, "Running")["lastTransitionTime"] == LATER
    assert condition(done, "Created")["lastTransitionTime"] == NOW


def test_the_phase_is_never_read_from_the_last_condition() -> None:
    # A Job whose conditions end with a stale, false entry is still complete.
    stale = job(("Complete", "CompletionsReached", ""))
    stale["status"]["conditions"].append({"type": "Suspended", "status": "False", "reason": "Resumed"})
    assert reduce_status(training(), stale, [], None, None, NOW)["phase"] == "Succeeded"


def test_empty_dir_output_warns_the_model_is_not_kept() -> None:
    status = reduce_status(training(), None, [], None, None, NOW)
    model = condition(status, "ModelPersistent")
    assert model["status"] == "False" and "lost with the pod" in model["message"]


def test_pushgateway_groups_parse_into_runs() -> None:
    groups = [
        {
            "labels": {"job": "mnist", "namespace": "ml", "training": "digits", "uid": "u-1", "instance": ""},
            "gangplank_train_loss": {
                "type": "GAUGE",
                "metrics": [{"labels": {"job": "mnist"}, "value": "0.5"}],
            },
            "gangplank_test_class_accuracy": {
                "type": "GAUGE",
                "metrics": [{"labels": {"class": "3"}, "value": "0.9"}],
            },
            "gangplank_test_model_weights": {"type": "HISTOGRAM", "metrics": [{"buckets": {}}]},
            "push_time_seconds": {"type": "GAUGE", "metrics": [{"value": "1"}]},
        },
        {
            "labels": {"job": "mnist", "instance": ""},
            "gangplank_train_loss": {"type": "GAUGE", "metrics": []},
        },
    ]
    assert parse_groups(groups) == {("ml", "digits", "u-1"): {"gangplank_train_loss": 0.5}}
