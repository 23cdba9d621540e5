"""What the Rust test (tests/tests/it/python_client.rs) tells pytest about
the canaryd it started: each file runs only in its own scenario."""

import os

import pytest

SOCKET = os.environ.get("CANARY_SOCKET", "")
CANARYCTL = os.environ.get("CANARYCTL", "canaryctl")


def only_in(scenario: str):
    """Skips the module unless the Rust test runs it for `scenario`."""
    here = os.environ.get("CANARY_SCENARIO")
    return pytest.mark.skipif(here != scenario, reason=f"needs canaryd set up for {scenario!r} (cargo test -p tests --test it python_client::)")
