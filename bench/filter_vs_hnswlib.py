"""Filtered search: our store against hnswlib with its filter callback and Qdrant's embedded
engine, same run, same data (docs/benchmarks.md, "Filtered search"; issue 37).

Data: npm-minilm-20k, the first N base vectors and Q queries; row i carries `bucket` = i mod
1000 and the filter is `bucket < n` (n = 1, 10, 100, 500, 900: 0.1% .. 90%). Both sides: M=16,
ef_construction=200, inner product, ef=64, k=10, one thread; recall@10 against the exact
filtered top 10.

* ours: the `filter_sweep` example's binary (built beforehand with
  `cargo build --profile test -p allidb-index --example filter_sweep`), run as a subprocess:
  the store's query in process (planner, seed search, scoring).
* hnswlib: `knn_query(q, k=10, filter=lambda label: label % 1000 < n)` (a Python callable per
  visited node, as hnswlib's Python binding offers it) and unfiltered `knn_query`.
* qdrant (`--engines ...,qdrant`, needs `pip install qdrant-edge-py`): an `EdgeShard` in a
  temporary directory, in process: dot product, HNSW m=16 ef_construct=200 (its default
  full_scan_threshold, 10,000 KB), one search thread, one segment asked for; an integer payload
  index on `bucket` created before the points, HNSW built by `optimize()`; the filter is
  `must: [bucket range lt n]`, `hnsw_ef=64`, limit 10. Query vectors are converted to lists
  before timing.

The engines alternate ROUNDS times (default 3); the script prints every round and the medians.

Usage: python3 bench/filter_vs_hnswlib.py OURS_BINARY [--n 20000] [--queries 300] [--rounds 3]
       [--stores planner,exact,walk] [--distinct] [--engines hnswlib,qdrant]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
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


def qdrant_shard(base, workdir):
    """An in-process Qdrant Edge shard holding `base` with an integer payload index on `bucket`."""
    import qdrant_edge as q

    config = q.EdgeConfig(
        vectors=q.EdgeVectorParams(size=base.shape[1], distance=q.Distance.Dot),
        hnsw_config=q.HnswIndexConfig(m=16, ef_construct=200, full_scan_threshold=10000),
        optimizers=q.EdgeOptimizersConfig(default_segment_number=1),
        max_search_threads=1,
    )
    shard = q.EdgeShard.create(os.path.join(workdir, "shard"), config)
    shard.update(q.UpdateOperation.create_field_index("bucket", q.PayloadSchemaType.Integer))
    for start in range(0, base.shape[0], 1000):
        points = [q.Point(i, base[i].tolist(), {"bucket": i % 1000})
                  for i in range(start, min(start + 1000, base.shape[0]))]
        shard.update(q.UpdateOperation.upsert_points(points))
    shard.optimize()
    return shard


def qdrant_round(shard, queries, truths):
    """{selectivity name or 'none': (qps, recall)}"""
    import qdrant_edge as q

    vectors = [v.tolist() for v in queries]
    params = q.SearchParams(hnsw_ef=64)
    out = {}
    for below, name in [(None, "none")] + SELECTIVITIES:
        flt = None if below is None else q.Filter(
            must=[q.FieldCondition(key="bucket", range=q.RangeFloat(lt=below))])
        start = time.perf_counter()
        found = [[p.id for p in shard.query(q.QueryRequest(
            limit=10, query=q.Query.Nearest(v), filter=flt, params=params))] for v in vectors]
        elapsed = time.perf_counter() - start
        recall = np.mean([len(set(f) & t) / 10 for f, t in zip(found, truths[name])])
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
    parser.add_argument("--engines", default="hnswlib",
                        help="others to run beside ours: hnswlib, qdrant (comma-separated)")
    args = parser.parse_args()
    engines = args.engines.split(",")
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
    workdir = tempfile.TemporaryDirectory()
    shard = qdrant_shard(base, workdir.name) if "qdrant" in engines else None
    theirs, ours, qd = [], [], []
    for r in range(args.rounds):
        extra = ["--stores", args.stores] + (["--distinct", "1"] if args.distinct else [])
        parsed, text = ours_round(args.binary, args.n, args.queries, extra)
        print(f"--- round {r + 1}: ours\n{text}", flush=True)
        ours.append(parsed)
        h = hnswlib_round(index, queries, truths)
        theirs.append(h)
        print(f"--- round {r + 1}: hnswlib " + ", ".join(
            f"{k}: {v[0]:.0f} q/s recall {v[1]:.3f}" for k, v in h.items()), flush=True)
        if shard is not None:
            d = qdrant_round(shard, queries, truths)
            qd.append(d)
            print(f"--- round {r + 1}: qdrant " + ", ".join(
                f"{k}: {v[0]:.0f} q/s recall {v[1]:.3f}" for k, v in d.items()), flush=True)
    med = lambda xs: statistics.median(xs)
    labels = list(ours[0].keys())
    print(f"\nMedians of {args.rounds} rounds, {args.n} vectors, {args.queries} queries, k=10, ef=64, one thread")
    header = "| selectivity | hnswlib+filter q/s | recall | x its unfiltered |"
    if qd:
        header += " qdrant q/s | recall | x its unfiltered |"
    for label in labels:
        header += f" {label}: plan | recall | q/s | x our unfiltered | x hnswlib |"
        if qd:
            header += " x qdrant |"
    print(header)
    print("|" + "---|" * (4 + 3 * bool(qd) + (5 + bool(qd)) * len(labels)))
    h_none = med([t["none"][0] for t in theirs])
    for name in ["none"] + [s for _, s in SELECTIVITIES]:
        hq = med([t[name][0] for t in theirs])
        hr = theirs[0][name][1]
        row = f"| {name} | {hq:,.0f} | {hr:.3f} | {hq / h_none:.2f} |"
        if qd:
            dq = med([t[name][0] for t in qd])
            dr = med([t[name][1] for t in qd])
            row += f" {dq:,.0f} | {dr:.3f} | {dq / med([t['none'][0] for t in qd]):.2f} |"
        for label in labels:
            if name not in ours[0][label]:
                row += " - | - | - | - | - |" + (" - |" if qd else "")
                continue
            plan, recall, _, _ = ours[0][label][name]
            q = med([o[label][name][2] for o in ours])
            # The example's own ratio: median of its passes' paired ratios (unfiltered and
            # filtered timed back to back), then the median over rounds.
            ratio = med([o[label][name][3] for o in ours])
            row += f" {plan} | {recall:.3f} | {q:,.0f} | {ratio:.2f} | {q / hq:.2f} |"
            if qd:
                row += f" {q / dq:.2f} |"
        print(row)


if __name__ == "__main__":
    sys.exit(main())
