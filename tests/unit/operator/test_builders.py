"""Every field of the trainer Job, built purely from the resource and the operator's Config."""

from typing import Any

import pytest

from mnist_api import TrainerConfig, load_manifests
from mnist_api.distribution import WORKER_PORT, WORKER_PORT_NAME, cluster_worker_hosts
from mnist_api.exit_codes import ExitCode
from mnist_operator.builders import UnrunnableTrainingError, build_trainer_job, build_worker_service
from mnist_operator.config import Config
from mnist_operator.naming import child_name

CONFIG = Config(trainer_image="registry.example/trainer:1", pushgateway_url="http://pgw.monitoring:9091")


def training(spec: str = "{}", name: str = "digits") -> Any:
    text = (
        "apiVersion: training.mnist-operator.io/v1alpha1\nkind: MnistTraining\n"
        f"metadata: {{name: {name}, namespace: team-a, uid: 1234-abcd, generation: 2}}\nspec: {spec}\n"
    )
    return load_manifests(text)[0]


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def test_job_identity_labels_and_owner() -> None:
    job = build_trainer_job(training(), CONFIG)
    assert job["metadata"]["name"] == "digits-trainer"
    assert job["metadata"]["namespace"] == "team-a"
    assert job["metadata"]["labels"]["training.mnist-operator.io/name"] == "digits"
    assert job["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mnist-operator"
    assert job["spec"]["template"]["metadata"]["labels"] == job["metadata"]["labels"]
    (owner,) = job["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "training.mnist-operator.io/v1alpha1",
        "kind": "MnistTraining",
        "name": "digits",
        "uid": "1234-abcd",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_the_job_is_the_same_every_time() -> None:
    assert build_trainer_job(training(), CONFIG) == build_trainer_job(training(), CONFIG)


def test_run_policy_maps_onto_the_job() -> None:
    job = build_trainer_job(
        training("{runPolicy: {backoffLimit: 5, activeDeadlineSeconds: 600, suspend: true}}"), CONFIG
    )
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"], job["spec"]["suspend"]) == (
        5,
        600,
        True,
    )
    assert "activeDeadlineSeconds" not in build_trainer_job(training(), CONFIG)["spec"]


def test_pod_failure_policy_fails_at_once_on_final_exit_codes_and_ignores_disruptions() -> None:
    rules = build_trainer_job(training(), CONFIG)["spec"]["podFailurePolicy"]["rules"]
    fail, ignore = rules
    assert fail["action"] == "FailJob" and fail["onExitCodes"]["containerName"] == "trainer"
    assert ExitCode.DATA_UNAVAILABLE in fail["onExitCodes"]["values"]
    assert ExitCode.RELEASE_CRITERIA_NOT_MET in fail["onExitCodes"]["values"]
    assert ExitCode.METRICS_UNAVAILABLE not in fail["onExitCodes"]["values"]
    assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    assert pod_spec(build_trainer_job(training(), CONFIG))["restartPolicy"] == "Never"


def test_container_image_command_and_environment() -> None:
    job = build_trainer_job(training("{image: mine/trainer:2, epochs: 9}"), CONFIG)
    (container,) = pod_spec(job)["containers"]
    assert container["image"] == "mine/trainer:2"
    assert container["command"] == ["python", "-m", "mnist_trainer"]
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    config = TrainerConfig.from_env(plain)
    assert (config.epochs, config.uid, config.pushgateway_url) == (
        9,
        "1234-abcd",
        "http://pgw.monitoring:9091",
    )
    assert config.data_dir == "/var/lib/mnist/data" and config.output_dir == "/var/lib/mnist/output"
    assert (
        build_trainer_job(training(), CONFIG)["spec"]["template"]["spec"]["containers"][0]["image"]
        == CONFIG.trainer_image
    )


def test_cpu_training_requests_cpu_and_memory_without_a_cpu_limit() -> None:
    (container,) = pod_spec(build_trainer_job(training("{resources: {cpu: '2', memory: 3Gi}}"), CONFIG))[
        "containers"
    ]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "3Gi"}, "limits": {"memory": "3Gi"}}
    assert "tolerations" not in pod_spec(build_trainer_job(training(), CONFIG))


def test_gpu_training_requests_gpus_and_tolerates_the_gpu_taint() -> None:
    spec = (
        "{resources: {gpus: 2}, nodeSelector: {node.kubernetes.io/instance-type: g5.xlarge},"
        " tolerations: [{key: dedicated, operator: Equal, value: ml, effect: NoSchedule}]}"
    )
    pod = pod_spec(build_trainer_job(training(spec), CONFIG))
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": "g5.xlarge"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]


def test_pods_are_locked_down() -> None:
    pod = pod_spec(build_trainer_job(training(), CONFIG))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"data": "/var/lib/mnist/data", "output": "/var/lib/mnist/output", "tmp": "/tmp"}


def test_volumes_use_claims_when_given_and_empty_dirs_otherwise() -> None:
    volumes = {v["name"]: v for v in pod_spec(build_trainer_job(training(), CONFIG))["volumes"]}
    assert "emptyDir" in volumes["data"] and "emptyDir" in volumes["output"]
    spec = "{dataset: {cacheClaimName: mnist-cache}, output: {claimName: models}}"
    volumes = {v["name"]: v for v in pod_spec(build_trainer_job(training(spec), CONFIG))["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "mnist-cache"}
    assert volumes["output"]["persistentVolumeClaim"] == {"claimName": "models"}


def test_claims_the_spec_reads_from_are_mounted_read_only_and_a_shared_claim_is_one_volume() -> None:
    spec = (
        "{task: predict, baseModel: {training: digits}, predict: {claimName: scans, path: batch-1},"
        " dataset: {claimName: images, path: mnist}, output: {claimName: models}}"
    )
    job = build_trainer_job(training(spec, name="scan-run"), CONFIG, base_model_claim="models")
    pod = pod_spec(job)
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}
    # The base model lives on the output claim: one volume, mounted twice (once read-only).
    assert claims == {
        "data": None,
        "output": "models",
        "dataset": "images",
        "predict-input": "scans",
        "tmp": None,
    }
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/var/lib/mnist/base-model"] == {
        "name": "output",
        "mountPath": "/var/lib/mnist/base-model",
        "readOnly": True,
    }
    assert mounts["/var/lib/mnist/dataset"]["readOnly"] and mounts["/var/lib/mnist/predict-input"]["readOnly"]
    assert "readOnly" not in mounts["/var/lib/mnist/output"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    config = TrainerConfig.from_env({k: v for k, v in env.items() if v is not None})
    assert config.task == "predict"
    assert config.base_model_path == "/var/lib/mnist/base-model/team-a/digits/model.keras"
    assert config.predict_dir == "/var/lib/mnist/predict-input/batch-1"
    assert config.dataset_dir == "/var/lib/mnist/dataset/mnist"


def test_a_training_without_inputs_mounts_no_input_claims() -> None:
    mounts = [
        m["mountPath"]
        for m in pod_spec(build_trainer_job(training(), CONFIG))["containers"][0]["volumeMounts"]
    ]
    assert mounts == ["/var/lib/mnist/data", "/var/lib/mnist/output", "/tmp"]


def test_auth_secret_reaches_the_pod_as_secret_references() -> None:
    (container,) = pod_spec(build_trainer_job(training("{metrics: {authSecretRef: {name: pgw}}}"), CONFIG))[
        "containers"
    ]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs["MNIST_PUSHGATEWAY_PASSWORD"] == {"name": "pgw", "key": "password"}


def test_long_names_are_shortened_stably_within_63_characters() -> None:
    long = "a" * 63
    name = child_name(long, "trainer")
    assert len(name) <= 63 and name.endswith("-trainer") and name == child_name(long, "trainer")
    assert child_name("a" * 62 + "b", "trainer") != name


def test_a_resource_without_uid_cannot_own_children() -> None:
    with pytest.raises(ValueError, match="no uid"):
        build_trainer_job(
            load_manifests(
                "apiVersion: training.mnist-operator.io/v1alpha1\nkind: MnistTraining\nmetadata: {name: x}\n"
            )[0],
            CONFIG,
        )


def queued_training(labels: str, spec: str = "{}") -> Any:
    text = (
        "apiVersion: training.mnist-operator.io/v1alpha1\nkind: MnistTraining\n"
        f"metadata: {{name: digits, namespace: team-a, uid: 1234-abcd, labels: {labels}}}\nspec: {spec}\n"
    )
    return load_manifests(text)[0]


def test_a_queued_training_hands_its_kueue_labels_to_a_job_created_suspended() -> None:
    labels = "{kueue.x-k8s.io/queue-name: team-a, kueue.x-k8s.io/priority-class: low, team: vision}"
    job = build_trainer_job(queued_training(labels), CONFIG)
    assert job["spec"]["suspend"] is True, "Kueue unsuspends it on admission"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "low"
    assert "team" not in job["metadata"]["labels"], "only Kueue's labels are handed on"
    # Kueue reads the Job's labels; the pods keep the operator's own, which select them.
    assert "kueue.x-k8s.io/queue-name" not in job["spec"]["template"]["metadata"]["labels"]


def test_a_priority_class_without_a_queue_is_not_kueue_s_business() -> None:
    job = build_trainer_job(queued_training("{kueue.x-k8s.io/priority-class: low}"), CONFIG)
    assert job["spec"]["suspend"] is False
    assert not [key for key in job["metadata"]["labels"] if key.startswith("kueue.x-k8s.io/")]


# -- multi-worker trainings ---------------------------------------------------------------------------
def test_a_single_worker_training_is_a_plain_job_without_worker_fields() -> None:
    job = build_trainer_job(training("{workers: 1}"), CONFIG)
    assert job == build_trainer_job(training(), CONFIG)
    for field in ("completions", "parallelism", "completionMode", "podReplacementPolicy"):
        assert field not in job["spec"]
    assert "subdomain" not in pod_spec(job) and "ports" not in pod_spec(job)["containers"][0]
    with pytest.raises(ValueError, match="no worker Service"):
        build_worker_service(training())


def test_a_multi_worker_training_is_one_indexed_job() -> None:
    job = build_trainer_job(training("{workers: 3}"), CONFIG)
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["completionMode"]) == (3, 3, "Indexed")
    assert spec["podReplacementPolicy"] == "Failed", "a replacement never overlaps the pod it replaces"
    assert pod_spec(job)["subdomain"] == job["metadata"]["name"] == "digits-trainer"
    (container,) = pod_spec(job)["containers"]
    assert container["ports"] == [{"name": WORKER_PORT_NAME, "containerPort": WORKER_PORT}]
    # Everything else is the single-worker Job's.
    single = build_trainer_job(training(), CONFIG)
    assert spec["podFailurePolicy"] == single["spec"]["podFailurePolicy"]
    assert job["metadata"] == single["metadata"]
    assert pod_spec(job)["volumes"] == pod_spec(single)["volumes"]


@pytest.mark.parametrize(
    ("workers", "backoff_limit", "expected"), [(1, 3, 3), (2, 3, 6), (4, 0, 0), (8, 5, 40)]
)
def test_the_job_backoff_limit_counts_restarts_of_the_whole_set_of_workers(
    workers: int, backoff_limit: int, expected: int
) -> None:
    spec = f"{{workers: {workers}, runPolicy: {{backoffLimit: {backoff_limit}}}}}"
    assert build_trainer_job(training(spec), CONFIG)["spec"]["backoffLimit"] == expected


@pytest.mark.parametrize("namespace", ["team-a", "vision"])
def test_each_worker_is_told_every_worker_s_dns_name_in_its_namespace(namespace: str) -> None:
    resource = training("{workers: 2}")
    resource = resource.model_copy(
        update={"metadata": resource.metadata.model_copy(update={"namespace": namespace})}
    )
    (container,) = pod_spec(build_trainer_job(resource, CONFIG))["containers"]
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    config = TrainerConfig.from_env(plain)
    assert config.workers == 2
    assert config.worker_hosts == [
        f"digits-trainer-0.digits-trainer.{namespace}.svc:2222",
        f"digits-trainer-1.digits-trainer.{namespace}.svc:2222",
    ]
    assert config.worker_hosts == cluster_worker_hosts("digits-trainer", 2, namespace)


def test_the_worker_service_is_headless_and_selects_exactly_this_training_s_pods() -> None:
    resource = training("{workers: 2}")
    job = build_trainer_job(resource, CONFIG)
    service = build_worker_service(resource)
    assert (service["apiVersion"], service["kind"]) == ("v1", "Service")
    assert service["metadata"]["name"] == job["metadata"]["name"] == pod_spec(job)["subdomain"]
    assert service["metadata"]["namespace"] == "team-a"
    assert service["metadata"]["labels"] == job["metadata"]["labels"]
    assert service["metadata"]["ownerReferences"] == job["metadata"]["ownerReferences"]
    spec = service["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is True, "workers find each other before any is Ready"
    assert spec["selector"] == {
        "training.mnist-operator.io/name": "digits",
        "training.mnist-operator.io/uid": "1234-abcd",
    }
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"].items() <= pod_labels.items()
    assert spec["ports"] == [{"name": "tf-worker", "port": 2222, "targetPort": "tf-worker"}]
    assert build_worker_service(resource) == service


def test_a_multi_worker_job_name_leaves_room_for_the_pods_index_in_their_hostname() -> None:
    long = "a" * 63
    for workers in (2, 11, 64):
        resource = training(f"{{workers: {workers}}}", name=long)
        name = build_trainer_job(resource, CONFIG)["metadata"]["name"]
        assert len(f"{name}-{workers - 1}") <= 63
        assert build_worker_service(resource)["metadata"]["name"] == name
    # A single worker's Job keeps its name of before.
    assert build_trainer_job(training(name=long), CONFIG)["metadata"]["name"] == child_name(long, "trainer")


def test_a_multi_worker_training_whose_name_starts_with_a_digit_cannot_have_its_service() -> None:
    with pytest.raises(UnrunnableTrainingError, match="must start with a letter"):
        build_worker_service(training("{workers: 2}", name="2-digits"))
