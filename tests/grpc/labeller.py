#!/usr/bin/python3
"""The demo's gRPC labelling client: labelled iris samples sent as
/inference.Model/Predict calls to a server.py --model (or to canary in
front of two of them), each answer compared with its label.

--threads threads send --rate calls a second in all, paced (a thread that
falls behind does not burst). Each thread opens a channel of its own (a
TCP connection), makes --per-channel calls on it and closes it: a canary
weight applies to new connections, so the load keeps opening them.

Stops by itself: no call starts after --deadline-s or --max-calls, or once
stdin ends or SIGTERM comes (the demo closes stdin to stop it); each call
has --timeout-s.

Stdout: a JSON line every --report-every-s with the counts so far, and a
last one with "final": true once every thread is done. Counts are by the
server that answered (its `x-server` trailer, else its answer's "server";
"unknown" when neither came, e.g. a refused connection or a deadline the
client enforced): calls, calls by gRPC status code name, predictions
(calls answered OK) and the correct ones.

Samples file: [{"x": [SL, SW, PL, PW], "label": "setosa"}, ...].

Example:
    labeller.py --target 198.18.0.1:80 --samples held-out.json --rate 400
"""

import argparse
import json
import signal
import sys
import threading
import time

import grpc

METHOD = "/inference.Model/Predict"
UNKNOWN_SERVER = "unknown"


class Tally:
    """Counts by answering server; one lock, so a report is consistent."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0
        self.by_server = {}

    def take(self, max_calls):
        """Claims one call; False once max_calls are claimed."""
        with self.lock:
            if self.sent >= max_calls:
                return False
            self.sent += 1
            return True

    def add(self, server, code, correct):
        with self.lock:
            s = self.by_server.setdefault(
                server, {"calls": 0, "by_code": {}, "predictions": 0, "correct": 0}
            )
            s["calls"] += 1
            s["by_code"][code] = s["by_code"].get(code, 0) + 1
            if code == "OK":
                s["predictions"] += 1
                s["correct"] += int(correct)

    def report(self, started, **extra):
        with self.lock:
            line = {
                "elapsed_s": round(time.monotonic() - started, 3),
                "sent": self.sent,
                "by_server": json.loads(json.dumps(self.by_server)),
                **extra,
            }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def server_named(trailers, answer):
    for key, value in trailers or ():
        if key == "x-server":
            return value
    if answer is not None:
        try:
            return json.loads(answer)["server"]
        except (ValueError, KeyError, TypeError):
            pass
    return UNKNOWN_SERVER


def one_call(stub, sample, timeout_s):
    """(code name, server name, whether the prediction matched the label)."""
    request = json.dumps({"x": sample["x"]}).encode()
    try:
        answer, call = stub.with_call(request, timeout=timeout_s)
    except grpc.RpcError as e:
        trailers = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
        return e.code().name, server_named(trailers, None), False
    try:
        predicted = json.loads(answer)["class"]
    except (ValueError, KeyError, TypeError):
        predicted = None
    return (
        call.code().name,
        server_named(call.trailing_metadata(), answer),
        predicted == sample["label"],
    )


def sender(index, args, samples, tally, stop):
    # A fresh channel each time: its own subchannel pool makes it its own
    # TCP connection; no proxy from the environment.
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_http_proxy", 0)]
    pause = args.threads / args.rate
    # Threads start spread over one pause, not all at once.
    next_at = time.monotonic() + pause * index / args.threads
    n = index
    while not stop.is_set():
        with grpc.insecure_channel(args.target, options=options) as channel:
            stub = channel.unary_unary(METHOD)
            for _ in range(args.per_channel):
                now = time.monotonic()
                if next_at > now:
                    if stop.wait(next_at - now):
                        return
                next_at = max(next_at, now) + pause
                if stop.is_set() or not tally.take(args.max_calls):
                    stop.set()
                    return
                sample = samples[n % len(samples)]
                n += args.threads
                code, server, correct = one_call(stub, sample, args.timeout_s)
                tally.add(server, code, correct)


def positive_int(text):
    value = int(text)
    if value < 1:
        raise ValueError(f"{value} is below 1")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{text} is not a finite number > 0")
    return value


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", required=True, help="ADDR:PORT, IPv6 as [ADDR]:PORT")
    parser.add_argument("--samples", required=True, help="labelled samples (JSON)")
    parser.add_argument("--rate", type=positive_float, default=400.0, help="calls/s in all")
    parser.add_argument("--threads", type=positive_int, default=8)
    parser.add_argument("--per-channel", type=positive_int, default=10)
    parser.add_argument("--timeout-s", type=positive_float, default=5.0, help="per call")
    parser.add_argument(
        "--deadline-s", type=positive_float, default=60.0, help="no call starts after"
    )
    parser.add_argument("--max-calls", type=positive_int, default=100_000)
    parser.add_argument("--report-every-s", type=positive_float, default=0.5)
    args = parser.parse_args()
    with open(args.samples, encoding="utf-8") as f:
        samples = json.load(f)
    if not samples:
        parser.error(f"{args.samples} has no samples")

    started = time.monotonic()
    tally = Tally()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def stdin_closed():
        for _ in sys.stdin:
            pass
        stop.set()

    threading.Thread(target=stdin_closed, daemon=True).start()
    threads = [
        threading.Thread(target=sender, args=(i, args, samples, tally, stop))
        for i in range(args.threads)
    ]
    for t in threads:
        t.start()
    # Short waits: the signal handler runs on this thread between them.
    next_report = started + args.report_every_s
    while any(t.is_alive() for t in threads):
        if time.monotonic() >= started + args.deadline_s:
            stop.set()
        if time.monotonic() >= next_report:
            tally.report(started)
            next_report += args.report_every_s
        time.sleep(0.05)
    for t in threads:
        t.join()
    tally.report(started, final=True)


if __name__ == "__main__":
    main()
