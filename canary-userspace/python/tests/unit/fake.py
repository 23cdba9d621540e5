"""A fake canaryd: a unix socket in the test's temporary directory that
answers each connection with what `answer(request)` returns. No network."""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any, Callable, List, Optional, Union

Answer = Union[bytes, dict, None]


class FakeDaemon:
    def __init__(self, path: str, answer: Callable[[dict], Answer]) -> None:
        self.path = path
        self.answer = answer
        self.requests: List[dict] = []
        self.lines: List[bytes] = []
        self._stop = threading.Event()
        self._listener: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self.start()

    def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.path)
        s.listen(16)
        s.settimeout(0.05)
        self._listener = s
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Gone as after a kill -9: nothing listens; the path stays."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._listener is not None:
            self._listener.close()

    def _serve(self) -> None:
        assert self._listener is not None
        # Bounded: at most 10,000 connections or until stopped.
        for _ in range(10_000):
            if self._stop.is_set():
                return
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.lines.append(data)
                request = json.loads(data)
                self.requests.append(request)
                out = self.answer(request)
                if out is None:
                    continue
                if isinstance(out, dict):
                    out = json.dumps(out).encode() + b"\n"
                conn.sendall(out)


def ok(data: Any) -> dict:
    return {"ok": True, "data": data}


def failed(code: str, error: str = "refused") -> dict:
    return {"ok": False, "code": code, "error": error}


def report(phase: str = "running", looks: int = 0, started: int = 1000) -> dict:
    """A rollout report as canaryd sends it (the fields docs/API.md lists)."""
    history = [
        {
            "at_unix_ms": started + 1500 * n,
            "look": n,
            "step": 0,
            "weight_bp": 500,
            "interval_attempts": [90, 10],
            "verdict": "pass",
            "action": {"action": "hold"},
            "checks": [
                {
                    "name": "error_rate",
                    "value": 0.0,
                    "verdict": "pass",
                    "detail": "canary 0 errors in 10 attempts; upper bound 0.1 <= 0.02",
                    "needs": None,
                }
            ],
            "reason": "hold: error_rate pass",
            "dry_run": False,
        }
        for n in range(1, looks + 1)
    ]
    return {
        "service": "model",
        "phase": phase,
        "reason": "" if phase == "running" else f"{phase} at look {looks}",
        "mode": "enforce",
        "on_rollback": "drain",
        "step": 0,
        "steps_bp": [500, 10000],
        "steps_percent": [5.0, 100.0],
        "weight_bp": 500,
        "weight_percent": 5.0,
        "observed_canary_share": 0.1,
        "interval_ms": 1500,
        "looks": looks,
        "failed": 0,
        "failed_checks_limit": 2,
        "inconclusive_streak": 0,
        "max_inconclusive": 10,
        "started_unix_ms": started,
        "next_at_unix_ms": started + 1500 * (looks + 1),
        "history": history,
        "rollbacks": 0,
    }


def status(services: List[dict]) -> dict:
    return {
        "daemon": {"version": "0.1.0", "api_version": 1, "pid": 1, "config": "/etc/canary/canary.toml", "interfaces": []},
        "services": services,
        "verdicts": {"ingress": {}, "egress": {}},
    }


def service(name: str = "model", stable: str = "198.18.0.1:8081", canary: str = "198.18.0.1:8082") -> dict:
    version = {"backends": [stable], "new_flows": 0, "active_flows": 0, "signals": {"requests": 0}}
    return {
        "name": name,
        "listen": "198.18.0.1:80",
        "protocol": "tcp",
        "affinity": "flow",
        "weight_bp": 0,
        "weight_percent": 0.0,
        "weight_source": "config",
        "config_weight_bp": 0,
        "stable": version,
        "canary": dict(version, backends=[canary]),
        "rollout": None,
    }
