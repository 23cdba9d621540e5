"""`Rollout.setup()`, `execute()` and `watch()` against a fake canaryd:
each failing check by name, decisions as they come, and a daemon that goes
away mid-wait and comes back."""

import threading
import time

import pytest

import canary
from canary import rollout as rollout_mod

from .fake import FakeDaemon, failed, ok, report, service, status


@pytest.fixture
def sock(tmp_path):
    return str(tmp_path / "canary.sock")


@pytest.fixture
def backends_up(monkeypatch):
    """Backend checks answered without a network: the addresses in `down` refuse."""
    down = set()

    def unreachable(backends, timeout):
        return [f"{b}: Connection refused" for b in backends if b in down]

    monkeypatch.setattr(rollout_mod, "_unreachable", unreachable)
    return down


def daemon(sock, rollout_answer, services=None):
    answers = {
        "version": ok({"version": "0.1.0", "api_version": 1}),
        "status": ok(status(services if services is not None else [service()])),
    }
    return FakeDaemon(sock, lambda r: answers.get(r["command"]) or rollout_answer(r))


def verdicts(checks):
    return {c.name: c.ok for c in checks}


def test_setup_with_no_daemon_fails_the_first_check_and_makes_no_other(sock):
    checks = canary.Rollout("model", socket=sock).setup()
    assert not checks.ok
    assert verdicts(checks) == {"canaryd": False, **{n: None for n in canary.CHECKS[1:]}}
    assert "No such file" in checks["canaryd"].detail
    with pytest.raises(canary.SetupFailed, match="setup failed: canaryd"):
        checks.raise_for_failure()


def test_setup_passes_when_all_is_ready(sock, backends_up):
    d = daemon(sock, lambda r: failed("rollout_conflict", "service model: no rollout has been started"))
    try:
        checks = canary.Rollout("model", socket=sock).setup()
    finally:
        d.stop()
    assert checks.ok, str(checks)
    assert [c.name for c in checks] == list(canary.CHECKS)
    assert checks.raise_for_failure() is checks


def test_setup_names_an_unknown_service(sock, backends_up):
    d = daemon(sock, lambda r: failed("unknown_service"))
    try:
        checks = canary.Rollout("nosuch", socket=sock).setup()
    finally:
        d.stop()
    assert [c.name for c in checks.failed] == ["service"]
    assert "this daemon has: model" in checks["service"].detail


def test_setup_names_a_missing_plan(sock, backends_up):
    d = daemon(sock, lambda r: failed("rollout_not_configured", "service model has no [service.rollout] in the config"))
    try:
        checks = canary.Rollout("model", socket=sock).setup()
    finally:
        d.stop()
    assert [c.name for c in checks.failed] == ["rollout_plan"]
    assert checks["no_rollout_running"].ok is None


def test_setup_names_a_backend_down_and_a_rollout_running(sock, backends_up):
    backends_up.add("198.18.0.1:8082")
    d = daemon(sock, lambda r: ok(report("paused", looks=2)))
    try:
        checks = canary.Rollout("model", socket=sock).setup()
    finally:
        d.stop()
    assert [c.name for c in checks.failed] == ["canary_backends", "no_rollout_running"]
    assert "198.18.0.1:8082: Connection refused" in checks["canary_backends"].detail


def test_execute_starts_follows_and_returns_the_last_report(sock):
    polls = []

    def answer(r):
        if r["command"] == "rollout":
            assert r == {"command": "rollout", "service": "model", "action": "start"}
            return ok(report())
        polls.append(r)
        n = len(polls)
        return ok(report("promoted" if n >= 3 else "running", looks=n))

    d = FakeDaemon(sock, answer)
    seen = []
    try:
        r = canary.Rollout("model", socket=sock, poll=0.01).execute(timeout=30, on_decision=seen.append)
    finally:
        d.stop()
    assert r.phase == "promoted"
    assert [x.look for x in seen] == [1, 2, 3]
    assert seen == r.decisions
    assert str(seen[0]) == "look 1 at 5.00%: pass, hold: hold: error_rate pass"


def test_a_wait_past_its_timeout_says_still_running(sock):
    d = FakeDaemon(sock, lambda r: ok(report()))
    try:
        with pytest.raises(canary.StillRunning) as e:
            canary.Client(sock).wait("model", timeout=0.2, poll=0.01)
    finally:
        d.stop()
    assert e.value.exit_code == 13


def test_a_wait_asks_again_while_the_daemon_is_gone_and_shutting_down(sock):
    """Killed (nothing listens), then shutting down (`unavailable`), then
    back: the wait goes on and ends with the rollout."""
    phase = {"n": 0}

    def answer(r):
        phase["n"] += 1
        if phase["n"] == 2:
            return failed("unavailable", "canaryd is shutting down")
        return ok(report("rolled_back" if phase["n"] > 3 else "running", looks=phase["n"]))

    d = FakeDaemon(sock, answer)
    client = canary.Client(sock)
    looks = []
    restarted = threading.Event()

    def restart():
        d.stop()
        time.sleep(0.3)
        d.start()
        restarted.set()

    try:
        it = client.watch("model", timeout=30, poll=0.02)
        looks.append(next(it).look)
        threading.Thread(target=restart).start()
        looks.extend(x.look for x in it)
    finally:
        restarted.wait(5)
        d.stop()
    assert client.reconnects >= 2
    assert looks == sorted(set(looks)) and looks[-1] >= 4


def test_a_daemon_still_gone_at_the_deadline_raises_its_error(sock):
    d = FakeDaemon(sock, lambda r: ok(report()))
    d.stop()
    with pytest.raises(canary.Unreachable):
        canary.Client(sock).wait("model", timeout=0.2, poll=0.02)


def test_a_refusal_during_a_wait_is_not_retried(sock):
    d = FakeDaemon(sock, lambda r: failed("unknown_service", "gone by a reload"))
    try:
        with pytest.raises(canary.UnknownService):
            canary.Client(sock).wait("model", timeout=5, poll=0.01)
    finally:
        d.stop()
    assert len(d.requests) == 1
