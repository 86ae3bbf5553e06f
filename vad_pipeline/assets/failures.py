"""User errors end a step as a Dagster `Failure`: one line that names the problem, the rest as metadata.

A `VADInputError` (a bad spec, a missing table, an unreadable video) is the user's to fix, not
a bug: its traceback through Dagster's executor (15-200 lines) buries the one line that says
what to do. `user_errors` wraps an asset or op body so that such an error becomes
`Failure(description=<first line>, metadata={"error": <whole message>, ...})`, which the UI
shows as the step's failure and `vad demo` prints as its one-line error. Anything else (a bug)
keeps its traceback.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from dagster import Failure, MetadataValue

from vad_core.errors import VADInputError

F = TypeVar("F", bound=Callable[..., Any])


def as_failure(exc: BaseException) -> Failure:
    """The `Failure` for a user error: the message's first line, the whole message as metadata."""
    text = str(exc).strip() or type(exc).__name__
    return Failure(
        description=text.splitlines()[0],
        metadata={"error": MetadataValue.text(text), "error_type": type(exc).__name__},
    )


def user_errors(fn: F) -> F:
    """Decorate an asset/op body (under `@asset`): `VADInputError` -> `as_failure` (see the module doc).

    `functools.wraps` keeps the signature Dagster reads for the context, config and resources. A
    generator body (an asset that may yield nothing: `output_required=False`) stays a generator,
    which is how Dagster tells the two apart.
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except VADInputError as exc:
                raise as_failure(exc) from None

        return cast(F, generator)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VADInputError as exc:
            raise as_failure(exc) from None

    return cast(F, wrapper)


__all__ = ["as_failure", "user_errors"]
