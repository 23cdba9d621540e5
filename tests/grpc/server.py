#!/usr/bin/python3
"""A gRPC test backend: one unary method, /inference.Model/Predict, on one
address, over HTTP/2 without TLS. Requests and answers are raw bytes (no
protobuf, no generated code).

Each answer names this server (--name) twice, so a client can tell the
stable from the canary: in the trailing metadata `x-server` (sent with
errors too) and in the answer bytes, `{"server": NAME, "request_bytes": N}`.

Faults: a delay before every answer (--delay-ms), and every Nth call
answered UNAVAILABLE (--fail-every N, counted exactly, 0 = never).

With --model TREE.json (the demo's iris models, see tree_model.py) the
server predicts: the request is {"x": [SL, SW, PL, PW]}, the answer
{"server": NAME, "class": CLASS}; a request that is not four finite
numbers is answered INVALID_ARGUMENT, and --reject-sepal-width-above W
answers UNAVAILABLE to real inputs wider than W (the demo canary's
input-validation fault; :status stays 200, as for every gRPC error).

Control on stdin, one command a line, each answered by one JSON line on
stdout (the caller waits for it, so a change applies to every call after):
    delay-ms D      set the delay (milliseconds, may be fractional)
    fail-every N    fail every Nth call from now on (0 = never)
    stats           this server's counts
Stdout carries nothing else: first a ready line once the port is bound,
`{"ready": true, ...}`, and on SIGTERM or end of stdin the final stats.

Examples:
    server.py --name canary --listen 198.18.1.2:50051 --fail-every 10
    server.py --name canary --listen 198.18.2.2:50051 \
        --model canary.json --reject-sepal-width-above 3.3
"""

import argparse
import json
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

# Beside this script (Python puts its directory first on sys.path).
import tree_model

SERVICE = "inference.Model"
METHOD = "Predict"
# Time in-flight calls get to finish once the server is told to stop.
STOP_GRACE_S = 0.5


class State:
    """Settings and counts, shared by the worker threads and the control
    loop; one lock makes every count exact."""

    def __init__(self, name, delay_ms, fail_every):
        self.lock = threading.Lock()
        self.name = name
        self.delay_ms = delay_ms
        self.fail_every = fail_every
        # Calls since fail_every was last set: "every Nth call from now".
        self.since_rule = 0
        self.calls = 0
        self.answered_ok = 0
        self.answered_unavailable = 0
        self.answered_invalid_argument = 0
        self.peers = set()

    def admit(self, peer, verdict=None):
        """Counts one call; `verdict` is the model's (None, UNAVAILABLE or
        INVALID_ARGUMENT) when it already failed the call. Returns (delay
        in seconds, the code to fail with or None, the call's number)."""
        with self.lock:
            self.calls += 1
            self.since_rule += 1
            self.peers.add(peer)
            code = verdict
            if code is None and self.fail_every > 0 and self.since_rule % self.fail_every == 0:
                code = grpc.StatusCode.UNAVAILABLE
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                self.answered_invalid_argument += 1
            elif code == grpc.StatusCode.UNAVAILABLE:
                self.answered_unavailable += 1
            else:
                self.answered_ok += 1
            return self.delay_ms / 1000.0, code, self.calls

    def set_delay_ms(self, value):
        with self.lock:
            self.delay_ms = value

    def set_fail_every(self, value):
        with self.lock:
            self.fail_every = value
            self.since_rule = 0

    def stats(self):
        with self.lock:
            return {
                "name": self.name,
                "calls": self.calls,
                # Counted when the call is taken: a client that gave up
                # during the delay still counts here.
                "answered_ok": self.answered_ok,
                "answered_unavailable": self.answered_unavailable,
                "answered_invalid_argument": self.answered_invalid_argument,
                # Distinct client address:port pairs: TCP connections seen.
                "connections": len(self.peers),
                "delay_ms": self.delay_ms,
                "fail_every": self.fail_every,
            }


def predict_handler(state, model):
    def predict(request, context):
        verdict, why, x = None, None, None
        if model is not None:
            try:
                x = model.features_of(request)
                model.check(x)
            except tree_model.BadRequest as e:
                verdict, why = grpc.StatusCode.INVALID_ARGUMENT, str(e)
            except tree_model.Rejected as e:
                verdict, why = grpc.StatusCode.UNAVAILABLE, str(e)
        delay_s, code, call = state.admit(context.peer(), verdict)
        context.set_trailing_metadata((("x-server", state.name),))
        if delay_s > 0:
            time.sleep(delay_s)
        if code is not None:
            context.abort(
                code, f"server {state.name}: {why or f'injected failure on call {call}'}"
            )
        if model is not None:
            answer = {"server": state.name, "class": model.predict(x)}
        else:
            answer = {"server": state.name, "request_bytes": len(request)}
        return json.dumps(answer).encode()

    # No serializers: the method takes and returns bytes as they are.
    return grpc.method_handlers_generic_handler(
        SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(predict)}
    )


def say(obj):
    """One JSON line on stdout, flushed: the caller reads line by line."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value


def non_negative_float(text):
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{text} is not a finite number >= 0")
    return value


def control(state, stop):
    """Serves the stdin commands; end of stdin stops the server, so a
    caller that dies leaves no server behind."""
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            if words == ["stats"]:
                say(state.stats())
            elif len(words) == 2 and words[0] == "delay-ms":
                state.set_delay_ms(non_negative_float(words[1]))
                say({"applied": True, **state.stats()})
            elif len(words) == 2 and words[0] == "fail-every":
                state.set_fail_every(non_negative_int(words[1]))
                say({"applied": True, **state.stats()})
            else:
                say({"error": f"unknown command {line.strip()!r}"})
        except ValueError as e:
            say({"error": f"{line.strip()!r}: {e}"})
    stop.set()


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", required=True, help="named in every answer")
    parser.add_argument(
        "--listen", required=True, help="ADDR:PORT, IPv6 as [ADDR]:PORT"
    )
    parser.add_argument("--fail-every", type=non_negative_int, default=0)
    parser.add_argument("--delay-ms", type=non_negative_float, default=0.0)
    parser.add_argument(
        "--max-connection-age-s",
        type=non_negative_float,
        default=None,
        help="close each connection (GOAWAY) after this long",
    )
    parser.add_argument(
        "--model", help="serve this exported iris tree (see tree_model.py)"
    )
    parser.add_argument(
        "--reject-sepal-width-above",
        type=non_negative_float,
        default=None,
        help="with --model: answer UNAVAILABLE to wider inputs",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=32,
        help="calls served at once; more wait for a worker",
    )
    args = parser.parse_args()
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.reject_sepal_width_above is not None and args.model is None:
        parser.error("--reject-sepal-width-above needs --model")
    model = None
    if args.model is not None:
        try:
            model = tree_model.TreeModel(args.model, args.reject_sepal_width_above)
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"server.py: cannot load the model {args.model}: {e}", file=sys.stderr)
            sys.exit(1)

    state = State(args.name, args.delay_ms, args.fail_every)
    options = []
    if args.max_connection_age_s is not None:
        age_ms = max(1, int(args.max_connection_age_s * 1000))
        options += [
            ("grpc.max_connection_age_ms", age_ms),
            # In-flight calls finish on the old connection after its GOAWAY.
            ("grpc.max_connection_age_grace_ms", 5000),
        ]
    server = grpc.server(
        ThreadPoolExecutor(max_workers=args.workers),
        handlers=[predict_handler(state, model)],
        options=options,
    )
    try:
        port = server.add_insecure_port(args.listen)
    except RuntimeError as e:
        port = 0
        print(f"server.py: {e}", file=sys.stderr)
    if port == 0:
        print(f"server.py: cannot listen on {args.listen}", file=sys.stderr)
        sys.exit(1)
    server.start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=control, args=(state, stop), daemon=True).start()
    say({"ready": True, "name": args.name, "listen": args.listen, "port": port})

    # Short waits: the signal handlers run on this thread between them.
    while not stop.wait(0.1):
        pass
    server.stop(STOP_GRACE_S).wait()
    say({"final": True, **state.stats()})


if __name__ == "__main__":
    main()
