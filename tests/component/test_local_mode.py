"""``mnist-operator local``: the sample manifest trains with no cluster, shown as kubectl would show it."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import DataMirror
from tests.support.servers import trainer_environment

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "manifests" / "samples" / "mnist-training.yaml"


def local_args(data: DataMirror, *extra: str, epochs: int = 3) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mnist_operator",
        "local",
        "-f",
        str(SAMPLE),
        "--set",
        f"spec.dataset.url={data.idx_url}",
        "--set",
        f"spec.dataset.sha256={json.dumps(data.sha256)}",
        "--set",
        f"spec.epochs={epochs}",
        "--set",
        "spec.batchSize=64",
        "--set",
        "spec.releaseCriteria.minTestAccuracy=0.5",
        *extra,
    ]


def run_local(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=trainer_environment(env), capture_output=True, text=True, timeout=600, check=False
    )


def rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines() if line.startswith("mnist-convnet ")]


def test_the_sample_trains_locally_with_a_live_table(tmp_path: Path, data_mirror: DataMirror) -> None:
    done = run_local(local_args(data_mirror), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "NAME            PHASE        EPOCH        ACCURACY     VAL-ACC      LOSS         AGE" in done.stdout
    )
    table = rows(done.stdout)
    epochs = [int(row[2].split("/")[0]) for row in table]
    assert epochs == sorted(epochs) and table[-1][:3] == ["mnist-convnet", "Succeeded", "3/3"]
    assert any(row[1] == "Running" and row[2] in ("1/3", "2/3") for row in table), done.stdout
    run_dir = tmp_path / "runs" / "default" / "mnist-convnet"
    report = json.loads((run_dir / "metrics.json").read_text())
    assert table[-1][3] == str(round(report["history"][-1]["accuracy"], 4))
    assert (run_dir / "model.keras").is_file()
    assert re.search(r"epoch 3/3  loss", (run_dir / "trainer.log").read_text())
    assert "epoch 1/3" not in done.stdout, "the trainer's log belongs in trainer.log unless --logs"


def test_logs_flag_follows_the_trainers_log(tmp_path: Path, data_mirror: DataMirror) -> None:
    # oneDNN on, as by default on Intel CPUs: its start-up line must not reach the terminal or the log.
    args = local_args(data_mirror, "--logs", "--set", "spec.model=mlp", epochs=1)
    done = run_local(args, tmp_path, TF_ENABLE_ONEDNN_OPTS="1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "epoch 1/1  loss" in done.stdout and rows(done.stdout)[-1][1] == "Succeeded"
    log = (tmp_path / "runs" / "default" / "mnist-convnet" / "trainer.log").read_text()
    for output in (done.stdout + done.stderr, log):
        assert "oneDNN" not in output and "cpu_feature_guard" not in output and "absl" not in output, output


def test_quiet_prints_only_the_final_row_and_the_result(tmp_path: Path, data_mirror: DataMirror) -> None:
    # Through the local Pushgateway, whose address line is one of the notices --quiet drops.
    done = run_local(local_args(data_mirror, "-q", "--set", "spec.model=mlp", epochs=1), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = tmp_path / "runs" / "default" / "mnist-convnet"
    # Nothing else: no live rows, no log path, no notices.
    header, row, result, card = done.stdout.splitlines()
    assert header.split() == ["NAME", "PHASE", "EPOCH", "ACCURACY", "VAL-ACC", "LOSS", "AGE"]
    assert row.split()[:3] == ["mnist-convnet", "Succeeded", "1/1"] and len(row.split()) == 7, row
    assert result == f"mnist-operator: model and metrics.json in {run_dir}"
    assert card == f"mnist-operator: model card: {run_dir / 'model_card' / 'mnist_model_card.md'}"
    assert done.stderr == ""
    assert "epoch 1/1  loss" in (run_dir / "trainer.log").read_text()  # the log is still written

    # A failure: the same exit code as without --quiet, and its one readable line.
    args = [sys.executable, "-m", "mnist_operator", "local", "-f", str(SAMPLE), "--no-pushgateway", "--quiet"]
    args += ["--set", f"spec.dataset.url={data_mirror.mirror.url}no-such-folder/", "--set", "spec.model=mlp"]
    failed = run_local(args, tmp_path)
    assert failed.returncode == 66, failed.stdout + failed.stderr
    header, row, result = failed.stdout.splitlines()
    assert header.startswith("NAME ") and row.split()[:2] == ["mnist-convnet", "Failed"], failed.stdout
    assert result.startswith("mnist-operator: DataUnavailable: ") and "(trainer log: runs/" in result


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(
    tmp_path: Path, data_mirror: DataMirror, stop: signal.Signals
) -> None:
    args = local_args(data_mirror, epochs=6)
    # SIGINT ignored from the start, as a shell without job control starts a background command (and as
    # CI may start the suite): the command must still stop cleanly.
    first = subprocess.Popen(
        args,
        cwd=tmp_path,
        env=trainer_environment({}),
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint,  # noqa: PLW1509 - one call between fork and exec
    )
    assert first.stdout is not None
    for line in first.stdout:
        if re.match(r"mnist-convnet\s+Running\s+[1-5]/6", line):
            break
    first.send_signal(stop)  # SIGINT is what Ctrl-C sends to the foreground command
    rest = first.communicate(timeout=120)[0]
    assert first.returncode == 143, rest
    assert "run the same command again to resume" in rest
    # Issue 12 item 6: a stopped run resumes, so it is shown stopped, not failed.
    assert rows(rest)[-1][1] == "Stopped", rest

    if stop == signal.SIGTERM:
        return  # the same stop as Ctrl-C's from here on: resuming is proven once, with SIGINT
    second = run_local(args, tmp_path)
    assert second.returncode == 0, second.stdout
    log = (tmp_path / "runs" / "default" / "mnist-convnet" / "trainer.log").read_text()
    assert "resuming at epoch" in log
    report = json.loads((tmp_path / "runs" / "default" / "mnist-convnet" / "metrics.json").read_text())
    assert [entry["epoch"] for entry in report["history"]] == [1, 2, 3, 4, 5, 6]


def test_a_changed_spec_starts_a_new_run_and_keeps_the_last_runs_files(
    tmp_path: Path, data_mirror: DataMirror
) -> None:
    # Issue 12 item 2: every local run used to share one uid, so the mlp restored the convnet's backup.
    # One convnet epoch on the generated digits may stay under the sample's accuracy gate.
    low_gate = ("--set", "spec.releaseCriteria.minTestAccuracy=0.1")
    first = run_local(local_args(data_mirror, "--no-pushgateway", *low_gate, epochs=1), tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    changed = run_local(
        local_args(data_mirror, "--no-pushgateway", *low_gate, "--set", "spec.model=mlp", epochs=2), tmp_path
    )
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "Traceback" not in changed.stdout + changed.stderr
    assert "the spec differs from the last run's; starting a new run" in changed.stdout
    runs = tmp_path / "runs" / "default"
    (kept,) = [path for path in runs.iterdir() if path.name.startswith("mnist-convnet.local-")]
    old_report = json.loads((kept / "metrics.json").read_text())
    assert old_report["model"]["name"] != "mlp" and len(old_report["history"]) == 1
    assert (kept / "model.keras").is_file()
    new_report = json.loads((runs / "mnist-convnet" / "metrics.json").read_text())
    assert [entry["epoch"] for entry in new_report["history"]] == [1, 2]
    assert "resuming" not in (runs / "mnist-convnet" / "trainer.log").read_text()


def test_without_a_pushgateway_the_table_shows_the_trainers_own_figures(
    tmp_path: Path, data_mirror: DataMirror
) -> None:
    # Issue 12 item 6: the table stayed at "Running 0/3" with no figures when nothing was pushed.
    done = run_local(
        local_args(data_mirror, "--no-pushgateway", "--set", "spec.model=mlp", epochs=3), tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = rows(done.stdout)
    # Figures while still Running: the mlp's epochs can all end within one 0.5 s refresh, so the row may
    # already read 3/3; the evaluation and export that follow keep it Running for longer than that.
    assert any(row[1] == "Running" and row[2] != "0/3" and len(row) > 4 for row in table), done.stdout
    report = json.loads((tmp_path / "runs" / "default" / "mnist-convnet" / "metrics.json").read_text())
    last = report["history"][-1]
    assert table[-1][:5] == [
        "mnist-convnet",
        "Succeeded",
        "3/3",
        str(round(last["accuracy"], 4)),
        str(round(last["val_accuracy"], 4)),
    ], done.stdout


def test_unreachable_data_says_how_to_point_at_a_mirror(tmp_path: Path, data_mirror: DataMirror) -> None:
    # A mirror without the files: a 404 is not retried, so the refusal comes at once. (Local mode takes
    # every MNIST_* setting from the manifest, so the environment cannot shorten the retries of a
    # connection refused.)
    args = [sys.executable, "-m", "mnist_operator", "local", "-f", str(SAMPLE), "--no-pushgateway"]
    args += ["--set", f"spec.dataset.url={data_mirror.mirror.url}no-such-folder/"]
    done = run_local(args, tmp_path)
    assert done.returncode == 66, done.stdout
    assert "DataUnavailable" in done.stdout and "set spec.dataset.url to a mirror" in done.stdout
    assert rows(done.stdout)[-1][1] == "Failed"
    # A failed trainer is one readable line naming its log, never a traceback of the CLI.
    log = tmp_path / "runs" / "default" / "mnist-convnet" / "trainer.log"
    assert f"(trainer log: {log.relative_to(tmp_path)})" in done.stdout and log.is_file(), done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_a_bad_manifest_is_refused_as_the_api_server_would(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    document = yaml.safe_load(SAMPLE.read_text())
    document["spec"]["epochs"] = 0
    bad.write_text(yaml.safe_dump(document))
    done = run_local([sys.executable, "-m", "mnist_operator", "local", "-f", str(bad)], tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f'mnist-operator: {bad}: The MnistTraining "mnist-convnet" is invalid: '
        "spec.epochs: Invalid value: 0: spec.epochs in body should be greater than or equal to 1"
    )


def test_a_missing_pushgateway_names_the_install_command(tmp_path: Path) -> None:
    done = run_local(
        [sys.executable, "-m", "mnist_operator", "local", "-f", str(SAMPLE)], tmp_path, PATH=str(tmp_path)
    )
    assert done.returncode == 2
    assert "apt-get install prometheus-pushgateway (or pass --pushgateway URL)" in done.stderr


def test_local_mode_gives_the_trainer_the_pods_environment(tmp_path: Path) -> None:
    from mnist_api import load_manifest_file, pod_env
    from mnist_operator.local import local_environment

    (training,) = load_manifest_file(SAMPLE)
    training = training.model_copy(update={"metadata": training.metadata.model_copy(update={"uid": "u"})})
    local = local_environment(training, tmp_path / "runs", "http://127.0.0.1:9091")
    pod = {
        e["name"]: e["value"]
        for e in pod_env(training, default_pushgateway_url="http://127.0.0.1:9091")
        if "value" in e
    }
    differing = {k for k in pod if pod[k] != local.get(k)}
    assert differing == {"MNIST_DATA_DIR", "MNIST_OUTPUT_DIR"}, "only the volume paths may differ"
    assert set(local) == set(pod)
    assert os.path.isabs(local["MNIST_OUTPUT_DIR"])
