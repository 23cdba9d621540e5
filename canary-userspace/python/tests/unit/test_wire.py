"""Framing and errors against a fake canaryd (no daemon, no network)."""

import json
import os

import pytest

import canary
from canary import errors, wire

from .fake import FakeDaemon, failed, ok, report


@pytest.fixture
def sock(tmp_path):
    return str(tmp_path / "canary.sock")


def test_a_request_is_one_compact_json_line(sock):
    d = FakeDaemon(sock, lambda r: ok({"version": "0.1.0", "api_version": 1}))
    try:
        v = canary.Client(sock).version()
    finally:
        d.stop()
    assert v == canary.Version("0.1.0", 1)
    assert d.lines == [b'{"command":"version"}\n']


def test_an_answer_in_pieces_and_with_more_after_its_line_reads_whole(sock):
    line = json.dumps(ok({"version": "x" * 200_000, "api_version": 1})).encode()
    d = FakeDaemon(sock, lambda r: line + b"\ntrailing bytes")
    try:
        v = canary.Client(sock).version()
    finally:
        d.stop()
    assert v.version == "x" * 200_000


def test_a_request_longer_than_the_daemon_reads_is_refused_unsent(sock):
    with pytest.raises(ValueError, match="at most 65536 bytes"):
        wire.encode({"command": "rollout-status", "service": "m" * 70_000})


def test_no_socket_is_unreachable_with_canaryctls_exit_code(sock):
    with pytest.raises(canary.Unreachable) as e:
        canary.Client(sock).status()
    assert e.value.exit_code == 3
    assert "No such file or directory" in str(e.value)
    assert "is canaryd running?" in str(e.value)


def test_a_socket_nothing_listens_on_is_unreachable(sock):
    d = FakeDaemon(sock, lambda r: None)
    d.stop()
    assert os.path.exists(sock)
    with pytest.raises(canary.Unreachable, match="Connection refused"):
        canary.Client(sock).status()


def test_a_connection_closed_without_an_answer_is_lost(sock):
    d = FakeDaemon(sock, lambda r: b"")
    try:
        with pytest.raises(canary.ConnectionLost, match="closed without an answer"):
            canary.Client(sock).status()
    finally:
        d.stop()


@pytest.mark.parametrize(
    "answer, match",
    [
        (b"not json\n", "not JSON"),
        (b"[1]\n", "boolean `ok`"),
        (b'{"ok": true}\n', "without data"),
    ],
)
def test_an_unreadable_answer_is_a_protocol_error(sock, answer, match):
    d = FakeDaemon(sock, lambda r: answer)
    try:
        with pytest.raises(canary.ProtocolError, match=match):
            canary.Client(sock).version()
    finally:
        d.stop()


def test_every_code_raises_its_exception_with_the_message(sock):
    with open(os.path.join(os.path.dirname(canary.__file__), "protocol.json")) as f:
        codes = json.load(f)["error_codes"]
    for entry in codes:
        d = FakeDaemon(sock, lambda r: failed(entry["code"], "why " + entry["code"]))
        try:
            with pytest.raises(canary.DaemonError) as e:
                canary.Client(sock).rollout_status("model")
        finally:
            d.stop()
        assert type(e.value).__name__ == entry["exception"]
        assert isinstance(e.value, getattr(canary, entry["exception"]))
        assert e.value.code == entry["code"]
        assert e.value.exit_code == entry["exit"]
        assert e.value.message == "why " + entry["code"]


def test_a_newer_daemons_code_is_a_daemon_error_carrying_it(sock):
    d = FakeDaemon(sock, lambda r: failed("rollout_paused", "later"))
    try:
        with pytest.raises(canary.DaemonError) as e:
            canary.Client(sock).version()
    finally:
        d.stop()
    assert type(e.value) is canary.DaemonError
    assert e.value.code == "rollout_paused"
    assert e.value.exit_code == 1


def test_an_older_daemons_refusal_without_a_code_is_a_bad_request(sock):
    d = FakeDaemon(sock, lambda r: {"ok": False, "error": "old"})
    try:
        with pytest.raises(canary.BadRequest):
            canary.Client(sock).version()
    finally:
        d.stop()


def test_an_older_daemons_percent_fields_read_as_basis_points(sock):
    old = report(looks=1)
    for k in ("steps_bp", "weight_bp"):
        del old[k]
    d = FakeDaemon(sock, lambda r: ok(old))
    try:
        r = canary.Client(sock).rollout_status("model")
    finally:
        d.stop()
    assert (r.steps_bp, r.weight_bp) == ([500, 10000], 500)
    assert r.decisions[0].checks[0].name == "error_rate"
    assert r.raw == old


def test_set_weight_sends_basis_points_and_checks_the_percent_first(sock):
    d = FakeDaemon(
        sock,
        lambda r: ok({"service": "model", "previous_weight_bp": 0, "previous_percent": 0.0, "weight_bp": r["weight_bp"], "percent": r["weight_bp"] / 100}),
    )
    try:
        c = canary.Client(sock)
        assert c.set_weight("model", 12.5).weight_bp == 1250
        assert c.set_weight("model", weight_bp=7).weight_bp == 7
        for bad in (150, 12.345, -1):
            with pytest.raises(ValueError):
                c.set_weight("model", bad)
        with pytest.raises(ValueError):
            c.set_weight("model", 5, weight_bp=500)
    finally:
        d.stop()
    assert d.requests == [
        {"command": "set-weight", "service": "model", "weight_bp": 1250},
        {"command": "set-weight", "service": "model", "weight_bp": 7},
    ]
