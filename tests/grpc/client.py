#!/usr/bin/python3
"""A bounded gRPC load client for /inference.Model/Predict (raw bytes, no
protobuf): --calls calls in all, spread round-robin over --channels
channels (each its own TCP connection), --concurrency at a time. It stops
by itself: each call has --timeout-s, and no call starts after --deadline-s.

Prints one JSON object on stdout: calls made and not sent, counts by gRPC
status code name, and per answering server (named by the server's
`x-server` trailer, else by its answer bytes; "unknown" when neither came,
e.g. a deadline the client enforced): its counts by code and its latency
percentiles; and per channel, counts by code.

Example:
    client.py --target 198.18.1.2:50051 --calls 200 --channels 4 --concurrency 8
"""

import argparse
import json
import math
import sys
import threading
import time

import grpc

METHOD = "/inference.Model/Predict"
UNKNOWN_SERVER = "unknown"
# Bounds the wait for every channel's first connection.
CONNECT_TIMEOUT_S = 5.0


def percentile(sorted_values, p):
    """Nearest rank: the smallest value with at least p % of values at or
    below it."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_summary(values_ms):
    values = sorted(values_ms)
    if not values:
        return None
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": values[-1],
    }


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


def one_call(stub, request, timeout_s):
    """(status code name, server name) of one call."""
    try:
        answer, call = stub.with_call(request, timeout=timeout_s)
        return call.code().name, server_named(call.trailing_metadata(), answer)
    except grpc.RpcError as e:
        trailers = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
        return e.code().name, server_named(trailers, None)


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
    parser.add_argument("--calls", type=positive_int, required=True)
    parser.add_argument("--channels", type=positive_int, default=1)
    parser.add_argument("--concurrency", type=positive_int, default=1)
    parser.add_argument("--timeout-s", type=positive_float, default=5.0, help="per call")
    parser.add_argument(
        "--deadline-s", type=positive_float, default=60.0, help="no call starts after"
    )
    parser.add_argument("--request-bytes", type=int, default=16)
    args = parser.parse_args()
    if args.request_bytes < 0:
        parser.error("--request-bytes must be at least 0")

    started = time.monotonic()
    stop_at = started + args.deadline_s
    options = [
        # A channel of its own: without this, channels to one target share
        # one TCP connection through the process-wide subchannel pool.
        ("grpc.use_local_subchannel_pool", 1),
        # Test traffic goes straight to the target, never to a proxy named
        # in the environment.
        ("grpc.enable_http_proxy", 0),
    ]
    channels = [grpc.insecure_channel(args.target, options=options) for _ in range(args.channels)]
    ready = 0
    for channel in channels:
        left = min(CONNECT_TIMEOUT_S, max(0.0, stop_at - time.monotonic()))
        try:
            grpc.channel_ready_future(channel).result(timeout=left)
            ready += 1
        except grpc.FutureTimeoutError:
            pass
    stubs = [ch.unary_unary(METHOD) for ch in channels]
    request = b"x" * args.request_bytes

    lock = threading.Lock()
    next_call = [0]
    # (channel, code, server, latency ms) of every call made.
    results = []

    def worker():
        while True:
            with lock:
                i = next_call[0]
                if i >= args.calls or time.monotonic() >= stop_at:
                    return
                next_call[0] += 1
            channel = i % args.channels
            t0 = time.monotonic()
            code, server = one_call(stubs[channel], request, args.timeout_s)
            latency_ms = (time.monotonic() - t0) * 1000.0
            with lock:
                results.append((channel, code, server, latency_ms))

    load_started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    load_s = time.monotonic() - load_started
    for channel in channels:
        channel.close()

    by_code = {}
    by_server = {}
    by_channel = [{"calls": 0, "by_code": {}} for _ in channels]
    latencies = []
    server_latencies = {}
    for channel, code, server, latency_ms in results:
        by_code[code] = by_code.get(code, 0) + 1
        s = by_server.setdefault(server, {"calls": 0, "by_code": {}})
        s["calls"] += 1
        s["by_code"][code] = s["by_code"].get(code, 0) + 1
        c = by_channel[channel]
        c["calls"] += 1
        c["by_code"][code] = c["by_code"].get(code, 0) + 1
        latencies.append(latency_ms)
        server_latencies.setdefault(server, []).append(latency_ms)
    for server, s in by_server.items():
        s["latency_ms"] = latency_summary(server_latencies[server])

    json.dump(
        {
            "target": args.target,
            "calls_requested": args.calls,
            "calls": len(results),
            "not_sent": args.calls - len(results),
            "channels": args.channels,
            "channels_ready": ready,
            "load_s": load_s,
            "by_code": by_code,
            "latency_ms": latency_summary(latencies),
            "by_server": by_server,
            "by_channel": by_channel,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
