"""What the operator keeps of its children: summaries, and which trainings wait for Kueue."""

from typing import Any

from mnist_api import load_manifests
from mnist_operator.state import Store, job_summary, workload_summary

TRAINING = """
apiVersion: training.mnist-operator.io/v1alpha1
kind: MnistTraining
metadata: {name: digits, namespace: ml, uid: u-1, generation: 1, labels: {kueue.x-k8s.io/queue-name: team}}
spec: {}
"""


def kueue_workload(job: str = "digits-trainer") -> dict[str, Any]:
    """A Workload as Kueue v0.17 stores it (v1beta2), trimmed of fields the summary ignores."""
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {
            "name": f"job-{job}-5f0c1",
            "namespace": "ml",
            "labels": {"kueue.x-k8s.io/job-uid": "j-1"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": "j-1"}],
        },
        "spec": {"queueName": "team", "podSets": [{"name": "main", "count": 1}]},
        "status": {
            "conditions": [
                {
                    "type": "QuotaReserved",
                    "status": "False",
                    "reason": "Pending",
                    "message": "insufficient quota",
                },
                {"type": "Requeued", "status": "True", "reason": "Pending", "message": ""},
            ]
        },
    }


def test_a_workload_is_summarised_to_its_job_queue_and_waiting_conditions() -> None:
    assert workload_summary(kueue_workload()) == {
        "name": "job-digits-trainer-5f0c1",
        "job": "digits-trainer",
        "queue": "team",
        "conditions": {
            "QuotaReserved": {"status": "False", "reason": "Pending", "message": "insufficient quota"}
        },
    }


def job_body(suspend: bool) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "digits-trainer",
            "namespace": "ml",
            "labels": {
                "training.mnist-operator.io/name": "digits",
                "training.mnist-operator.io/uid": "u-1",
                "kueue.x-k8s.io/queue-name": "team",
            },
            "ownerReferences": [{"uid": "u-1"}],
        },
        "spec": {"suspend": suspend, "template": {"spec": {"containers": []}}},
        "status": {},
    }


def test_the_store_knows_which_trainings_wait_in_a_queue_and_forgets_admitted_ones() -> None:
    store = Store()
    key = store.update_training(load_manifests(TRAINING)[0].model_dump(by_alias=True, mode="json"))
    assert store.queued() == {}
    store.update_child("job", "ADDED", job_summary(job_body(suspend=True)))
    assert store.queued() == {("ml", "digits-trainer"): key}
    assert store.set_workload(key, workload_summary(kueue_workload())) is True
    assert store.set_workload(key, workload_summary(kueue_workload())) is False, "unchanged"
    store.update_child("job", "MODIFIED", job_summary(job_body(suspend=False)))
    assert store.queued() == {}
    store.drop_workloads_except(set())
    entry = store.get(key)
    assert entry is not None and entry.workload is None
