"""Filtered search: our store against hnswlib with its filter callback, same run, same data
(docs/benchmarks.md, "Filtered search"; issue 37).

Data: npm-minilm-20k, the first N base vectors and Q queries; row i carries `bucket` = i mod
1000 and the filter is `bucket < n` (n = 1, 10, 100, 500, 900: 0.1% .. 90%). Both sides: M=16,
ef_construction=200, inner product, ef=64, k=10, one thread; recall@10 against the exact
filtered top 10.

* ours: the `filter_sweep` example's binary (built beforehand with
  `cargo build --profile test -p allidb-index --example filter_sweep`), run as a subprocess:
  the store's query in process (planner, seed search, scoring).
* hnswlib: `knn_query(q, k=10, filter=lambda label: label % 1000 < n)` (a Python callable per
  visited node, as hnswlib's Python binding offers it) and unfiltered `knn_query`.

The two alternate ROUNDS times (default 3); the script prints every round and the medians.

Usage: python3 bench/filter_vs_hnswlib.py OURS_BINARY [--n 20000] [--queries 300] [--rounds 3]
       [--stores planner,exact,walk] [--distinct]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import hnswlib
import numpy as np

SELECTIVITIES = [(1, "0.1%"), (10, "1%"), (100, "10%"), (500, "50%"), (900, "90%")]


def read_vecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    return np.ascontiguousarray(raw.reshape(-1, dim + 1)[:, 1:].view(np.float32))


def exact_truth(base, queries, below):
    rows = np.arange(base.shape[0])
    keep = rows if below is None else rows[rows % 1000 < below]
    sims = queries @ base[keep].T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    return [set(keep[t]) for t in top]


def hnswlib_round(index, queries, truths):
    """{selectivity name or 'none': (qps, recall)}"""
    out = {}
    for below, name in [(None, "none")] + SELECTIVITIES:
        if below is None:
            allow = None
        else:
            allow = (lambda b: (lambda label: label % 1000 < b))(below)
        start = time.perf_counter()
        found = [index.knn_query(q, k=10, filter=allow)[0][0] for q in queries]
        elapsed = time.perf_counter() - start
        truth = truths[name]
        recall = np.mean([len(set(f) & t) / 10 for f, t in zip(found, truth)])
        out[name] = (len(queries) / elapsed, recall)
    return out


ROW = re.compile(r"^\| (none|[0-9.]+%) \| (\w+) \| ([0-9.]+) \| ([0-9]+) \| ([0-9.]+) \|")


def ours_round(binary, n, q, extra):
    """{label: {selectivity: (plan, recall, qps, x unfiltered)}} parsed from filter_sweep's tables."""
    text = subprocess.run(
        [binary, "--n", str(n), "--queries", str(q)] + extra,
        check=True, capture_output=True, text=True,
    ).stdout
    out, label = {}, None
    for line in text.splitlines():
        if not line.startswith("|"):
            label = line.split(",")[0]
            out.setdefault(label, {})
            continue
        m = ROW.match(line)
        if m and label is not None:
            out[label][m.group(1)] = (
                m.group(2), float(m.group(3)), float(m.group(4)), float(m.group(5)))
    return out, text


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--data", default=os.path.join(here, "../../shared/data/npm-minilm-20k"))
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stores", default="planner,exact,walk",
                        help="ours: which of filter_sweep's stores to run")
    parser.add_argument("--distinct", action="store_true",
                        help="ours: no two queries send the same filter (no filter memo reuse)")
    args = parser.parse_args()
    base = read_vecs(f"{args.data}/base.fvecs")[: args.n]
    queries = read_vecs(f"{args.data}/query.fvecs")[: args.queries]
    truths = {"none": exact_truth(base, queries, None)}
    for below, name in SELECTIVITIES:
        truths[name] = exact_truth(base, queries, below)
    index = hnswlib.Index(space="ip", dim=base.shape[1])
    index.init_index(max_elements=base.shape[0], M=16, ef_construction=200, random_seed=100)
    index.add_items(base, np.arange(base.shape[0]))
    index.set_num_threads(1)
    index.set_ef(64)
    theirs, ours = [], []
    for r in range(args.rounds):
        extra = ["--stores", args.stores] + (["--distinct", "1"] if args.distinct else [])
        parsed, text = ours_round(args.binary, args.n, args.queries, extra)
        print(f"--- round {r + 1}: ours\n{text}", flush=True)
        ours.append(parsed)
        h = hnswlib_round(index, queries, truths)
        theirs.append(h)
        print(f"--- round {r + 1}: hnswlib " + ", ".join(
            f"{k}: {v[0]:.0f} q/s recall {v[1]:.3f}" for k, v in h.items()), flush=True)
    med = lambda xs: statistics.median(xs)
    labels = list(ours[0].keys())
    print(f"\nMedians of {args.rounds} rounds, {args.n} vectors, {args.queries} queries, k=10, ef=64, one thread")
    header = "| selectivity | hnswlib+filter q/s | recall | x its unfiltered |"
    for label in labels:
        header += f" {label}: plan | recall | q/s | x our unfiltered | x hnswlib |"
    print(header)
    print("|" + "---|" * (4 + 5 * len(labels)))
    h_none = med([t["none"][0] for t in theirs])
    for name in ["none"] + [s for _, s in SELECTIVITIES]:
        hq = med([t[name][0] for t in theirs])
        hr = theirs[0][name][1]
        row = f"| {name} | {hq:,.0f} | {hr:.3f} | {hq / h_none:.2f} |"
        for label in labels:
            if name not in ours[0][label]:
                row += " - | - | - | - | - |"
                continue
            plan, recall, _, _ = ours[0][label][name]
            q = med([o[label][name][2] for o in ours])
            # The example's own ratio: median of its passes' paired ratios (unfiltered and
            # filtered timed back to back), then the median over rounds.
            ratio = med([o[label][name][3] for o in ours])
            row += f" {plan} | {recall:.3f} | {q:,.0f} | {ratio:.2f} | {q / hq:.2f} |"
        print(row)


if __name__ == "__main__":
    sys.exit(main())
