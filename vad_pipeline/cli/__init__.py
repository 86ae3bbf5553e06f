"""The `vad` command: one argparse subcommand per module of this package.

    vad demo [--dataset NAME]       materialize every asset, print the figures   (cli/demo.py)
    vad ui                          Dagster UI + daemon and MLflow UI             (cli/ui.py)
    vad report [--dataset NAME]     rebuild a report from the stored tables       (cli/report.py)
    vad score PATH --model M --out D  score one video: scores, alerts, overlay MP4  (cli/score.py)
    vad score-stream URL --model M --out D  watch a stream: alerts as they close  (cli/score_stream.py)

A command is a module with `add_parser(subparsers)`, which registers its parser and sets
`run(args) -> exit code` as its default; list it in `COMMANDS`. A user error (`VADInputError`:
a bad spec, a missing table, a Dagster run that failed on one) prints one line naming the problem
and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from vad_core.errors import VADInputError


def _commands() -> tuple[ModuleType, ...]:
    from vad_pipeline.cli import demo, report, score, score_stream, ui

    return (demo, ui, report, score, score_stream)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vad", description="Unsupervised video anomaly detection pipeline.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _commands():
        module.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except VADInputError as exc:
        # One line, whatever the message holds (advice on further lines is kept, joined).
        print(f"vad {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vad {args.command}: interrupted", file=sys.stderr)
        return 130


__all__ = ["build_parser", "main"]
