"""Why a request got no usable answer: one exception class per error code
the daemon sends (protocol.json's `error_codes`, docs/API.md), plus the
client's own (socket unreachable, unreadable answer, rollout still running).
"""

from __future__ import annotations

import errno as _errno
from typing import Dict, Optional, Type


class CanaryError(Exception):
    """Every error this package raises."""

    #: The daemon's error code; None for the client's own errors.
    code: Optional[str] = None
    #: What `canaryctl` exits with for the same failure.
    exit_code: int = 1


class Unreachable(CanaryError):
    """Nothing answers on the socket: canaryd is not running, the path is
    wrong, or the socket (0660) is not ours to open. canaryctl exits 3."""

    exit_code = 3

    def __init__(self, socket: str, reason: str, errno: Optional[int] = None) -> None:
        hint = (
            "the socket is 0660: run as root or as a member of its group"
            if errno in (_errno.EACCES, _errno.EPERM)
            else "is canaryd running? pass its socket with socket="
        )
        super().__init__(f"cannot reach canaryd at {socket}: {reason} ({hint})")
        self.socket = socket
        self.reason = reason
        self.errno = errno

    @property
    def denied(self) -> bool:
        """Not ours to open: waiting will not help."""
        return self.errno in (_errno.EACCES, _errno.EPERM)


class ConnectionLost(CanaryError):
    """The connection broke or closed before the answer came: canaryd died
    or restarted mid-request."""

    def __init__(self, socket: str, reason: str) -> None:
        super().__init__(f"talking to canaryd at {socket}: {reason}")
        self.socket = socket
        self.reason = reason


class ProtocolError(CanaryError):
    """An answer this client cannot read."""

    def __init__(self, socket: str, detail: str) -> None:
        super().__init__(f"canaryd at {socket} sent a response this client cannot read: {detail}")
        self.socket = socket
        self.detail = detail


class StillRunning(CanaryError):
    """The rollout was still running when the wait ended; it goes on."""

    exit_code = 13

    def __init__(self, service: str, after: float) -> None:
        super().__init__(f"the rollout of {service} was still running after {after:.0f} s; it goes on")
        self.service = service
        self.after = after


class DaemonError(CanaryError):
    """canaryd refused the request; `code` says why (docs/API.md)."""

    def __init__(self, message: str, code: Optional[str] = None) -> None:
        super().__init__(f"canaryd refused: {message}")
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(DaemonError):
    """Not a request this daemon understands (bad JSON, too long, an
    unknown field)."""

    code = "bad_request"
    exit_code = 4


class InvalidWeight(DaemonError):
    """The weight is not 0 to 10000 basis points."""

    code = "invalid_weight"
    exit_code = 4


class UnknownService(DaemonError):
    """No service of that name."""

    code = "unknown_service"
    exit_code = 4


class InvalidConfig(DaemonError):
    """The config file has errors; nothing changed."""

    code = "invalid_config"
    exit_code = 4


class RestartRequired(DaemonError):
    """The config changes a key only a restart applies; nothing changed."""

    code = "restart_required"
    exit_code = 4


class FailedAndReverted(DaemonError):
    """Applying failed and was undone: what ran before still runs."""

    code = "failed_and_reverted"
    exit_code = 5


class RevertFailed(DaemonError):
    """Applying failed and undoing it failed too: look at status and act."""

    code = "revert_failed"
    exit_code = 6


class DataPath(DaemonError):
    """Reading or writing the data path failed (a map, a program, a pin,
    the state file); the message has the kernel's error."""

    code = "data_path"
    exit_code = 5


class Unavailable(DaemonError):
    """canaryd is shutting down."""

    code = "unavailable"
    exit_code = 5


class RolloutNotConfigured(DaemonError):
    """The service has no `[service.rollout]`."""

    code = "rollout_not_configured"
    exit_code = 4


class RolloutConflict(DaemonError):
    """The rollout is not in a state for that command (already running,
    over, not paused, never started, or moved on meanwhile)."""

    code = "rollout_conflict"
    exit_code = 4


class StoreUnavailable(DaemonError):
    """A fleet command, and the fleet's store (etcd) did not answer."""

    code = "store_unavailable"
    exit_code = 5


class NotAFleet(DaemonError):
    """A fleet command to a canaryd without `[fleet]`."""

    code = "not_a_fleet"
    exit_code = 4


#: Every code the daemon sends, to its exception. protocol.json lists the
#: same codes; tests/unit/test_protocol.py checks that they agree.
BY_CODE: Dict[str, Type[DaemonError]] = {
    cls.code: cls  # type: ignore[misc]
    for cls in (
        BadRequest,
        InvalidWeight,
        UnknownService,
        InvalidConfig,
        RestartRequired,
        FailedAndReverted,
        RevertFailed,
        DataPath,
        Unavailable,
        RolloutNotConfigured,
        RolloutConflict,
        StoreUnavailable,
        NotAFleet,
    )
}


def from_answer(code: Optional[str], message: str) -> DaemonError:
    """The exception for a refusal. A code this client does not know (a
    newer daemon's) is a plain DaemonError carrying it; no code at all (an
    older daemon) reads as bad_request, as the Rust client reads it."""
    if code is None:
        return BadRequest(message)
    cls = BY_CODE.get(code)
    if cls is None:
        return DaemonError(message, code)
    return cls(message)
