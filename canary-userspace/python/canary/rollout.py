"""`Rollout`: one service's automatic rollout as a pipeline step. `setup()`
checks what a start needs, each check named; `execute()` starts the
rollout, follows it to its end (through canaryd restarts) and returns the
report with every decision and its evidence.
"""

from __future__ import annotations

import socket as sock
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional

from . import errors, wire
from .client import POLL, Client
from .reports import Decision, RolloutReport, ServiceStatus

#: The checks `setup()` makes, in order; each needs the ones before it.
CHECKS = (
    "canaryd",
    "service",
    "rollout_plan",
    "stable_backends",
    "canary_backends",
    "no_rollout_running",
)


@dataclass(frozen=True)
class SetupCheck:
    """One named check: `ok` True or False, or None when it could not be
    made because a check before it failed."""

    name: str
    ok: Optional[bool]
    detail: str

    def __str__(self) -> str:
        mark = {True: "ok", False: "FAILED", None: "not checked"}[self.ok]
        return f"{self.name:<20} {mark:<12} {self.detail}"


class SetupFailed(errors.CanaryError):
    """`SetupReport.raise_for_failure()`: the checks that failed."""

    def __init__(self, report: "SetupReport") -> None:
        names = ", ".join(c.name for c in report.failed)
        super().__init__(f"{report.service}: setup failed: {names}\n{report}")
        self.report = report


@dataclass(frozen=True)
class SetupReport:
    service: str
    checks: List[SetupCheck]

    @property
    def ok(self) -> bool:
        """Every check passed."""
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> List[SetupCheck]:
        return [c for c in self.checks if c.ok is False]

    def __getitem__(self, name: str) -> SetupCheck:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def __iter__(self) -> Iterator[SetupCheck]:
        return iter(self.checks)

    def __bool__(self) -> bool:
        return self.ok

    def raise_for_failure(self) -> "SetupReport":
        """Raises SetupFailed unless every check passed; else returns itself."""
        if not self.ok:
            raise SetupFailed(self)
        return self

    def __str__(self) -> str:
        return "\n".join(str(c) for c in self.checks)


def _host_port(addr: str) -> tuple:
    """"198.18.0.1:8080" or "[2001:db8::1]:8080"."""
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def _unreachable(backends: List[str], timeout: float) -> List[str]:
    """The backends that refuse a TCP connection from here, each with why."""
    bad = []
    for b in backends:
        try:
            with sock.create_connection(_host_port(b), timeout=timeout):
                pass
        except OSError as e:
            bad.append(f"{b}: {e.strerror or e}")
    return bad


class Rollout:
    """`service`'s `[service.rollout]` on the canaryd at `socket`.

    >>> rollout = canary.Rollout("model", socket="/run/canary/canary.sock")
    >>> rollout.setup().raise_for_failure()
    >>> report = rollout.execute(timeout=3600, on_decision=print)
    >>> report.phase   # "promoted", "rolled_back", "paused" or "aborted"
    """

    def __init__(
        self,
        service: str,
        socket: "wire.PathLike" = wire.DEFAULT_SOCKET,
        *,
        poll: float = POLL,
        connect_timeout: float = 2.0,
        client: Optional[Client] = None,
    ) -> None:
        self.service = service
        self.client = client if client is not None else Client(socket)
        self.poll = poll
        self.connect_timeout = connect_timeout

    def setup(self) -> SetupReport:
        """Checks, without changing anything, that a start can work:
        canaryd answers, the service exists, it has a [service.rollout],
        every stable and canary backend accepts a TCP connection from this
        host, and no rollout of it is running or paused."""
        checks: List[SetupCheck] = []

        def done(name: str, ok: bool, detail: str) -> None:
            checks.append(SetupCheck(name, ok, detail))

        def finish(why: str) -> SetupReport:
            made = {c.name for c in checks}
            checks.extend(SetupCheck(n, None, why) for n in CHECKS if n not in made)
            return SetupReport(self.service, checks)

        try:
            v = self.client.version()
        except errors.CanaryError as e:
            done("canaryd", False, str(e))
            return finish("canaryd does not answer")
        done("canaryd", True, f"canaryd {v.version}, api {v.api_version} at {self.client.socket}")

        try:
            status = self.client.status()
        except errors.CanaryError as e:
            done("service", False, str(e))
            return finish("no status")
        svc: Optional[ServiceStatus] = status.service(self.service)
        if svc is None:
            have = ", ".join(s.name for s in status.services) or "none"
            done("service", False, f"no service {self.service!r}; this daemon has: {have}")
            return finish("no such service")
        done("service", True, f"{svc.listen}/{svc.protocol}, canary weight {svc.weight_bp / 100:.2f}%")

        report: Optional[RolloutReport] = None
        never_started = False
        try:
            report = self.client.rollout_status(self.service)
            done("rollout_plan", True, "configured")
        except errors.RolloutNotConfigured as e:
            done("rollout_plan", False, e.message)
        except errors.RolloutConflict:
            # A plan, never started.
            never_started = True
            done("rollout_plan", True, "configured; no rollout started yet")
        except errors.CanaryError as e:
            done("rollout_plan", False, str(e))

        for name, version in (("stable_backends", svc.stable), ("canary_backends", svc.canary)):
            if svc.protocol != "tcp":
                checks.append(SetupCheck(name, None, f"{svc.protocol}: only TCP backends are checked"))
                continue
            if not version.backends:
                done(name, False, "no backends")
                continue
            bad = _unreachable(version.backends, self.connect_timeout)
            if bad:
                done(name, False, "; ".join(bad))
            else:
                done(name, True, f"{', '.join(version.backends)} accept connections")

        if report is not None and not report.over:
            done("no_rollout_running", False, f"a rollout is {report.phase} at step {report.step + 1}/{len(report.steps_bp)}")
        elif report is not None:
            done("no_rollout_running", True, f"the last one ended {report.phase}")
        elif never_started:
            done("no_rollout_running", True, "none started")
        return finish("no rollout plan")

    def start(self) -> RolloutReport:
        return self.client.rollout(self.service, "start")

    def execute(
        self,
        timeout: Optional[float] = 3600.0,
        on_decision: Optional[Callable[[Decision], Any]] = None,
    ) -> RolloutReport:
        """Starts the rollout and waits until it stops running; its report.
        `on_decision` sees each decision as it is taken. While canaryd is
        gone (killed, restarting) the wait asks again until `timeout`
        seconds from the start; past it, StillRunning (the rollout goes on)."""
        started = time.monotonic()
        self.start()
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return self.client.wait(self.service, left, on_decision, self.poll)

    def wait(self, timeout: Optional[float] = 3600.0, on_decision: Optional[Callable[[Decision], Any]] = None) -> RolloutReport:
        """`execute` for a rollout already started."""
        return self.client.wait(self.service, timeout, on_decision, self.poll)

    def status(self) -> RolloutReport:
        return self.client.rollout_status(self.service)

    def watch(self, timeout: Optional[float] = None) -> Iterator[Decision]:
        return self.client.watch(self.service, timeout, self.poll)

    def pause(self) -> RolloutReport:
        return self.client.rollout(self.service, "pause")

    def resume(self) -> RolloutReport:
        return self.client.rollout(self.service, "resume")

    def promote(self) -> RolloutReport:
        return self.client.rollout(self.service, "promote")

    def abort(self) -> RolloutReport:
        return self.client.rollout(self.service, "abort")

    def rollback(self) -> RolloutReport:
        return self.client.rollback(self.service)
