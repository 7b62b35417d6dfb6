"""The Events the operator posts: built purely, in the form kubectl reads."""

import datetime

from mnist_operator.events import MAX_MESSAGE, build_event

TRAINING = {
    "apiVersion": "training.mnist-operator.io/v1alpha1",
    "kind": "MnistTraining",
    "metadata": {"name": "digits", "namespace": "team-a", "uid": "uid-1", "managedFields": [{}]},
    "spec": {"epochs": 3},
}
NOW = datetime.datetime(2026, 11, 23, 10, 0, 5, 123456, tzinfo=datetime.UTC)


def test_an_event_names_its_training_and_its_reporter() -> None:
    event = build_event(
        TRAINING,
        "Normal",
        "JobCreated",
        "created Job digits-trainer",
        now=NOW,
        component="mnist-operator",
        instance="pod-7",
    )
    assert event == {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"namespace": "team-a", "generateName": "digits."},
        "involvedObject": {
            "apiVersion": "training.mnist-operator.io/v1alpha1",
            "kind": "MnistTraining",
            "name": "digits",
            "namespace": "team-a",
            "uid": "uid-1",
        },
        "type": "Normal",
        "reason": "JobCreated",
        "message": "created Job digits-trainer",
        "source": {"component": "mnist-operator"},
        "reportingComponent": "mnist-operator",
        "reportingInstance": "pod-7",
        "firstTimestamp": "2026-11-23T10:00:05Z",
        "lastTimestamp": "2026-11-23T10:00:05Z",
        "count": 1,
    }


def test_a_long_message_is_cut_visibly() -> None:
    event = build_event(TRAINING, "Warning", "Failed", "x" * 5000, now=NOW, component="c", instance="i")
    assert len(event["message"]) == MAX_MESSAGE and event["message"].endswith("…")
