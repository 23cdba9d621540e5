"""execute() while canaryd is killed (kill -9) and restarted: the Rust test
kills it once CANARY_MARK exists (the first decision), then starts it again;
the wait reconnects and returns the rollout's end."""

import os
import pathlib

import canary

from .scenario import SOCKET, only_in

pytestmark = only_in("restart")


def test_execute_survives_a_kill_minus_nine():
    mark = pathlib.Path(os.environ["CANARY_MARK"])
    client = canary.Client(SOCKET)
    rollout = canary.Rollout("model", client=client, poll=0.1)

    def on_decision(d):
        print(d)
        if not mark.exists():
            mark.write_text(str(d.look))

    r = rollout.execute(timeout=120, on_decision=on_decision)
    print(f"{r}; the wait found canaryd gone {client.reconnects} times")
    assert r.phase == "promoted", r
    assert client.reconnects >= 1
    looks = [d.look for d in r.decisions]
    assert looks == list(range(looks[0], looks[0] + len(looks)))
