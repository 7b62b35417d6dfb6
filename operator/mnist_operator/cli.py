"""The ``mnist-operator`` command line: ``local`` (train here, no cluster) and ``run`` (the operator).

The help texts are the user's documentation (docs/cli.md is generated from this parser), so they are plain
text, never this docstring's markup."""

import argparse
import asyncio
import contextlib
import io
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

from mnist_api import ManifestError, MnistTraining, load_manifest_file, validate_resource
from mnist_api.loader import load_value

from .config import Config, ConfigError
from .local import LocalRunError, as_local_run, local_environment, local_pushgateway, train_locally


def apply_overrides(resource: MnistTraining, assignments: list[str]) -> MnistTraining:
    """``--set spec.epochs=1``: values are YAML read as kubectl reads a manifest, so ``1e-3`` is a number,
    and booleans and ``{a: b}`` maps work."""
    document: dict[str, Any] = resource.model_dump(mode="json", by_alias=True, exclude_none=True)
    for assignment in assignments:
        path, separator, raw = assignment.partition("=")
        if not separator or not path:
            raise ManifestError(f"--set {assignment}: expected PATH=VALUE, e.g. spec.epochs=1")
        *parents, leaf = path.split(".")
        node = document
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = load_value(raw, source=f"--set {assignment}")
    return validate_resource(document)


def claim_folders(assignments: list[str]) -> dict[str, Path]:
    """``--claim models=/data/models``: the folders local mode reads a spec's claims from."""
    folders: dict[str, Path] = {}
    for assignment in assignments:
        name, separator, folder = assignment.partition("=")
        if not separator or not name or not folder:
            raise ManifestError(f"--claim {assignment}: expected NAME=DIR, e.g. models=./models")
        folders[name] = Path(folder)
    return folders


def local_command(args: argparse.Namespace) -> int:
    trainings = [apply_overrides(t, args.set) for t in load_manifest_file(args.filename)]
    claim_dirs = claim_folders(args.claim)
    # --quiet keeps stdout to each training's final row and result lines: the notices (the Pushgateway's
    # address, a previous run moved aside) go nowhere. Errors still go to stderr, with exit code 2.
    notices: TextIO = io.StringIO() if args.quiet else sys.stdout
    with contextlib.ExitStack() as stack:
        url = args.pushgateway
        if url is None and not args.no_pushgateway:
            url = stack.enter_context(local_pushgateway())
            notices.write(
                f"mnist-operator: Pushgateway at {url} (curl -s {url}/metrics | grep gangplank_train)\n"
            )
        for manifest_training in trainings:
            runs = Path(args.runs_dir)
            training = as_local_run(manifest_training, runs, notices)
            env = local_environment(training, runs, url, claim_dirs)
            log = runs / training.metadata.namespace / training.metadata.name / "trainer.log"
            code = train_locally(
                training,
                env,
                base_environ=os.environ,
                pushgateway_url=url,
                log_path=log,
                out=sys.stdout,
                show_logs=args.logs,
                quiet=args.quiet,
            )
            if code != 0:
                return code
    return 0


def run_command(args: argparse.Namespace) -> int:
    """Run the operator: kopf with our handlers, once this process leads (see leader.py)."""
    return asyncio.run(serve(Config.from_env(os.environ), args.liveness, verbose=args.verbose))


async def serve(config: Config, liveness: str | None, *, verbose: bool = False) -> int:
    """Stand by until this process holds the Lease (serving the liveness probe meanwhile), then run kopf
    until it stops or another replica takes the Lease. Standalone kopf: the Lease, not kopf's peering,
    keeps it to one operator at a time. Without a Lease namespace (a developer's run outside a cluster)
    there is no election."""
    import socket

    import kopf

    from . import handlers  # noqa: F401 - registers the handlers with kopf
    from .kube import Kube, make_api_client
    from .leader import LeaderElection, new_identity

    kopf.configure(verbose=verbose)
    stop = asyncio.Event()
    election, keeping = None, None
    if config.leader_election_namespace:
        election = LeaderElection(
            Kube(make_api_client()),
            config.leader_election_namespace,
            config.leader_election_lease,
            new_identity(socket.gethostname()),
            duration_seconds=config.lease_duration_seconds,
        )
        async with standby_probe(liveness):
            await election.acquire()
        # keep() returns only when another replica has taken the Lease: then kopf stops.
        keeping = asyncio.create_task(election.keep())
        keeping.add_done_callback(lambda _: stop.set())
    lost = False
    try:
        await kopf.operator(
            standalone=True,
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            liveness_endpoint=liveness,
            stop_flag=stop,
        )
    finally:
        if election is not None and keeping is not None:
            lost = keeping.done()
            if not lost:
                keeping.cancel()
                await election.release()
    return 1 if lost else 0


@contextlib.asynccontextmanager
async def standby_probe(liveness: str | None) -> AsyncIterator[None]:
    """Answer the liveness probe while standing by (kopf serves it only once it runs): a standby is alive."""
    if not liveness:
        yield
        return
    import urllib.parse

    from aiohttp import web

    async def alive(_: web.Request) -> web.Response:
        return web.json_response({"standby": True})

    parts = urllib.parse.urlsplit(liveness)
    app = web.Application()
    app.add_routes([web.get(parts.path or "/", alive)])
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, parts.hostname or "127.0.0.1", parts.port or 80).start()
    try:
        yield
    finally:
        await runner.cleanup()


DESCRIPTION = """\
Train MNIST-family models from MnistTraining manifests: on a Kubernetes
cluster, where the operator (run) turns each training into a Job, or here
with no cluster (local)."""

LOCAL_DESCRIPTION = """\
Train each MnistTraining of a manifest here, with no cluster. The manifest is
checked as the API server checks it; the trainer runs as a child process with
the environment its pod would get; the status is printed live with the columns
of kubectl get mnisttrainings -w. A run's files land in
RUNS_DIR/NAMESPACE/NAME/. Ctrl-C stops the trainer cleanly and the same
command resumes from the last finished epoch; a changed spec starts a new run.
The exit code is the trainer's (docs/trainer.md)."""

LOCAL_EXAMPLES = """\
examples:
  mnist-operator local -f manifests/samples/mnist-training.yaml
  mnist-operator local -f training.yaml --set spec.epochs=1 --set spec.model=mlp
  mnist-operator local -f training.yaml --no-pushgateway --quiet"""

RUN_DESCRIPTION = """\
Run the operator: watch MnistTraining resources and run each as a batch/v1
Job, with its status kept up to date. Settings come from MNIST_OPERATOR_*
environment variables (docs/operator.md). With
MNIST_OPERATOR_LEADER_ELECTION_NAMESPACE set, replicas elect one leader
through a Lease and the others stand by."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs keep their line breaks (the examples' lines must not be joined); option
    help is wrapped to the terminal as usual, with the default appended where it says something."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = shown_default(action)
        if action.help is None or default is None:
            return action.help
        return f"{action.help} (default: {default.replace('%', '%%')})"  # help is %-formatted next


def shown_default(action: argparse.Action) -> str | None:
    """An option's default as help and docs/cli.md show it; None when it says nothing (a flag that is off,
    an option that does nothing unless given, a required one)."""
    if action.required or action.default in (None, False, [], argparse.SUPPRESS):
        return None
    return str(action.default)


def build_parser() -> argparse.ArgumentParser:
    # Help strings are plain text: --help prints them as they are (a test refuses RST or Markdown markup),
    # and docs/cli.md is generated from them (python -m mnist_operator.cli_reference).
    parser = argparse.ArgumentParser(
        prog="mnist-operator", description=DESCRIPTION, formatter_class=HelpFormatter
    )
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        title="commands",
        metavar="COMMAND",
        help="mnist-operator COMMAND --help describes one",
    )
    local = commands.add_parser(
        "local",
        help="train a manifest's MnistTrainings here, with no cluster",
        description=LOCAL_DESCRIPTION,
        epilog=LOCAL_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    local.add_argument("-f", "--filename", required=True, help="manifest file (as for kubectl apply -f)")
    local.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a field, e.g. spec.epochs=1; the value is YAML, as in a manifest (repeatable)",
    )
    local.add_argument("--runs-dir", default="runs", help="where the runs' files and the data cache go")
    local.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="the local folder that stands for a claim the spec reads from (baseModel, dataset, predict); "
        "unmapped claims are RUNS_DIR/claims/NAME (repeatable)",
    )
    local.add_argument(
        "--pushgateway",
        metavar="URL",
        help="push metrics here instead of to a Pushgateway started for the run",
    )
    local.add_argument("--no-pushgateway", action="store_true", help="push no metrics (metrics.json only)")
    output = local.add_mutually_exclusive_group()
    output.add_argument("--logs", action="store_true", help="show the trainer's log under the status rows")
    output.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the final status row and the result line (for scripts; the exit code is the same)",
    )
    local.set_defaults(handler=local_command)
    run = commands.add_parser(
        "run",
        help="run the operator (settings: MNIST_OPERATOR_* variables)",
        description=RUN_DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    run.add_argument(
        "--liveness", metavar="URL", help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz"
    )
    run.add_argument("--verbose", action="store_true", help="log kopf's every step")
    run.set_defaults(handler=run_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except (ManifestError, LocalRunError, ConfigError) as error:
        print(f"mnist-operator: {error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
