"""execute() against a real canaryd under load: the outcome the Rust test
expects (CANARY_EXPECT), with the same decisions `canaryctl --json rollout
status` shows."""

import json
import os
import subprocess

import canary

from .scenario import CANARYCTL, SOCKET, only_in

pytestmark = only_in("execute")


def test_execute_returns_the_outcome_with_canaryctls_decisions():
    expect = os.environ["CANARY_EXPECT"]
    rollout = canary.Rollout("model", socket=SOCKET, poll=0.1)
    rollout.setup().raise_for_failure()
    seen = []

    def on_decision(d):
        print(d)
        seen.append(d)

    r = rollout.execute(timeout=90, on_decision=on_decision)
    print(r)
    assert r.phase == expect, r
    assert r.decisions and seen == r.decisions
    last = r.decisions[-1]
    assert last.checks and all(c.verdict in ("pass", "fail", "inconclusive") for c in last.checks)
    for c in last.checks:
        print(f"  {c.name} {c.value} {c.verdict} {c.detail}")
    ctl = subprocess.run(
        [CANARYCTL, "--socket", SOCKET, "--json", "rollout", "status", "model"],
        capture_output=True,
        timeout=30,
        check=True,
    )
    # --json prints the daemon's answer line as it is.
    theirs = json.loads(ctl.stdout)["data"]
    assert theirs["phase"] == r.phase
    assert theirs["history"] == [d.raw for d in r.decisions]
    assert canary.RolloutReport.from_json(theirs).decisions == r.decisions
