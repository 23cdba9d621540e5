"""`Client`: every request of the control socket as a method (the same
requests as the Rust `api::Client`; docs/API.md), and the wait that follows
a rollout to its end through canaryd restarts.
"""

from __future__ import annotations

import os
import time
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterator, Optional, Set, Tuple

from . import errors, wire
from .reports import Decision, Reloaded, RolloutReport, Status, Version, WeightSet

#: How often a wait asks for the rollout's report, as `canaryctl --wait`.
POLL = 0.5

ACTIONS = ("start", "pause", "resume", "promote", "abort")


def weight_bp_of(percent: float) -> int:
    """A percent from 0 to 100 with at most two decimals, as basis points
    (canaryctl's rule: 12.5 is 1250)."""
    try:
        d = Decimal(str(percent))
    except InvalidOperation:
        raise ValueError(f"{percent!r} is not a percent") from None
    bp = d * 100
    if bp != bp.to_integral_value() or not 0 <= bp <= 10000:
        raise ValueError(f"weight must be a percent from 0 to 100 with at most two decimals, e.g. 12.5; found {percent}")
    return int(bp)


def _gone(e: errors.CanaryError) -> bool:
    """A failure a restarting canaryd causes: worth asking again."""
    if isinstance(e, errors.Unreachable):
        return not e.denied
    return isinstance(e, (errors.ConnectionLost, errors.Unavailable))


class Client:
    """One daemon's control socket. Each method sends one request on a new
    connection and returns the answer typed; a refusal raises the
    exception of its code (`canary.errors`)."""

    def __init__(self, socket: "wire.PathLike" = wire.DEFAULT_SOCKET, timeout: float = wire.TIMEOUT) -> None:
        self.socket = os.fspath(socket)
        self.timeout = timeout
        #: Times a wait found canaryd gone (killed, restarting) and asked again.
        self.reconnects = 0

    def call(self, request: "wire.Request") -> Any:
        """Any request as a dict; the answer's `data` as the daemon sent it."""
        return wire.call(self.socket, request, self.timeout)

    def status(self) -> Status:
        return Status.from_json(self.call({"command": "status"}))

    def set_weight(self, service: str, percent: Optional[float] = None, *, weight_bp: Optional[int] = None) -> WeightSet:
        """The canary's share of new flows, as a percent (12.5) or in basis
        points (`weight_bp=1250`): one of the two."""
        if (percent is None) == (weight_bp is None):
            raise ValueError("give a percent or weight_bp, one of the two")
        bp = weight_bp_of(percent) if percent is not None else int(weight_bp)  # type: ignore[arg-type]
        return WeightSet.from_json(self.call({"command": "set-weight", "service": service, "weight_bp": bp}))

    def reload(self) -> Reloaded:
        return Reloaded.from_json(self.call({"command": "reload"}))

    def version(self) -> Version:
        data = self.call({"command": "version"})
        return Version(version=data["version"], api_version=int(data["api_version"]))

    def rollout(self, service: str, action: str) -> RolloutReport:
        """start, pause, resume, promote or abort `service`'s rollout."""
        if action not in ACTIONS:
            raise ValueError(f"action is one of {', '.join(ACTIONS)}; found {action!r}")
        return RolloutReport.from_json(self.call({"command": "rollout", "service": service, "action": action}))

    def rollback(self, service: str) -> RolloutReport:
        """Canary weight 0 in one map write; a running rollout ends rolled back."""
        return RolloutReport.from_json(self.call({"command": "rollback", "service": service}))

    def rollout_status(self, service: str) -> RolloutReport:
        return RolloutReport.from_json(self.call({"command": "rollout-status", "service": service}))

    def fleet_status(self) -> Any:
        """The fleet's hosts, as the daemon sends them (docs/FLEET.md)."""
        return self.call({"command": "fleet-status"})

    def reports(self, service: str, timeout: Optional[float] = None, poll: float = POLL) -> Iterator[RolloutReport]:
        """`service`'s report every `poll` seconds until the rollout stops
        running (the last one yielded is not running). While canaryd is gone
        (killed, restarting, shutting down) it asks again; past `timeout`
        seconds it raises: StillRunning, or the error of a daemon still gone."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                report = self.rollout_status(service)
            except errors.CanaryError as e:
                if not _gone(e) or (deadline is not None and time.monotonic() >= deadline):
                    raise
                self.reconnects += 1
                time.sleep(poll)
                continue
            yield report
            if not report.running:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise errors.StillRunning(service, timeout or 0.0)
            time.sleep(poll)

    def watch(self, service: str, timeout: Optional[float] = None, poll: float = POLL) -> Iterator[Decision]:
        """Each new decision of `service`'s rollout, oldest first, as it is
        taken, until the rollout stops running; through canaryd restarts
        (`reports`)."""
        seen: Set[Tuple[int, int]] = set()
        for report in self.reports(service, timeout, poll):
            yield from _new(report, seen)

    def wait(
        self,
        service: str,
        timeout: Optional[float] = None,
        on_decision: Optional[Callable[[Decision], Any]] = None,
        poll: float = POLL,
    ) -> RolloutReport:
        """Blocks until the rollout stops running (promoted, rolled back,
        aborted or paused) and returns its last report; `on_decision` sees
        every new decision on the way."""
        seen: Set[Tuple[int, int]] = set()
        last = None
        for report in self.reports(service, timeout, poll):
            for d in _new(report, seen):
                if on_decision is not None:
                    on_decision(d)
            last = report
        assert last is not None
        return last

    def __repr__(self) -> str:
        return f"canary.Client({self.socket!r})"


def _new(report: RolloutReport, seen: Set[Tuple[int, int]]) -> Iterator[Decision]:
    """The report's decisions not seen before: by rollout (its start) and
    look number, as the history keeps only the latest looks."""
    for d in report.decisions:
        key = (report.started_unix_ms, d.look)
        if key not in seen:
            seen.add(key)
            yield d
