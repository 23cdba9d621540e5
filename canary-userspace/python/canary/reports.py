"""The answers as typed values: what `status`, `set-weight`, `reload`,
`version` and the rollout commands return (docs/API.md has every field).
Each keeps the daemon's object as `raw`, fields this client does not know
included, so a newer daemon's additions are never lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

Json = Dict[str, Any]


def _bp(obj: Json, bp_key: str, percent_key: str) -> Optional[int]:
    """A weight in basis points: the `*_bp` field, else (an older daemon)
    the deprecated percent one."""
    if obj.get(bp_key) is not None:
        return int(obj[bp_key])
    if obj.get(percent_key) is not None:
        return int(round(float(obj[percent_key]) * 100))
    return None


def percent(weight_bp: int) -> str:
    """A weight as people read it: `12.50%`."""
    return f"{weight_bp / 100:.2f}%"


@dataclass(frozen=True)
class Need:
    """Canary evidence an inconclusive check needs at this step, and what it has."""

    needed: int
    got: int


@dataclass(frozen=True)
class Check:
    """One check's result in one interval: `error_rate`, `error_ratio`,
    `p99_ms`, `p99_ratio` or `gate:NAME`."""

    name: str
    #: The point estimate; None without data.
    value: Optional[float]
    #: "pass", "fail" or "inconclusive".
    verdict: str
    #: The bounds and threshold behind the verdict.
    detail: str
    needs: Optional[Need]
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, obj: Json) -> "Check":
        needs = obj.get("needs")
        return cls(
            name=obj["name"],
            value=obj.get("value"),
            verdict=obj["verdict"],
            detail=obj.get("detail", ""),
            needs=Need(int(needs["needed"]), int(needs["got"])) if needs else None,
            raw=obj,
        )


@dataclass(frozen=True)
class Decision:
    """One interval's decision with its evidence, as `rollout status --json`
    has it in `history`."""

    look: int
    at_unix_ms: int
    step: int
    weight_bp: int
    #: Attempts in the interval, [stable, canary].
    interval_attempts: Tuple[int, int]
    #: "pass", "fail" or "inconclusive".
    verdict: str
    #: "hold", "step_up", "rollback", "promote" or "pause".
    action: str
    #: With "step_up": the step moved to (an index into the plan's steps).
    action_step: Optional[int]
    checks: List[Check]
    reason: str
    dry_run: bool
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, obj: Json) -> "Decision":
        action = obj.get("action") or {}
        attempts = obj.get("interval_attempts") or [0, 0]
        return cls(
            look=int(obj["look"]),
            at_unix_ms=int(obj["at_unix_ms"]),
            step=int(obj["step"]),
            weight_bp=_bp(obj, "weight_bp", "weight_percent") or 0,
            interval_attempts=(int(attempts[0]), int(attempts[1])),
            verdict=obj["verdict"],
            action=action.get("action", ""),
            action_step=action.get("step"),
            checks=[Check.from_json(c) for c in obj.get("checks", [])],
            reason=obj.get("reason", ""),
            dry_run=bool(obj.get("dry_run", False)),
            raw=obj,
        )

    def __str__(self) -> str:
        dry = " (dry-run)" if self.dry_run else ""
        return f"look {self.look} at {percent(self.weight_bp)}: {self.verdict}, {self.action}: {self.reason}{dry}"


@dataclass(frozen=True)
class RolloutReport:
    """A rollout's plan, state and every decision kept (the last 100)."""

    service: str
    #: "running", "paused", "rolled_back", "promoted" or "aborted".
    phase: str
    #: Why it is paused or over.
    reason: str
    mode: str
    on_rollback: str
    step: int
    steps_bp: List[int]
    #: The canary weight the kernel uses now.
    weight_bp: int
    observed_canary_share: Optional[float]
    interval_ms: int
    looks: int
    failed: int
    failed_checks_limit: int
    inconclusive_streak: int
    max_inconclusive: int
    started_unix_ms: int
    next_at_unix_ms: int
    #: Oldest first: `history` on the wire.
    decisions: List[Decision]
    rollbacks: int
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, obj: Json) -> "RolloutReport":
        steps = obj.get("steps_bp")
        if steps is None:
            steps = [int(round(p * 100)) for p in obj.get("steps_percent", [])]
        return cls(
            service=obj["service"],
            phase=obj["phase"],
            reason=obj.get("reason", ""),
            mode=obj.get("mode", ""),
            on_rollback=obj.get("on_rollback", ""),
            step=int(obj.get("step", 0)),
            steps_bp=[int(s) for s in steps],
            weight_bp=_bp(obj, "weight_bp", "weight_percent") or 0,
            observed_canary_share=obj.get("observed_canary_share"),
            interval_ms=int(obj.get("interval_ms", 0)),
            looks=int(obj.get("looks", 0)),
            failed=int(obj.get("failed", 0)),
            failed_checks_limit=int(obj.get("failed_checks_limit", 0)),
            inconclusive_streak=int(obj.get("inconclusive_streak", 0)),
            max_inconclusive=int(obj.get("max_inconclusive", 0)),
            started_unix_ms=int(obj.get("started_unix_ms", 0)),
            next_at_unix_ms=int(obj.get("next_at_unix_ms", 0)),
            decisions=[Decision.from_json(d) for d in obj.get("history", [])],
            rollbacks=int(obj.get("rollbacks", 0)),
            raw=obj,
        )

    @property
    def running(self) -> bool:
        """Still judging: not paused and not over."""
        return self.phase == "running"

    @property
    def over(self) -> bool:
        """Promoted, rolled back or aborted."""
        return self.phase in ("promoted", "rolled_back", "aborted")

    def __str__(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"{self.service}: rollout {self.phase}{why} (step {self.step + 1}/{len(self.steps_bp)}, weight {percent(self.weight_bp)}, {self.looks} looks)"


@dataclass(frozen=True)
class RolloutLine:
    """A service's rollout in one line, as status has it."""

    phase: str
    step: int
    steps: int
    looks: int
    reason: str


@dataclass(frozen=True)
class VersionStatus:
    """One version (stable or canary) of a service: its backends and
    counters since they started."""

    backends: List[str]
    new_flows: int
    active_flows: int
    requests: int
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, obj: Json) -> "VersionStatus":
        return cls(
            backends=list(obj.get("backends", [])),
            new_flows=int(obj.get("new_flows", 0)),
            active_flows=int(obj.get("active_flows", 0)),
            requests=int((obj.get("signals") or {}).get("requests", 0)),
            raw=obj,
        )


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    #: "ip:port"
    listen: str
    protocol: str
    affinity: str
    weight_bp: int
    #: "config" or "runtime".
    weight_source: str
    config_weight_bp: Optional[int]
    stable: VersionStatus
    canary: VersionStatus
    problem: Optional[str]
    rollout: Optional[RolloutLine]
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, obj: Json) -> "ServiceStatus":
        line = obj.get("rollout")
        return cls(
            name=obj["name"],
            listen=obj["listen"],
            protocol=obj.get("protocol", ""),
            affinity=obj.get("affinity", ""),
            weight_bp=_bp(obj, "weight_bp", "weight_percent") or 0,
            weight_source=obj.get("weight_source", "config"),
            config_weight_bp=_bp(obj, "config_weight_bp", "config_weight_percent"),
            stable=VersionStatus.from_json(obj.get("stable", {})),
            canary=VersionStatus.from_json(obj.get("canary", {})),
            problem=obj.get("problem"),
            rollout=RolloutLine(
                phase=line["phase"],
                step=int(line["step"]),
                steps=int(line["steps"]),
                looks=int(line["looks"]),
                reason=line.get("reason", ""),
            )
            if line
            else None,
            raw=obj,
        )


@dataclass(frozen=True)
class Status:
    """The daemon and every service."""

    version: str
    api_version: int
    pid: int
    config: str
    #: As the daemon sends them (docs/API.md, `status`).
    interfaces: List[Json]
    services: List[ServiceStatus]
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, obj: Json) -> "Status":
        daemon = obj.get("daemon", {})
        return cls(
            version=daemon.get("version", ""),
            api_version=int(daemon.get("api_version", 0)),
            pid=int(daemon.get("pid", 0)),
            config=daemon.get("config", ""),
            interfaces=list(daemon.get("interfaces", [])),
            services=[ServiceStatus.from_json(s) for s in obj.get("services", [])],
            raw=obj,
        )

    def service(self, name: str) -> Optional[ServiceStatus]:
        return next((s for s in self.services if s.name == name), None)


@dataclass(frozen=True)
class WeightSet:
    """What the kernel uses after a set-weight."""

    service: str
    previous_weight_bp: int
    weight_bp: int
    warnings: List[str]
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, obj: Json) -> "WeightSet":
        return cls(
            service=obj["service"],
            previous_weight_bp=_bp(obj, "previous_weight_bp", "previous_percent") or 0,
            weight_bp=_bp(obj, "weight_bp", "percent") or 0,
            warnings=list(obj.get("warnings", [])),
            raw=obj,
        )


@dataclass(frozen=True)
class Reloaded:
    """What a reload changed, by service name."""

    added: List[str]
    updated: List[str]
    removed: List[str]
    unchanged: List[str]
    warnings: List[str]
    #: `{service, field, old, new}` each.
    changes: List[Json]
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, obj: Json) -> "Reloaded":
        return cls(
            added=list(obj.get("added", [])),
            updated=list(obj.get("updated", [])),
            removed=list(obj.get("removed", [])),
            unchanged=list(obj.get("unchanged", [])),
            warnings=list(obj.get("warnings", [])),
            changes=list(obj.get("changes", [])),
            raw=obj,
        )


@dataclass(frozen=True)
class Version:
    version: str
    api_version: int
