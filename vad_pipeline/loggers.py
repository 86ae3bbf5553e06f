"""`brief`: a console logger that prints one line per event, for `vad demo` and other terminals.

Dagster's default console logger prints a failed step's whole stack trace, twice (the step and
the run), which buries the one line that says what to fix; the event log (the UI) keeps every
detail either way. `brief` prints the first line of each message and leaves step and run
failures to the caller (`vad demo` prints one line naming the step and its `Failure`'s
description, and exits non-zero). Runs use it when their run
config names it (`job_run_config(..., log_level=...)` does); otherwise Dagster's console logger
stays the default.
"""

from __future__ import annotations

import logging
import sys

from dagster import DagsterEventType, Field, InitLoggerContext, logger

# Failure events the caller reports itself, in one line with the step's `Failure` description.
# (Compared as enum members: RUN_FAILURE's string value is the old "PIPELINE_FAILURE".)
_REPORTED_BY_CALLER = (DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE)


class _FirstLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event") if isinstance(meta, dict) else None
        if getattr(event, "event_type", None) in _REPORTED_BY_CALLER or " - Dependencies for step " in message:
            return False
        record.msg, record.args = message.split("\n", 1)[0].rstrip(), ()
        return True


@logger(
    {"log_level": Field(str, is_required=False, default_value="WARNING", description="Python logging level name")},
    description="One line per event on stderr (a failed step's message, not its stack trace).",
)
def brief_console_logger(init_context: InitLoggerContext) -> logging.Logger:
    level = str(init_context.logger_config["log_level"]).upper()
    log = logging.Logger("vad.brief", level=logging.getLevelName(level))
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_FirstLine())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    return log


__all__ = ["brief_console_logger"]
