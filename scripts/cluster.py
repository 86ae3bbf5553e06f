"""A cluster on this machine for the cluster profile: `make cluster-up`, `make cluster-demo`, `make cluster-down`.

    python scripts/cluster.py up [--cpu-workers 2] [--gpu-workers N] [--feature-runs N]
    python scripts/cluster.py status           # what runs, where (URLs, pids, process groups)
    python scripts/cluster.py run -- CMD ...   # CMD with the cluster's variables (VAD_PROFILE=cluster, ...)
    python scripts/cluster.py down             # stop exactly the recorded process groups

Every server listens on a free 127.0.0.1 port; PostgreSQL and Redis come from Debian packages
(installed with apt-get when missing), the rest from the project's virtual environment. State and
logs live in `<VAD_HOME>/cluster` (`--root`); `cluster.env` there can be sourced by a shell.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vad_core.errors import VADInputError  # noqa: E402
from vad_pipeline.cluster.lifecycle import Cluster, ClusterSpec  # noqa: E402
from vad_pipeline.cluster.processes import group_alive  # noqa: E402


def up(cluster: Cluster, args: argparse.Namespace) -> int:
    print(f"== cluster up in {cluster.root}")
    cluster.up(ClusterSpec(cpu_workers=args.cpu_workers, gpu_workers=args.gpu_workers, feature_runs=args.feature_runs))
    print("== URLs")
    for name, url in cluster.urls().items():
        print(f"   {name:<12} {url}")
    print(f"== use it: make cluster-demo, or `source {cluster.env_file}` then any vad command; make cluster-down")
    return 0


def status(cluster: Cluster, _args: argparse.Namespace) -> int:
    if not cluster.table.processes:
        print(f"no cluster at {cluster.root}")
        return 1
    for name, proc in cluster.table.processes.items():
        state = "running" if group_alive(proc.pgid) else "GONE"
        print(f"   {name:<14} {state:<8} pid {proc.pid:<7} pgid {proc.pgid:<7} {proc.url or proc.port or ''}")
    return 0


def run(cluster: Cluster, args: argparse.Namespace) -> int:
    command = [c for c in args.command if c != "--"]
    if not command:
        raise VADInputError("run: give a command, e.g. scripts/cluster.py run -- .venv/bin/vad demo")
    os.execvpe(command[0], command, {**os.environ, **cluster.env()})
    return 127  # not reached


def down(cluster: Cluster, _args: argparse.Namespace) -> int:
    if not cluster.table.processes:
        print(f"no cluster at {cluster.root}: nothing to stop")
        return 0
    left = cluster.down()
    if left:
        print(f"still running: {left} (see {cluster.state_file})", file=sys.stderr)
        return 1
    print("== cluster down: every recorded process group is gone")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="cluster folder (default <VAD_HOME>/cluster)")
    commands = parser.add_subparsers(dest="action", required=True)
    p_up = commands.add_parser("up", help="start every server and wait until each answers")
    p_up.add_argument("--cpu-workers", type=int, default=int(os.environ.get("VAD_CPU_WORKERS", "2")))
    p_up.add_argument("--gpu-workers", type=int, default=None, help="default: one per CUDA device")
    p_up.add_argument("--feature-runs", type=int, default=None, help="feature runs at once (default 2 per worker)")
    p_up.set_defaults(func=up)
    commands.add_parser("status", help="the recorded servers").set_defaults(func=status)
    p_run = commands.add_parser("run", help="run a command with the cluster's variables")
    p_run.add_argument("command", nargs=argparse.REMAINDER)
    p_run.set_defaults(func=run)
    commands.add_parser("down", help="stop every recorded server").set_defaults(func=down)
    args = parser.parse_args(argv)
    try:
        return int(args.func(Cluster(args.root), args))
    except VADInputError as exc:
        print(f"cluster {args.action}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
