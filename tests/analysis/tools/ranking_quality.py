#!/usr/bin/env python3
"""How well pea-analyze's static estimate alone ranks what requests really run.

Ground truth: the program's own sources built with clang -fprofile-instr-generate,
run on a request file; a function "ran" if its entry count is > 0. The measure
is recall@k over function segments: of the k functions the requests ran, the
share that are among the top k function segments of the static map (k = how
many ran). Also reported: recall@2k and the random-ranking baseline k/N.

With --route, the map is also re-ranked by route token (segments whose
tokens name only other routes go last) and that ranking is measured.

Usage: ranking_quality.py --pea BIN --lang C|CXX --requests FILE [--route WORD]
                          --bc A.bc [B.bc...] --src a.c [b.c...]
"""
import argparse, json, os, re, subprocess, sys, tempfile

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pea", required=True)
    ap.add_argument("--lang", default="C")
    ap.add_argument("--requests", required=True)
    ap.add_argument("--route", help="only requests whose first word is ROUTE")
    ap.add_argument("--bc", nargs="+", required=True)
    ap.add_argument("--src", nargs="+", required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cc = ["clang++-14", "-std=c++20"] if a.lang == "CXX" else ["clang-14"]
        exe = os.path.join(tmp, "prog")
        subprocess.run(cc + ["-O1", "-fprofile-instr-generate", *a.src, "-o", exe], check=True)
        lines = open(a.requests, "rb").read().splitlines(keepends=True)
        if a.route:
            lines = [l for l in lines if l.split(b" ", 1)[0].strip() == a.route.encode()]
        raw = os.path.join(tmp, "p.profraw")
        subprocess.run([exe], input=b"".join(lines), stdout=subprocess.DEVNULL,
                       env=dict(os.environ, LLVM_PROFILE_FILE=raw), check=True)
        prof = os.path.join(tmp, "p.profdata")
        subprocess.run(["llvm-profdata-14", "merge", "-o", prof, raw], check=True)
        show = subprocess.run(["llvm-profdata-14", "show", "--all-functions", prof],
                              capture_output=True, text=True, check=True).stdout
        ran, name = set(), None
        for line in show.splitlines():
            m = re.match(r"^  (\S.*):$", line)
            if m:
                name = m.group(1).split(":")[-1]
            m = re.match(r"^\s+Function count: (\d+)", line)
            if m and name and int(m.group(1)) > 0:
                ran.add(name)
        pm = json.loads(subprocess.run([a.pea, *a.bc, "--json", "-q"], capture_output=True,
                                       text=True, check=True).stdout)
    segs = [s for s in pm["segments"] if s["kind"] == "fn"]
    orders = {"static": [s["function"] for s in segs]}
    if a.route:
        # With the request's route known: segments whose route tokens are all
        # other routes' go last (what snapselect can do without history).
        by_token = sorted(segs, key=lambda s: bool(s["tokens"]) and a.route not in s["tokens"])
        orders["static+tokens"] = [s["function"] for s in by_token]
    truth = [f for f in orders["static"] if f in ran]
    n, k = len(orders["static"]), len(truth)
    if k == 0:
        sys.exit("no function of the map ran")
    out = f"requests={len(lines)} route={a.route or 'all'} fn_segments={n} ran={k} random@k={k / n:.3f}"
    for label, fns in orders.items():
        rec = lambda kk: len(set(fns[:kk]) & set(truth)) / k
        out += f" | {label}: recall@k={rec(k):.3f} recall@2k={rec(2 * k):.3f}"
    print(out)

if __name__ == "__main__":
    main()
