"""The status reducer, one transition at a time; conditions are read by type, never by position."""

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mnist_api import Condition, MnistTrainingStatus, Phase, load_manifests
from mnist_operator.pushgateway import parse_groups
from mnist_operator.reducer import MetricsView, reduce_status, stored_status
from mnist_operator.state import pod_summary

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


def test_an_evaluation_has_no_epoch_column_and_no_exported_model() -> None:
    spec = "{task: evaluate, baseModel: {training: digits}, output: {claimName: models}}"
    metrics = MetricsView({"gangplank_test_accuracy": 0.9876, "gangplank_test_loss": 0.04})
    running = reduce_status(training(spec), job(active=1), [pod("p1", NOW, "Running")], metrics, None, NOW)
    assert "progress" not in running and "epochs" not in running and "epoch" not in running
    assert running["message"] == "pod p1 is evaluating"
    done = reduce_status(
        training(spec),
        job(("Complete", "CompletionsReached", ""), succeeded=1, completionTime=LATER),
        [pod("p1", NOW, "Succeeded", terminated={"exitCode": 0})],
        metrics,
        running,
        LATER,
    )
    assert (done["testAccuracy"], done["testLoss"]) == (0.9876, 0.04)
    assert "modelPath" not in done and done["message"] == "the evaluation of the base model succeeded"


def test_a_prediction_counts_its_images_and_says_where_they_went() -> None:
    spec = "{task: predict, baseModel: {training: digits}, predict: {url: 'http://h/d.tgz'}, output: {claimName: m}}"
    status = reduce_status(
        training(spec),
        job(("Complete", "CompletionsReached", ""), succeeded=1, completionTime=LATER),
        [pod("p1", NOW, "Succeeded", terminated={"exitCode": 0})],
        MetricsView({"gangplank_predict_images": 10.0}),
        None,
        LATER,
    )
    assert status["predictedImages"] == 10 and status["predictionsPath"] == "pvc://m/ml/digits/predictions/"
    assert "modelPath" not in status and "progress" not in status


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


# -- the status is the contract's model --------------------------------------------------------------
def test_the_status_is_built_through_the_model_and_stored_under_its_aliases() -> None:
    fields = {
        "phase": Phase.RUNNING,
        "job_name": "digits-trainer",
        "pod_name": None,
        "conditions": [
            {"type": "Created", "status": "True", "reason": "JobCreated", "last_transition_time": NOW}
        ],
    }
    assert stored_status(fields) == {
        "phase": "Running",
        "jobName": "digits-trainer",
        "conditions": [
            {
                "type": "Created",
                "status": "True",
                "reason": "JobCreated",
                "message": "",
                "lastTransitionTime": NOW,
            }
        ],
    }
    assert type(stored_status(fields)["phase"]) is str  # JSON, not the enum


@pytest.mark.parametrize(
    "fields",
    [
        {"jobname": "digits-trainer"},  # a misspelt field
        {"jobName": "digits-trainer"},  # the wire's spelling: the reducer speaks the model's field names
        {
            "conditions": [
                {"type": "Created", "status": "True", "reason": "JobCreated", "lastTransitionTime": NOW}
            ]
        },
    ],
)
def test_a_key_the_model_lacks_fails_at_once(fields: dict[str, Any]) -> None:
    # A real API server would prune it without a word (the CRD's schema is generated from the model).
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        stored_status(fields)


TRAININGS = [
    training(spec)
    for spec in ("{epochs: 4}", "{epochs: 2, output: {claimName: models}}", "{metrics: {prefix: acme}}")
]
TIMES = st.sampled_from(["2026-11-23T09:00:00Z", NOW, LATER])
TEXTS = st.one_of(st.none(), st.sampled_from(["", "mirror down", "line 1\nline 2"]))
JOB_CONDITIONS = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["Complete", "Failed", "FailureTarget", "Suspended"]),
        "status": st.sampled_from(["True", "False"]),
        "reason": st.sampled_from(
            [None, "PodFailurePolicy", "BackoffLimitExceeded", "DeadlineExceeded", "CompletionsReached"]
        ),
        "message": TEXTS,
        "lastTransitionTime": TIMES,
    }
)
JOBS = st.one_of(
    st.none(),
    st.builds(
        lambda suspend, status: {
            "metadata": {"name": "digits-trainer"},
            "spec": {"suspend": suspend},
            "status": status,
        },
        st.sampled_from([None, False, True]),
        st.fixed_dictionaries(
            {},
            optional={
                "failed": st.integers(0, 3),
                "active": st.integers(0, 1),
                "succeeded": st.integers(0, 1),
                "startTime": TIMES,
                "completionTime": TIMES,
                "conditions": st.lists(JOB_CONDITIONS, max_size=3),
            },
        ),
    ),
)
CONTAINER_STATES = st.one_of(
    st.just({}),
    st.just({"running": {}}),
    st.builds(
        lambda reason, message: {"waiting": {"reason": reason, "message": message}},
        st.sampled_from(["ImagePullBackOff", "CrashLoopBackOff", "ContainerCreating"]),
        TEXTS,
    ),
    st.builds(
        lambda code, reason, message: {
            "terminated": {"exitCode": code, "reason": reason, "message": message}
        },
        st.sampled_from([0, 1, 2, 64, 65, 66, 70, 137, 143]),
        st.sampled_from([None, "Error", "OOMKilled", "Completed"]),
        TEXTS,
    ),
)
PODS = st.lists(
    st.builds(
        lambda name, created, phase, state, evicted: {
            "metadata": {"name": name, "creationTimestamp": created},
            "status": {
                "phase": phase,
                "containerStatuses": [{"name": "trainer", "state": state}],
                **({"reason": "Evicted", "message": "node pressure"} if evicted else {}),
            },
        },
        st.sampled_from(["p1", "p2", "p3"]),
        TIMES,
        st.sampled_from(["Pending", "Running", "Succeeded", "Failed"]),
        CONTAINER_STATES,
        st.booleans(),
    ),
    max_size=3,
)
FIGURE_NAMES = [
    f"{prefix}_{name}"
    for prefix in ("gangplank", "acme")
    for name in (
        "train_epochs_count",
        "train_accuracy",
        "train_loss",
        "train_val_accuracy",
        "train_val_loss",
        "train_elapsed_time_seconds",
        "train_model_parameters_count",
        "test_accuracy",
        "test_loss",
    )
]
METRICS = st.one_of(
    st.none(),
    st.builds(
        lambda error: MetricsView({}, False, error), st.one_of(st.none(), st.just("connection refused"))
    ),
    st.builds(MetricsView, st.dictionaries(st.sampled_from(FIGURE_NAMES), st.floats(0, 1e6), max_size=9)),
)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(TRAININGS),
    st.lists(st.tuples(JOBS, PODS, METRICS, TIMES), min_size=1, max_size=3),
)
def test_every_key_written_at_every_level_is_a_field_of_the_model(
    resource: Any, steps: list[tuple[Any, Any, MetricsView | None, str]]
) -> None:
    status_keys = {field.alias for field in MnistTrainingStatus.model_fields.values()}
    condition_keys = {field.alias for field in Condition.model_fields.values()}
    previous: dict[str, Any] | None = None
    for job_, pods, metrics, now in steps:
        status = reduce_status(resource, job_, pods, metrics, previous, now)
        assert set(status) <= status_keys
        assert all(set(c) <= condition_keys for c in status["conditions"])
        # What the API server would store (its schema is the model's) is exactly what was written.
        stored = MnistTrainingStatus.model_validate(status, extra="forbid", by_alias=True, by_name=False)
        assert stored.model_dump(mode="json", by_alias=True, exclude_none=True) == status
        previous = status


def queued_job() -> dict[str, Any]:
    queued = job(suspend=True)
    queued["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "team-a"}
    return queued


def workload(**conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "name": "job-digits-trainer-1a2b3",
        "job": "digits-trainer",
        "queue": "team-a",
        "conditions": {t: {"status": s, "reason": r, "message": m} for t, (s, r, m) in conditions.items()},
    }


def test_a_suspended_job_without_a_queue_is_the_spec_s_suspension() -> None:
    status = reduce_status(training(), job(suspend=True), [], None, None, NOW)
    assert status["phase"] == "Suspended"
    assert "spec.runPolicy.suspend" in status["message"]


def queued_training() -> Any:
    text = (
        "apiVersion: training.mnist-operator.io/v1alpha1\nkind: MnistTraining\nmetadata: {name: digits, "
        "namespace: ml, uid: u-1, generation: 3, labels: {kueue.x-k8s.io/queue-name: team-a}}\nspec: {}\n"
    )
    return load_manifests(text)[0]


def test_only_a_training_that_names_a_queue_has_a_queued_condition() -> None:
    status = reduce_status(training(), job(active=1), [pod("p1", NOW, "Running")], None, None, NOW)
    assert "Queued" not in {c["type"] for c in status["conditions"]}


def test_a_queued_job_before_kueue_made_its_workload_says_what_it_waits_for() -> None:
    status = reduce_status(queued_training(), queued_job(), [], None, None, NOW)
    assert status["phase"] == "Queued"
    assert condition(status, "Queued")["reason"] == "WaitingForKueue"
    assert "LocalQueue team-a" in status["message"] and "spec.runPolicy" not in status["message"]
    assert condition(status, "Suspended")["status"] == "False"


def test_a_workload_waiting_for_quota_shows_kueue_s_reason_and_message() -> None:
    message = "couldn't assign flavors to pod set main: insufficient unused quota for cpu in flavor default"
    pending = workload(QuotaReserved=("False", "Pending", message))
    status = reduce_status(queued_training(), queued_job(), [], None, None, NOW, pending)
    assert status["phase"] == "Queued"
    queued = condition(status, "Queued")
    assert queued["status"] == "True" and queued["reason"] == "Pending"
    assert message in queued["message"] and "job-digits-trainer-1a2b3" in queued["message"]


@pytest.mark.parametrize(
    ("conditions", "reason"),
    [
        (
            {"QuotaReserved": ("True", "QuotaReserved", ""), "Admitted": ("False", "NoChecks", "checks")},
            "QuotaReserved",
        ),
        ({"QuotaReserved": ("True", "QuotaReserved", ""), "Admitted": ("True", "Admitted", "")}, "Admitted"),
        (
            {
                "QuotaReserved": ("False", "Pending", ""),
                "Evicted": ("True", "Preempted", "by a higher priority"),
            },
            "Preempted",
        ),
        ({"QuotaReserved": ("False", "not a reason!", "odd")}, "Pending"),
    ],
)
def test_each_workload_state_is_one_queued_reason(
    conditions: dict[str, tuple[str, str, str]], reason: str
) -> None:
    status = reduce_status(queued_training(), queued_job(), [], None, None, NOW, workload(**conditions))
    assert status["phase"] == "Queued" and condition(status, "Queued")["reason"] == reason


def test_an_admitted_job_runs_as_any_other() -> None:
    admitted = queued_job()
    admitted["spec"]["suspend"] = False
    admitted["status"] = {"active": 1}
    running = [pod("p1", NOW, "Running")]
    status = reduce_status(queued_training(), admitted, running, None, None, NOW, workload())
    assert status["phase"] == "Running"
    assert condition(status, "Queued")["status"] == "False"
    assert condition(status, "Queued")["reason"] == "NotQueued"


# -- multi-worker trainings ---------------------------------------------------------------------------
T0, T1, T2, T3 = (f"2026-11-23T09:0{minute}:00Z" for minute in range(4))


def worker(
    index: int, name: str, phase: str, created: str = T0, finished: str | None = None, **state: Any
) -> dict[str, Any]:
    """A pod of the Indexed Job, as the watch's pod_summary keeps it."""
    found = pod(name, created, phase, **state)
    found["metadata"]["annotations"] = {"batch.kubernetes.io/job-completion-index": str(index)}
    if finished is not None:
        found["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] = finished
    return found


def lost(index: int, name: str, finished: str, created: str = T0) -> dict[str, Any]:
    return worker(index, name, "Failed", created, finished, terminated={"exitCode": 75})


def test_a_single_worker_status_has_no_worker_fields() -> None:
    status = reduce_status(training(), job(active=1, ready=1), [pod("p1", NOW, "Running")], None, None, NOW)
    assert not {"workers", "workersReady", "workersRunning", "workerReadiness", "failedWorker"} & set(status)


def test_all_workers_running_is_running_and_the_pod_is_the_chief_s() -> None:
    pods = [worker(1, "w1", "Running", T1, running={}), worker(0, "w0", "Running", T0, running={})]
    status = reduce_status(training("{workers: 2}"), job(active=2, ready=2), pods, None, None, NOW)
    assert status["phase"] == "Running"
    assert (status["workers"], status["workersReady"], status["workersRunning"]) == (2, 2, 2)
    assert status["workerReadiness"] == "2/2" and "failedWorker" not in status
    assert status["podName"] == "w0", "kubectl logs wants the chief, not the latest pod (w1)"
    assert "worker 0, the chief, is pod w0" in status["message"]
    assert status["attempts"] == 2


def test_a_training_waits_until_every_worker_runs() -> None:
    pods = [worker(0, "w0", "Running", running={}), worker(1, "w1", "Pending")]
    status = reduce_status(training("{workers: 2}"), job(active=2, ready=1), pods, None, None, NOW)
    assert status["phase"] == "Pending" and condition(status, "Running")["status"] == "False"
    assert "1 of 2 running" in status["message"] and status["workerReadiness"] == "1/2"
    waiting = {"reason": "ErrImagePull", "message": "no such image"}
    pods[1] = worker(1, "w1", "Pending", waiting=waiting)
    status = reduce_status(training("{workers: 2}"), job(active=2), pods, None, None, NOW)
    assert (status["phase"], status["message"]) == ("Pending", "worker 1 (pod w1): no such image")
    assert status["workersReady"] == 0


def test_a_lost_worker_is_named_as_the_cause_not_the_survivors_that_failed_after_it() -> None:
    pods = [
        worker(0, "w0", "Failed", T0, T2, terminated={"exitCode": 75}),  # a survivor, last to fail
        worker(1, "w1", "Failed", T0, T1, terminated={"exitCode": 137, "reason": "OOMKilled"}),
        lost(2, "w2", T2),
        worker(1, "w1b", "Pending", T2),
    ]
    status = reduce_status(training("{workers: 3}"), job(failed=3, active=1), pods, None, None, NOW)
    assert status["phase"] == "Pending" and condition(status, "Running")["status"] == "False"
    assert status["failedWorker"] == 1
    assert status["message"].startswith("retrying after OOMKilled of worker 1 (pod w1):")
    assert "the workers restart together" in status["message"]
    assert status["podName"] == "w0"


def test_the_failed_worker_of_a_failed_training_is_in_its_failed_condition() -> None:
    pods = [
        lost(1, "w1", T3, T2),
        worker(0, "w0b", "Failed", T2, T3, terminated={"exitCode": 1, "message": "Traceback\nBoom"}),
        worker(0, "w0", "Failed", T0, T1, terminated={"exitCode": 137, "reason": "OOMKilled"}),
    ]
    status = reduce_status(
        training("{workers: 2}"), job(("Failed", "BackoffLimitExceeded", ""), failed=3), pods, None, None, NOW
    )
    failed = condition(status, "Failed")
    assert failed["reason"] == "TrainerError" and status["failedWorker"] == 0
    assert failed["message"].startswith(
        "backoff limit reached; last attempt: worker 0 (pod w0b): exit code 1"
    )
    assert "(Boom)" in failed["message"] and status["podName"] == "w0b"


def test_a_worker_lost_without_a_trace_is_named_by_its_survivor() -> None:
    # The lost worker's pod went with its node; only the survivors' WorkerLost exits remain, after an older
    # restart's cause that must not be blamed for this one.
    pods = [
        worker(1, "w1", "Failed", T0, T1, terminated={"exitCode": 137, "reason": "OOMKilled"}),
        lost(0, "w0", T1),
        lost(0, "w0b", T3, T2),
        lost(2, "w2b", T3, T2),
        lost(1, "w1b", T3, T2),
    ]
    status = reduce_status(training("{workers: 3}"), job(failed=5), pods, None, None, NOW)
    assert status["failedWorker"] in (0, 1, 2)
    assert status["message"].startswith("retrying after WorkerLost of worker")
    assert "OOMKilled" not in status["message"]


def test_of_two_workers_the_one_that_failed_first_is_the_cause() -> None:
    pods = [lost(0, "w0", T2), worker(1, "w1", "Failed", T0, T1, terminated={"exitCode": 1})]
    status = reduce_status(training("{workers: 2}"), job(failed=2), pods, None, None, NOW)
    assert status["failedWorker"] == 1 and "TrainerError of worker 1 (pod w1)" in status["message"]


def test_finished_workers_before_the_job_completes_are_not_a_step_back() -> None:
    pods = [
        worker(0, "w0", "Succeeded", terminated={"exitCode": 0}),
        worker(1, "w1", "Running", running={}),
    ]
    status = reduce_status(training("{workers: 2}"), job(active=1, succeeded=1), pods, None, None, NOW)
    assert status["phase"] == "Running" and condition(status, "Running")["reason"] == "TrainerFinished"


def test_the_pod_summary_keeps_the_worker_index() -> None:
    body = {
        "metadata": {
            "name": "w1",
            "namespace": "ml",
            "annotations": {"batch.kubernetes.io/job-completion-index": "1", "other": "x"},
            "labels": {"training.mnist-operator.io/name": "digits", "batch.kubernetes.io/job-name": "j"},
        },
        "status": {"phase": "Running"},
    }
    summary = pod_summary(body)
    assert summary["metadata"]["annotations"] == {"batch.kubernetes.io/job-completion-index": "1"}
    assert "annotations" not in pod_summary({"metadata": {"name": "p"}, "status": {}})["metadata"]
