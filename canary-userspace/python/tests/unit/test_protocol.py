"""The Python client agrees with protocol.json, the list the Rust api
module is checked against too (canary-userspace/src/api/mod.rs, test
`the_python_client_speaks_this_protocol`): every request with its fields,
every error code with its exception and canaryctl's exit code."""

import ast
import json
import os

import pytest

import canary
from canary import errors

from .fake import FakeDaemon, ok, report, status

PACKAGE = os.path.dirname(canary.__file__)

with open(os.path.join(PACKAGE, "protocol.json")) as f:
    PROTOCOL = json.load(f)


def test_every_error_code_has_its_exception_and_no_other():
    listed = {e["code"]: e for e in PROTOCOL["error_codes"]}
    assert set(errors.BY_CODE) == set(listed)
    for code, cls in errors.BY_CODE.items():
        assert cls.__name__ == listed[code]["exception"]
        assert cls.exit_code == listed[code]["exit"]
        assert getattr(canary, cls.__name__) is cls
        assert issubclass(cls, canary.DaemonError)


def _every_call(c):
    """One call of each Client method that sends a request."""
    return [
        lambda: c.status(),
        lambda: c.set_weight("model", weight_bp=1250),
        lambda: c.reload(),
        lambda: c.version(),
        lambda: c.rollout("model", "start"),
        lambda: c.rollback("model"),
        lambda: c.rollout_status("model"),
        lambda: c.fleet_status(),
    ]


ANSWERS = {
    "status": status([]),
    "set-weight": {"service": "model", "previous_weight_bp": 0, "weight_bp": 1250},
    "reload": {"added": [], "updated": [], "removed": [], "unchanged": []},
    "version": {"version": "0.1.0", "api_version": 1},
    "rollout": report(),
    "rollback": report("rolled_back"),
    "rollout-status": report(),
    "fleet-status": {"hosts": []},
}


def test_every_request_has_the_listed_fields(tmp_path):
    sock = str(tmp_path / "s")
    d = FakeDaemon(sock, lambda r: ok(ANSWERS[r["command"]]))
    try:
        for call in _every_call(canary.Client(sock)):
            call()
    finally:
        d.stop()
    sent = {r["command"]: sorted(k for k in r if k != "command") for r in d.requests}
    assert sent == {k: sorted(v) for k, v in PROTOCOL["requests"].items()}


def test_rollout_actions_and_phases_are_the_listed_ones():
    assert list(canary.client.ACTIONS) == PROTOCOL["rollout_actions"]
    with pytest.raises(ValueError):
        canary.Client("/nonexistent").rollout("model", "restart")
    assert set(PROTOCOL["phases"]) == {"running", "paused"} | {"promoted", "rolled_back", "aborted"}


@pytest.mark.parametrize("module", sorted(m for m in os.listdir(PACKAGE) if m.endswith(".py")))
def test_the_package_reads_as_python_3_9(module):
    with open(os.path.join(PACKAGE, module)) as f:
        ast.parse(f.read(), module, feature_version=(3, 9))


def test_the_package_ships_its_type_marker_and_protocol():
    assert os.path.isfile(os.path.join(PACKAGE, "py.typed"))
    assert PROTOCOL["api_version"] == 1
