"""The control socket's framing: one connection per request, one JSON
object per line each way (docs/API.md). Nothing here knows what a request
means; `client` does.
"""

from __future__ import annotations

import json
import os
import socket as sock
from typing import Any, Dict, Union

from . import errors

#: Where canaryd listens unless its config says otherwise.
DEFAULT_SOCKET = "/run/canary/canary.sock"

#: How long a request may take to be answered, as the Rust client waits.
TIMEOUT = 10.0

#: The daemon reads at most this much of a request line (MAX_REQUEST_BYTES).
MAX_REQUEST_BYTES = 64 * 1024

#: An answer longer than this is refused instead of read on without end: a
#: status of many services is well under a megabyte.
MAX_ANSWER_BYTES = 64 * 1024 * 1024

Request = Dict[str, Any]
PathLike = Union[str, "os.PathLike[str]"]


def encode(request: Request) -> bytes:
    """The request as one line."""
    line = json.dumps(request, separators=(",", ":")).encode() + b"\n"
    if len(line) > MAX_REQUEST_BYTES:
        raise ValueError(f"a request line is at most {MAX_REQUEST_BYTES} bytes; this is {len(line)}")
    return line


def call_raw(path: PathLike, request: Request, timeout: float = TIMEOUT) -> str:
    """Sends one request; the answer line as the daemon sent it."""
    where = os.fspath(path)
    line = encode(request)
    s = sock.socket(sock.AF_UNIX, sock.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        try:
            s.connect(where)
        except OSError as e:
            raise errors.Unreachable(where, e.strerror or str(e), e.errno) from e
        try:
            s.sendall(line)
            answer = _read_line(s)
        except sock.timeout as e:
            raise errors.ConnectionLost(where, f"no answer within {timeout:.0f} s") from e
        except OSError as e:
            raise errors.ConnectionLost(where, e.strerror or str(e)) from e
    finally:
        s.close()
    if not answer:
        raise errors.ConnectionLost(where, "the connection closed without an answer")
    try:
        return answer.decode()
    except UnicodeDecodeError as e:
        raise errors.ProtocolError(where, f"not UTF-8: {e}") from e


def _read_line(s: sock.socket) -> bytes:
    """Bytes up to the first newline (or the end of the stream)."""
    chunks = []
    size = 0
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        newline = chunk.find(b"\n")
        if newline >= 0:
            chunks.append(chunk[:newline])
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise OSError(0, f"an answer longer than {MAX_ANSWER_BYTES} bytes")
    return b"".join(chunks)


def parse(path: PathLike, line: str) -> Any:
    """An answer's `data`; a refusal as its exception."""
    where = os.fspath(path)
    try:
        answer = json.loads(line)
    except ValueError as e:
        raise errors.ProtocolError(where, f"not JSON: {e}") from e
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
        raise errors.ProtocolError(where, "not an answer object with a boolean `ok`")
    if answer["ok"]:
        if "data" not in answer or answer["data"] is None:
            raise errors.ProtocolError(where, "an ok answer without data")
        return answer["data"]
    code = answer.get("code")
    message = answer.get("error") or "(no reason given)"
    raise errors.from_answer(code if isinstance(code, str) else None, str(message))


def call(path: PathLike, request: Request, timeout: float = TIMEOUT) -> Any:
    """Sends one request; the answer's `data`."""
    return parse(path, call_raw(path, request, timeout))
