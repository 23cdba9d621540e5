"""setup() against a real canaryd: each failing check by name. The daemon
has "model" (a plan with 60 s intervals), "noplan" (no [service.rollout])
and "downcanary" (a plan, its canary backend's port closed)."""

import os

import canary

from .scenario import SOCKET, only_in

pytestmark = only_in("setup")


def failed(checks):
    print(f"\n{checks}")
    return [c.name for c in checks.failed]


def test_no_daemon(tmp_path):
    checks = canary.Rollout("model", socket=str(tmp_path / "none.sock")).setup()
    assert failed(checks) == ["canaryd"]


def test_ready():
    checks = canary.Rollout("model", socket=SOCKET).setup()
    assert failed(checks) == []
    assert checks.ok


def test_unknown_service():
    assert failed(canary.Rollout("nosuch", socket=SOCKET).setup()) == ["service"]


def test_no_plan():
    assert failed(canary.Rollout("noplan", socket=SOCKET).setup()) == ["rollout_plan"]


def test_a_backend_down():
    checks = canary.Rollout("downcanary", socket=SOCKET).setup()
    assert failed(checks) == ["canary_backends"]
    assert "Connection refused" in checks["canary_backends"].detail


def test_a_rollout_running_then_aborted():
    r = canary.Rollout("model", socket=SOCKET)
    assert r.start().phase == "running"
    try:
        assert failed(r.setup()) == ["no_rollout_running"]
    finally:
        assert r.abort().phase == "aborted"
    assert failed(r.setup()) == []


def test_refusals_carry_their_codes():
    c = canary.Client(SOCKET)
    for call, cls in [
        (lambda: c.rollout("noplan", "start"), canary.RolloutNotConfigured),
        (lambda: c.rollout_status("nosuch"), canary.UnknownService),
        (lambda: c.rollout("model", "resume"), canary.RolloutConflict),
        (lambda: c.fleet_status(), canary.NotAFleet),
        (lambda: c.call({"command": "status", "x": 1}), canary.BadRequest),
        (lambda: c.call({"command": "set-weight", "service": "model", "weight_bp": 10001}), canary.InvalidWeight),
    ]:
        try:
            call()
        except cls as e:
            print(f"{cls.__name__}: {e}")
        else:
            raise AssertionError(f"expected {cls.__name__}")
