"""A client of canaryd's control socket: run a canary rollout from a
training or deployment pipeline.

    import canary
    rollout = canary.Rollout("model", socket="/run/canary/canary.sock")
    rollout.setup().raise_for_failure()
    report = rollout.execute(timeout=3600, on_decision=print)
    if report.phase != "promoted":
        raise SystemExit(f"canary not promoted: {report.reason}")

The protocol, every request, answer and error code: docs/API.md.
Standard library only; Python 3.9 or later.
"""

from .client import Client, weight_bp_of
from .errors import (
    BadRequest,
    CanaryError,
    ConnectionLost,
    DaemonError,
    DataPath,
    FailedAndReverted,
    InvalidConfig,
    InvalidWeight,
    NotAFleet,
    ProtocolError,
    RestartRequired,
    RevertFailed,
    RolloutConflict,
    RolloutNotConfigured,
    StillRunning,
    StoreUnavailable,
    Unavailable,
    UnknownService,
    Unreachable,
)
from .reports import (
    Check,
    Decision,
    Need,
    Reloaded,
    RolloutLine,
    RolloutReport,
    ServiceStatus,
    Status,
    Version,
    VersionStatus,
    WeightSet,
)
from .rollout import CHECKS, Rollout, SetupCheck, SetupFailed, SetupReport
from .wire import DEFAULT_SOCKET

__version__ = "0.1.0"

__all__ = [
    "BadRequest",
    "CHECKS",
    "CanaryError",
    "Check",
    "Client",
    "ConnectionLost",
    "DEFAULT_SOCKET",
    "DaemonError",
    "DataPath",
    "Decision",
    "FailedAndReverted",
    "InvalidConfig",
    "InvalidWeight",
    "Need",
    "NotAFleet",
    "ProtocolError",
    "Reloaded",
    "RestartRequired",
    "RevertFailed",
    "Rollout",
    "RolloutConflict",
    "RolloutLine",
    "RolloutNotConfigured",
    "RolloutReport",
    "ServiceStatus",
    "SetupCheck",
    "SetupFailed",
    "SetupReport",
    "Status",
    "StillRunning",
    "StoreUnavailable",
    "Unavailable",
    "UnknownService",
    "Unreachable",
    "Version",
    "VersionStatus",
    "WeightSet",
    "weight_bp_of",
]
