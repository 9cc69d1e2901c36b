#!/usr/bin/env python3
"""How well a probability map ranks and predicts what traced requests really ran.

Ground truth: a history written by `snaprun --trace FILE --map PMAP` (one
record per request, the map's segment ids it ran). Only requests that did not
fail are measured (`"failed":true` records are counted and left out).

Measures, over those requests:

(a) covered: the share of requests for which EVERY warmable segment (map
    field `warm`) that the request ran has weight > 0 and at least one route
    token that the request's bytes contain (byte substring). A segment without
    tokens fails this, whatever its weight. A request that ran no warmable
    segment counts as covered (and is counted apart).
(b) recall@k: per request, k = the number of map segments it ran; the share
    of them that are among the map's top k by weight (the map's own order:
    weight, then count, kind, name, id), averaged over requests with k > 0.
    Ranked among the segments the trace could see: those the history declares
    (snaprun --trace declares every segment it watched), or, in a history
    without declarations, every segment with an address. Also for warmable
    segments only (ranked among the watched warmable segments, k = warmable
    segments the request ran).
(c) predicted: the share of requests whose warmable segments are all predicted
    from static evidence and tokens alone, with no history. The rule: a
    warmable segment is predicted for a request when
      - it has route tokens and the request's bytes contain one of them, or
      - it has no route tokens and its weight is >= 0.5 (runs on most requests).
    A segment with tokens none of which the request contains is not predicted,
    whatever its weight. A request that ran no warmable segment counts as
    predicted.

Requests whose recorded bytes are truncated (`"truncated":true`) are matched
against the recorded prefix only (reported as `truncated`).

Usage:
  trace_ranking.py --map PMAP --history FILE
  trace_ranking.py --pea BIN --bc A.bc [B.bc...] --elf PROGRAM --snaprun BIN
                   --requests FILE [--keep DIR]
Options: -v (per-request lines: which warmable segments were not covered or
predicted), --json (one JSON object instead of the text lines),
--min-covered F, --min-predicted F (exit 1 when (a), or (c), is below F,
after printing).
The map may be the text or the JSON form (`pea-analyze --json`). Exit 77 when
it has to trace and /dev/kvm is missing or not usable.
"""
import argparse, json, os, re, subprocess, sys, tempfile

MIN_WEIGHT_TOKENLESS = 0.5


def die(msg, rc=2):
    print(f"trace_ranking: error: {msg}", file=sys.stderr)
    sys.exit(rc)


def unescape_token(t):
    # Text form: inside the quotes, \xHH for unprintable bytes, space " , \ .
    body = t[1:-1] if len(t) >= 2 and t[0] == '"' and t[-1] == '"' else t
    return re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]),
                  body.encode("latin-1"))


def split_tokens(field):
    # Tokens are "T","T"... and a comma inside a token is escaped as \x2c.
    return [unescape_token(t) for t in field.split(",")] if field != "-" else []


def read_map(path):
    """List of segments in map order: dicts id, sid, kind, name, weight, warm, tokens (bytes), addressed."""
    text = open(path, encoding="latin-1").read()
    segs = []
    if text.lstrip().startswith("{"):
        pm = json.loads(text)
        if pm.get("format") != "presnap-pmap":
            die(f"{path}: not a probability map (expected format presnap-pmap)")
        for s in pm["segments"]:
            segs.append(dict(id=s["id"].lower(), sid=s["sid"].lower(), kind=s["kind"],
                             name=s["name"], weight=float(s["weight"]), warm=bool(s["warmable"]),
                             tokens=[t.encode("latin-1") for t in s["tokens"]],
                             addressed=bool(s["ranges"])))
        return segs
    lines = text.split("\n")
    if not lines or not lines[0].startswith("# presnap-pmap 1"):
        die(f"{path}: not a probability map (expected '# presnap-pmap 1' first)")
    for n, line in enumerate(lines, 1):
        if not line or line.startswith("#"):
            continue
        f = line.split(" ")
        if len(f) != 14:
            die(f"{path}:{n}: expected 14 fields, found {len(f)}")
        segs.append(dict(id=f[0].lower(), sid=f[12].lower(), kind=f[1], name=f[2],
                         weight=float(f[3]), warm=f[5] == "warm", tokens=split_tokens(f[10]),
                         addressed=f[9] != "-"))
    return segs


def read_history(path):
    """(declared ids or sids, requests) from a presnap-history file."""
    declared, reqs = [], []
    with open(path, encoding="utf-8") as fh:
        first = True
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                die(f"{path}:{n}: invalid JSON: {e}")
            if first:
                if not isinstance(rec, dict) or rec.get("format") != "presnap-history" or rec.get("version") != 1:
                    die(f"{path}:{n}: not a presnap-history version 1 header")
                first = False
                continue
            if rec.get("type") == "segment":
                declared.append((rec["id"].lower(), rec.get("sid", "").lower()))
            elif rec.get("type") == "request":
                reqs.append(rec)
    if first:
        die(f"{path}: empty history")
    return declared, reqs


def contains_token(data, tokens):
    return any(t and t in data for t in tokens)


def measure(segs, declared, reqs, verbose=False):
    by_id = {s["id"]: s for s in segs}
    by_sid = {}
    for s in segs:
        by_sid.setdefault(s["sid"], s)
    # Declarations may name a segment by an id of another build: use its sid.
    alias = {}
    for i, sid in declared:
        if i not in by_id and sid in by_sid:
            alias[i] = by_sid[sid]["id"]
    if declared:
        watched = {alias.get(i, i) for i, _ in declared} & set(by_id)
    else:
        watched = {s["id"] for s in segs if s["addressed"]}
    order = [s["id"] for s in segs if s["id"] in watched]
    order_warm = [i for i in order if by_id[i]["warm"]]
    rank = {i: r for r, i in enumerate(order)}
    rank_warm = {i: r for r, i in enumerate(order_warm)}

    out = dict(requests=len(reqs), failed=0, measured=0, truncated=0, no_warm=0,
               unknown_segments=0, watched=len(order), watched_warm=len(order_warm),
               covered=0, predicted=0, recall_sum=0.0, recall_n=0,
               recall_warm_sum=0.0, recall_warm_n=0)
    misses = {}
    detail = []
    for r in reqs:
        if r.get("failed"):
            out["failed"] += 1
            continue
        out["measured"] += 1
        data = r.get("bytes", "").encode("latin-1")
        if r.get("truncated"):
            out["truncated"] += 1
        ran = []
        for i in r["segments"]:
            i = alias.get(i.lower(), i.lower())
            if i in by_id:
                ran.append(by_id[i])
            else:
                out["unknown_segments"] += 1
        warm = [s for s in ran if s["warm"]]
        if not warm:
            out["no_warm"] += 1
        uncovered = [s for s in warm if not (s["weight"] > 0 and contains_token(data, s["tokens"]))]
        unpredicted = [s for s in warm
                       if not (contains_token(data, s["tokens"]) if s["tokens"]
                               else s["weight"] >= MIN_WEIGHT_TOKENLESS)]
        out["covered"] += not uncovered
        out["predicted"] += not unpredicted
        for s in uncovered:
            misses.setdefault(s["name"], [0, 0])[0] += 1
        for s in unpredicted:
            misses.setdefault(s["name"], [0, 0])[1] += 1
        k = len({s["id"] for s in ran if s["id"] in rank})
        if k:
            hit = sum(1 for s in {s["id"]: s for s in ran}.values() if rank.get(s["id"], k) < k)
            out["recall_sum"] += hit / k
            out["recall_n"] += 1
        kw = len({s["id"] for s in warm if s["id"] in rank_warm})
        if kw:
            hit = sum(1 for s in {s["id"]: s for s in warm}.values() if rank_warm.get(s["id"], kw) < kw)
            out["recall_warm_sum"] += hit / kw
            out["recall_warm_n"] += 1
        if verbose:
            detail.append(dict(bytes=r.get("bytes", ""), ran=len(ran), warm=len(warm),
                               uncovered=[s["name"] for s in uncovered],
                               unpredicted=[s["name"] for s in unpredicted]))
    ran_any = {alias.get(i.lower(), i.lower()) for r in reqs if not r.get("failed") for i in r["segments"]}
    m = out["measured"]
    res = dict(
        requests=out["requests"], failed=out["failed"], measured=m, truncated=out["truncated"],
        requests_without_warm_segments=out["no_warm"], unknown_segment_refs=out["unknown_segments"],
        watched_segments=out["watched"], watched_warm_segments=out["watched_warm"],
        covered=out["covered"] / m if m else 0.0,
        recall_at_k=out["recall_sum"] / out["recall_n"] if out["recall_n"] else 0.0,
        recall_at_k_warm=out["recall_warm_sum"] / out["recall_warm_n"] if out["recall_warm_n"] else 0.0,
        predicted=out["predicted"] / m if m else 0.0,
        misses={k: dict(uncovered=v[0], unpredicted=v[1]) for k, v in sorted(misses.items())},
        top_never_ran=[by_id[i]["name"] for i in order[:10] if i not in ran_any])
    if verbose:
        res["per_request"] = detail
    return res


def trace(a, tmp):
    if not os.path.exists("/dev/kvm"):
        print("SKIP: /dev/kvm is missing: tracing needs a host with KVM", file=sys.stderr)
        sys.exit(77)
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("SKIP: /dev/kvm is not readable and writable by this user", file=sys.stderr)
        sys.exit(77)
    pmap, hist = os.path.join(tmp, "map.pmap"), os.path.join(tmp, "history.jsonl")
    p = subprocess.run([a.pea, *a.bc, "--elf", a.elf, "-o", pmap], capture_output=True, text=True)
    if p.returncode:
        sys.stderr.write(p.stderr)
        die("pea-analyze failed", 1)
    with open(a.requests, "rb") as rq:
        p = subprocess.run([a.snaprun, "--trace", hist, "--map", pmap, "--cold", a.elf],
                           stdin=rq, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode:
        sys.stderr.write(p.stderr)
        die(f"snaprun --trace failed (exit {p.returncode})", 1)
    return pmap, hist


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--map")
    ap.add_argument("--history")
    ap.add_argument("--pea")
    ap.add_argument("--bc", nargs="+")
    ap.add_argument("--elf")
    ap.add_argument("--snaprun")
    ap.add_argument("--requests")
    ap.add_argument("--keep", help="with --pea: keep the map and history in DIR")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--min-covered", type=float)
    ap.add_argument("--min-predicted", type=float)
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    making = [a.pea, a.bc, a.elf, a.snaprun, a.requests]
    if a.map and a.history:
        if any(making):
            die("give either --map and --history or --pea --bc --elf --snaprun --requests")
        pmap, hist, tmp = a.map, a.history, None
    elif all(making) and not a.map and not a.history:
        tmp = a.keep or tempfile.mkdtemp(prefix="trace_ranking.")
        os.makedirs(tmp, exist_ok=True)
        pmap, hist = trace(a, tmp)
    else:
        die("give --map and --history, or --pea --bc --elf --snaprun --requests")
    try:
        declared, reqs = read_history(hist)
        res = measure(read_map(pmap), declared, reqs, a.verbose)
    finally:
        if tmp and not a.keep:
            for f in os.listdir(tmp):
                os.unlink(os.path.join(tmp, f))
            os.rmdir(tmp)
    if a.json:
        print(json.dumps(res, indent=1, sort_keys=True))
    else:
        print(f"requests: {res['requests']} traced, {res['failed']} failed, {res['measured']} measured"
              f" ({res['truncated']} truncated, {res['requests_without_warm_segments']} ran no warmable segment)")
        print(f"watched segments: {res['watched_segments']} ({res['watched_warm_segments']} warmable)")
        print(f"covered (every warmable segment run has weight > 0 and a token in the request): {res['covered']:.3f}")
        print(f"recall@k (segments run among the map's top k): {res['recall_at_k']:.3f}")
        print(f"recall@k warmable (warmable segments run among the top k warmable): {res['recall_at_k_warm']:.3f}")
        print(f"predicted (every warmable segment run predicted by tokens, or weight >= 0.5 without tokens): {res['predicted']:.3f}")
        for name, m in res["misses"].items():
            print(f"miss: {name} uncovered in {m['uncovered']}, unpredicted in {m['unpredicted']}")
        if res["top_never_ran"]:
            print(f"of the 10 top-ranked watched segments, ran in no measured request: {' '.join(res['top_never_ran'])}")
        for d in res.get("per_request", []):
            print(f"request: {json.dumps(d['bytes'])} ran {d['ran']} ({d['warm']} warmable)"
                  f" uncovered [{' '.join(d['uncovered'])}] unpredicted [{' '.join(d['unpredicted'])}]")
    if res["unknown_segment_refs"]:
        print(f"trace_ranking: warning: {res['unknown_segment_refs']} segment references are not in the map",
              file=sys.stderr)
    if res["measured"] == 0:
        die("no request to measure (all failed or none traced)", 1)
    if a.min_covered is not None and res["covered"] < a.min_covered:
        print(f"FAIL: covered {res['covered']:.3f} is below the floor {a.min_covered:.3f}", file=sys.stderr)
        sys.exit(1)
    if a.min_predicted is not None and res["predicted"] < a.min_predicted:
        print(f"FAIL: predicted {res['predicted']:.3f} is below the floor {a.min_predicted:.3f}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
