#!/usr/bin/env python3
"""Drives snaprun --serve for tests/kvm/serve.sh (soak, clients, reload) with
tests/kvm/guests/serve_guest.c as the function.

  serve_client.py soak SNAPRUN LIB PROGRAM
  serve_client.py clients SNAPRUN LIB PROGRAM
  serve_client.py reload SNAPRUN LIB PROGRAM SNAPGEN MAP REQUESTS
  serve_client.py fallback SNAPRUN LIB PROGRAM REQUESTS
"""
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time

ERROR = "presnap-error: "


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def native(program, requests):
    """Each request answered by the native program in a fresh process (the
    serving mode restores per request, so a request's answer is the one a
    fresh process gives)."""
    out = {}
    for r in set(requests):
        p = subprocess.run([program], input=(r + "\n").encode(), stdout=subprocess.PIPE, check=True)
        out[r] = p.stdout.decode()
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def soak(snaprun, lib, program):
    # The bound: at most `pool` (2) VMs, each holding what one request
    # touches (the test program's table: 2 MiB, its working set), the
    # composites in memory (none are copied: snapshots are mapped), the
    # binary: 64 MiB is generous for that and far below what keeping
    # anything per request for 20,000 requests would need. Growth after the
    # first 2,000 requests must stay under 16 MiB.
    BOUND_KIB, GROWTH_KIB, N = 64 * 1024, 16 * 1024, 20000
    rnd = random.Random(10)
    reqs, kinds = [], []
    loops = 0
    for i in range(N):
        x = rnd.random()
        if x < 0.40:
            reqs.append(f"echo w{rnd.randrange(10**6)}"); kinds.append("good")
        elif x < 0.70:
            reqs.append(f"sum {rnd.choice([1, 10, 1000, 100000, 262144])}"); kinds.append("good")
        elif x < 0.80:
            reqs.append("count"); kinds.append("good")
        elif x < 0.85:
            reqs.append("get"); kinds.append("good")
        elif x < 0.90:
            reqs.append("fault"); kinds.append("fault")
        elif x < 0.93:
            reqs.append("echo " + "y" * 5000); kinds.append("limit")  # over --max-request 4K
        elif x < 0.96:
            reqs.append("big 100000"); kinds.append("guest")  # over --max-response 64K
        elif x < 0.962 and loops < 40:
            reqs.append("loop"); kinds.append("timeout"); loops += 1
        else:
            reqs.append(f"echo z{i}"); kinds.append("good")
    good = [r for r, k in zip(reqs, kinds) if k == "good" and not r.startswith("echo")]
    expect = native(program, good)
    t0 = time.time()
    srv = subprocess.Popen([snaprun, "--serve", lib, "--policy", "oracle", "--pool", "2",
                            "--timeout", "0.2", "--max-request", "4K", "--max-response", "64K",
                            "--stats"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    samples = []
    done = [0]

    def sample():
        while srv.poll() is None:
            try:
                samples.append((done[0], rss_kib(srv.pid)))
            except OSError:
                break
            time.sleep(0.1)

    err = []
    threading.Thread(target=lambda: err.append(srv.stderr.read()), daemon=True).start()
    threading.Thread(target=sample, daemon=True).start()

    def feed():
        for r in reqs:
            srv.stdin.write(r.encode() + b"\n")
        srv.stdin.close()

    threading.Thread(target=feed, daemon=True).start()
    counts = {}
    for i, (r, k) in enumerate(zip(reqs, kinds)):
        line = srv.stdout.readline().decode()
        done[0] = i + 1
        if not line:
            fail(f"the server stopped at request {i + 1} ({r[:40]})")
        if k == "good":
            want = (f"echo {r[5:]}\n" if r.startswith("echo") else expect[r])
            if line != want:
                fail(f"request {i + 1} '{r[:40]}': got {line!r}, expected {want!r}")
        else:
            if not line.startswith(f"{ERROR}{k}: "):
                fail(f"request {i + 1} '{r[:40]}': got {line[:120]!r}, expected a '{k}' error")
        counts[k] = counts.get(k, 0) + 1
    if srv.stdout.readline():
        fail("output after the last response")
    rc = srv.wait()
    elapsed = time.time() - t0
    if rc != 0:
        fail(f"the server exited {rc}: {err[0][-2000:] if err else ''}")
    late = [kib for n, kib in samples if n >= N // 10]
    if not late:
        fail("no RSS sample after the first 2,000 requests")
    top = max(kib for _, kib in samples)
    growth = late[-1] - late[0]
    print(f"soak: {N} requests in {elapsed:.1f} s: {counts}; RSS max {top // 1024} MiB "
          f"(bound {BOUND_KIB // 1024} MiB), from request {N // 10} to the end "
          f"{late[0] // 1024} -> {late[-1] // 1024} MiB (bound +{GROWTH_KIB // 1024} MiB)")
    if top > BOUND_KIB:
        fail(f"RSS {top} KiB over the bound {BOUND_KIB} KiB")
    if growth > GROWTH_KIB:
        fail(f"RSS grew {growth} KiB over the run (bound {GROWTH_KIB} KiB)")
    for k in ("good", "fault", "limit", "guest", "timeout"):
        if not counts.get(k):
            fail(f"no '{k}' request in the mix")


def start_socket_server(snaprun, lib, extra=()):
    d = tempfile.mkdtemp()
    path = os.path.join(d, "s")
    srv = subprocess.Popen([snaprun, "--serve", lib, "--policy", "oracle", "--socket", path,
                            *extra], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(300):
        if os.path.exists(path):
            return srv, path
        if srv.poll() is not None:
            fail(f"the server exited {srv.returncode}: {srv.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    fail("the server did not create its socket")


def clients(snaprun, lib, program):
    srv, path = start_socket_server(snaprun, lib, ["--pool", "3"])
    C, M = 8, 150
    errors = []
    sums = native(program, ["sum 1000", "sum 100000"])

    def client(c):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            f = s.makefile("rwb")
            reqs = []
            for j in range(M):
                reqs.append(f"echo client-{c}-{j}" if j % 3 else ("sum 1000" if c % 2 else "sum 100000"))
            # Some pipelined, some one at a time.
            half = M // 2
            f.write(b"".join(r.encode() + b"\n" for r in reqs[:half]))
            f.flush()
            got = [f.readline().decode() for _ in range(half)]
            for r in reqs[half:]:
                f.write(r.encode() + b"\n")
                f.flush()
                got.append(f.readline().decode())
            for r, g in zip(reqs, got):
                want = sums[r] if r.startswith("sum") else f"echo {r[5:]}\n"
                if g != want:
                    errors.append(f"client {c}: '{r}' got {g!r}, expected {want!r}")
                    return
            s.close()
        except Exception as e:  # noqa: BLE001 - reported as the test's failure
            errors.append(f"client {c}: {e}")

    ts = [threading.Thread(target=client, args=(c,)) for c in range(C)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    srv.terminate()
    rc = srv.wait(30)
    if errors:
        fail("; ".join(errors[:5]))
    if rc != 0:
        fail(f"the server exited {rc} on SIGTERM: {srv.stderr.read().decode()[-2000:]}")
    if os.path.exists(path):
        fail("the socket was left behind")
    print(f"clients: {C} concurrent clients x {M} requests, each got its own responses in order")


def reload(snaprun, lib, program, snapgen, pmap, requests):
    srv = subprocess.Popen([snaprun, "--serve", lib, "--policy", "oracle", "--pool", "2",
                            "--stats", "--json"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    gens = []

    def read_stats():
        for line in srv.stderr:
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if "generation" in j:
                gens.append(j["generation"])

    threading.Thread(target=read_stats, daemon=True).start()
    want = native(program, ["sum 1000"])["sum 1000"]
    n = [0]

    def ask(r, expect):
        srv.stdin.write(r.encode() + b"\n")
        srv.stdin.flush()
        got = srv.stdout.readline().decode()
        n[0] += 1
        if got != expect:
            fail(f"request {n[0]} '{r}' during reload: got {got!r}, expected {expect!r}")

    stop = threading.Event()

    def flow():
        i = 0
        while not stop.is_set():
            ask(f"echo r{i}" if i % 2 else "sum 1000", f"echo r{i}\n" if i % 2 else want)
            i += 1

    t = threading.Thread(target=flow)
    t.start()
    # A new version, written by snapgen over the served library.
    with open(os.devnull, "w") as null:
        subprocess.run([snapgen, "--map", pmap, "--requests", requests, "-o", lib, program],
                       check=True, stderr=null)
    deadline = time.time() + 30
    while time.time() < deadline and (not gens or gens[-1] < 2):
        time.sleep(0.1)
    if not gens or gens[-1] < 2:
        stop.set(); t.join()
        fail(f"the new library version was not picked up (generations seen: {sorted(set(gens))})")
    srv.send_signal(1)  # SIGHUP: reload now
    deadline = time.time() + 30
    while time.time() < deadline and gens[-1] < 3:
        time.sleep(0.1)
    stop.set()
    t.join()
    srv.stdin.close()
    rc = srv.wait(30)
    if gens[-1] < 3:
        fail("SIGHUP did not reload the library")
    if rc != 0:
        fail(f"the server exited {rc}")
    print(f"reload: {n[0]} requests answered right across two reloads "
          f"(manifest change, SIGHUP): generations {sorted(set(gens))}")


def fallback(snaprun, lib, program, requests):
    """A fresh server's first requests are served from their choice's
    fallback (one snapshot) while the merged composite is built off their
    path; once it is built the same requests get it. Every answer is the
    native one either way. --no-fallback makes the first request wait for
    its composite. A choice that does not depend on the request (warm-all)
    is built when the server starts."""
    reqs = [l for l in open(requests).read().splitlines() if l.strip()]
    want = native(program, reqs)

    def serve(extra, until_built):
        with tempfile.NamedTemporaryFile("w+", suffix=".stats") as err:
            p = subprocess.Popen([snaprun, "--serve", lib, "--pool", "2", "--stats", "--json",
                                  *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=err, text=True)
            stats, deadline, i = [], time.monotonic() + 120, 0
            while True:
                r = reqs[i % len(reqs)]
                i += 1
                p.stdin.write(r + "\n")
                p.stdin.flush()
                got = p.stdout.readline()
                if got != want[r]:
                    fail(f"{extra}: {r!r} answered {got!r}, natively {want[r]!r}")
                err.seek(0)
                stats = [json.loads(l) for l in err if l.startswith('{"request"')]
                if len(stats) != i:
                    fail(f"{extra}: {i} requests, {len(stats)} stats lines")
                if not until_built or (not stats[-1]["fallback"] and i > len(reqs)):
                    break
                if time.monotonic() > deadline:
                    fail("the composite was never built: every request still falls back")
                time.sleep(0.05)
            p.stdin.close()
            if p.wait() != 0:
                fail(f"{extra}: the server exited {p.returncode}")
            err.seek(0)
            summary = [json.loads(l) for l in err if l.startswith('{"summary"')]
            return stats, summary[0]

    # The first request comes at once, well before the merge (a second or
    # so) is done; a host that stalls the server longer than the merge could
    # let it finish first, so that case is tried again.
    for attempt in range(3):
        stats, summary = serve([], True)
        first = stats[0]
        if first["fallback"]:
            break
    if not first["fallback"] or len(first["snapshots"]) > 1 or first["cache_hit"]:
        fail(f"the first request was not served from a fallback: {first}")
    built = [s for s in stats if not s["fallback"]]
    if not built or any(len(s["snapshots"]) < 2 for s in built):
        fail(f"no request was served from the merged composite: {stats[-3:]}")
    if summary["fallbacks"] != sum(s["fallback"] for s in stats):
        fail(f"summary fallbacks {summary['fallbacks']} against the per-request stats")
    n_fb = summary["fallbacks"]
    # The model answers warm-all here, which does not depend on the request:
    # a server builds that composite when it starts, so a first request that
    # comes once the build is done finds it (and no fallback was needed).
    # Without that, a server's first request always falls back, however late
    # it comes. The wait doubles until the build has had time (bounded).
    wait, first_late = 0.5, None
    while wait <= 32:
        with tempfile.NamedTemporaryFile("w+", suffix=".stats") as err:
            p = subprocess.Popen([snaprun, "--serve", lib, "--pool", "2", "--stats", "--json"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                 text=True)
            time.sleep(wait)
            out, _ = p.communicate(reqs[0] + "\n")
            if p.returncode != 0 or out != want[reqs[0]]:
                fail(f"late first request: exit {p.returncode}, answered {out!r}")
            err.seek(0)
            first_late = json.loads(next(l for l in err if l.startswith('{"request"')))
        if not first_late["fallback"]:
            break
        wait *= 2
    if first_late["fallback"] or len(first_late["snapshots"]) < 2 or not first_late["cache_hit"]:
        fail(f"a server's first request {wait:.1f} s after its start still fell back: "
             f"the likely composite is not built at start: {first_late}")
    stats2, summary2 = serve(["--no-fallback"], False)
    first2 = stats2[0]
    if first2["fallback"] or len(first2["snapshots"]) < 2 or summary2["fallbacks"] != 0:
        fail(f"--no-fallback: the first request did not wait for its composite: {first2}")
    print(f"fallback: the first request served by {first['snapshots']} in "
          f"{first['total_us'] / 1e3:.1f} ms while {'+'.join(built[0]['snapshots'])} was built "
          f"({n_fb} of {len(stats)} requests fell back, all answered like native); "
          f"a first request {wait:.1f} s after start: served by the composite built at start in "
          f"{first_late['total_us'] / 1e3:.1f} ms; "
          f"--no-fallback: {first2['total_us'] / 1e3:.1f} ms")


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    case = sys.argv[1]
    if case == "soak":
        soak(*sys.argv[2:5])
    elif case == "clients":
        clients(*sys.argv[2:5])
    elif case == "reload":
        reload(*sys.argv[2:8])
    elif case == "fallback":
        fallback(*sys.argv[2:6])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
