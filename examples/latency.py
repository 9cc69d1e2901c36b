#!/usr/bin/env python3
"""Measure an example's native per-route latency: first request vs warm.

For every route that appears in REQUESTS (lines grouped by their first word),
start a fresh process and:

  first    send an unknown-route request (so that process start-up and libc
           initialisation are not counted), then the route's first request,
           and time it from writing the line to reading the response line:
           the cold request that pays the route's lazy initialisation;
  warm rtt send the route's requests again ROUNDS times, one at a time, and
           take the median round trip: this is dominated by the two pipe
           wake-ups, which is why the "(floor)" row, an unknown route that
           does no work, is there for comparison;
  warm     pipeline the same requests (ROUNDS x the route's lines, all written
           at once by a second thread) and divide the wall time by their
           number: the steady-state cost of one request without the wake-ups.

usage: latency.py PROGRAM REQUESTS [ROUNDS]
"""
import statistics
import subprocess
import sys
import threading
import time


def route_of(line):
    words = line.split()
    return words[0] if words else "(empty)"


def measure(program, lines, rounds):
    proc = subprocess.Popen([program], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ask(line):
        start = time.perf_counter()
        proc.stdin.write(line.encode() + b"\n")
        proc.stdin.flush()
        proc.stdout.readline()
        return (time.perf_counter() - start) * 1e3

    ask("presnap-no-such-route")
    first = ask(lines[0])
    rtt = statistics.median(ask(line) for _ in range(rounds) for line in lines)

    batch = [line.encode() + b"\n" for _ in range(rounds) for line in lines]

    def feed():
        proc.stdin.write(b"".join(batch))
        proc.stdin.flush()

    writer = threading.Thread(target=feed)
    start = time.perf_counter()
    writer.start()
    for _ in batch:
        proc.stdout.readline()
    per_request = (time.perf_counter() - start) * 1e3 / len(batch)
    writer.join()
    proc.stdin.close()
    proc.wait()
    return first, rtt, per_request


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.strip().splitlines()[-1])
    program, requests = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    by_route = {}
    with open(requests) as f:
        for line in f:
            line = line.rstrip("\n")
            by_route.setdefault(route_of(line), []).append(line)
    by_route["(floor)"] = ["presnap-no-such-route"]
    print(f"{'route':<10} {'first ms':>9} {'warm rtt ms':>12} {'warm ms':>8}")
    for route, lines in by_route.items():
        first, rtt, per_request = measure(program, lines, rounds)
        print(f"{route:<10} {first:>9.1f} {rtt:>12.3f} {per_request:>8.4f}")


if __name__ == "__main__":
    main()
