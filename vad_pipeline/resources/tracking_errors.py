"""A tracking server that cannot be reached is one clear error naming it, not a page of retries.

`GuardedClient` wraps an `mlflow.tracking.MlflowClient`: every call goes through unchanged, and a
call that failed because the server did not answer (connection refused, timed out, 5xx after the
client's own bounded retries: MLFLOW_HTTP_REQUEST_MAX_RETRIES) raises `TrackingUnavailableError`
with the tracking URI, the call and the reason on one line. Other MLflow errors (a bad parameter,
an existing name) pass through as they are, so callers that expect them keep working.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_UNREACHABLE = re.compile(
    r"Max retries exceeded|Connection refused|ConnectionError|NewConnectionError|timed out|Read timed out|"
    r"RemoteDisconnected|Connection aborted|too many 5\d\d error responses",
    re.I,
)
_REASON = re.compile(
    r"(Connection refused|timed out|Connection aborted|RemoteDisconnected|too many 5\d\d error responses)"
)


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking server did not answer; the message names its URI and the call."""


def _unreachable(exc: BaseException) -> bool:
    try:
        import requests
    except ImportError:  # pragma: no cover - mlflow depends on requests
        pass
    else:
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return True
    return bool(_UNREACHABLE.search(str(exc)))


class GuardedClient:
    """`MlflowClient` with unreachable-server failures turned into `TrackingUnavailableError`."""

    def __init__(self, client: Any, uri: str) -> None:
        self._client, self._uri = client, uri

    @property
    def tracking_uri(self) -> str:
        return self._uri

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        return self._guard(name, attr)

    def _guard(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return call(*args, **kwargs)
            except TrackingUnavailableError:
                raise
            except Exception as exc:
                if not _unreachable(exc):
                    raise
                found = _REASON.search(str(exc))
                reason = found.group(1) if found else type(exc).__name__
                raise TrackingUnavailableError(
                    f"MLflow tracking server {self._uri} is unreachable ({reason}) during {name}"
                ) from exc

        return guarded


__all__ = ["GuardedClient", "TrackingUnavailableError"]
