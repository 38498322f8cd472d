"""Graph-RAG in one call (issue 20): one `POST /query` to a live allidbd versus hnswlib plus a
breadth-first walk in one Python process, on npm-minilm-20k with a generated power-law graph.

What it measures, all in one run on one machine (docs/benchmarks.md, "Graph-RAG in one call"):
  1. A graph over the 20,000 base vectors, generated here with a fixed seed: relation `depends`
     with power-law out-degrees (Pareto tail index 1.2, 1..=500) to power-law popular targets,
     plus 8 hubs with 1,000 to 6,000 out-edges each (and 150 random in-edges each), and a
     noise relation `mentions` (one edge per entity) that the walks must skip. Weights are
     distinct float32 values.
  2. A fresh `allidbd` (--allidbd, default target/debug/allidbd) on loopback ports with its own
     temporary data directory, loaded through the HTTP gateway (`POST /entities/batch`,
     `POST /edges`), then waited on until every vector is in HNSW.
  3. Per question (the 500 query vectors) the exact answer: the exact 10 nearest (brute force)
     and from them (a) the uncapped exact 2-hop set over `depends` and (b) the exact walk with
     the request's caps (the daemon's rules: per entity at most FAN_OUT new entities, heaviest
     edge first, ties by id; at most MAX_NODES entities; no edge budget).
  4. For each cap setting (--caps, FAN_OUT:MAX_NODES pairs), RUNS times, interleaved:
     - allidbd: one `POST /query` per question (k 10, seeds 10, max_hops 2, relations
       [depends], include_context, ef EF, include_entity false, max_context_bytes 16 MiB so
       that only the fan-out and node caps cut the context) with 1 question in flight, then
       with --concurrency questions in flight (one keep-alive connection per client thread);
       then the same `Query` through the Python client (`allidb.Client.query`, imported from
       clients/python/src; one gRPC channel shared by the client threads), whose reply is the
       same context as `allidb` dataclasses (`--clients http,grpc` is the default); with
       `cli` in --clients, the same question (`--context`, 2,000 questions cycling over the
       500) through `allidb bench query` (--allidb, default next to --allidbd), a Rust gRPC
       client that only counts the context's entities: the rate without a Python client's
       cost (its set recall is the other clients', the daemon answering the same way; with
       `--clients cli` alone one HTTP pass measures it);
     - hnswlib (M 16, ef_construction 200, the same ef) + the same capped walk in Python, one
       thread;
     reporting questions/s and set recall of the context entity set (summed over questions)
     against (a) and (b), the client's own JSON cost per question (encode + parse; HTTP only)
     and the daemon's CPU time per question (from /proc, Linux), and with the medians the
     daemon-only ratio: hnswlib+BFS's time per question over the daemon's CPU per question.
  5. The cost of `scoring = personalized_pagerank` over the unified score: p50/p99 latency per
     query with 1 in flight and without the context in the reply, for questions whose walk
     expands a hub (a hub at hop 0 or 1, so its edges are in the visited subgraph) and for the
     rest.
  6. Where the daemon's time goes (the question with max_hops 0, without the context, in full):
     p50 latency, the daemon's CPU time per question (/proc) and the client's JSON cost.
Prints medians over the runs (and each run). Needs numpy and hnswlib (and grpcio and protobuf
for the gRPC client). `--rate-only` stops after step 4.

Usage (from the repository root, after `cargo build --profile test -p allidb-cmd --bins`):
  python3 bench/graphrag_bench.py [--runs 3] [--ef 64] [--concurrency 4] \
      [--caps 16:1000,10000:20000] [--clients http,grpc] [--rate-only] [--data DIR] \
      [--allidbd PATH] [--allidb PATH]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import hnswlib
import numpy as np

from allidbd_process import Daemon

HERE = os.path.dirname(os.path.abspath(__file__))
RELATION = "depends"
HUB_DEGREES = [1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000]
HUB_SOURCES = 150


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    rows = raw.reshape(-1, raw[0] + 1)[:, 1:]
    return np.ascontiguousarray(rows.view(dtype))


def entity_id(row):
    """Zero-padded, so the daemon's tie order (id ascending) is the row order."""
    return f"p{row:05d}"


def generate_graph(n, seed):
    """{row: [(weight, target), ...]} for `depends`, the `mentions` edges, and the hub rows."""
    rng = np.random.default_rng(seed)
    popularity = np.empty(n)
    popularity[rng.permutation(n)] = np.arange(1, n + 1, dtype=float) ** -0.8
    popularity /= popularity.sum()
    degrees = np.minimum(np.floor((1.0 - rng.random(n)) ** (-1 / 1.2)), 500).astype(int)
    hubs = rng.choice(n, size=len(HUB_DEGREES), replace=False)
    drawn = rng.choice(n, size=int(degrees.sum()), p=popularity)
    targets_of = dict(enumerate(np.split(drawn, np.cumsum(degrees)[:-1])))
    for hub, degree in zip(hubs, HUB_DEGREES):
        targets_of[int(hub)] = rng.choice(n, size=degree, replace=False)
    # HUB_SOURCES random entities depend on each hub, so that about half of the questions walk
    # through one.
    for hub in hubs:
        for source in rng.choice(n, size=HUB_SOURCES, replace=False):
            targets_of[int(source)] = np.append(targets_of[int(source)], hub)
    # Distinct float32 weights in [0.05, 1): no ties, exact through JSON and the daemon's f32.
    depends = {}
    for row in range(n):
        unique = sorted({int(t) for t in targets_of[row]} - {row})
        weights = (0.05 + 0.95 * rng.random(len(unique))).astype(np.float32)
        depends[row] = sorted(zip(weights.tolist(), unique), key=lambda e: (-e[0], e[1]))
    mentions = [(row, int(t)) for row, t in enumerate(rng.integers(0, n, size=n)) if t != row]
    return depends, mentions, {int(h) for h in hubs}


def capped_walk(seeds, depends, fan_out, max_nodes, hops=2):
    """The daemon's walk restricted to the entity set (no edge budget): breadth first, per
    expanded entity the first `fan_out` edges to new entities in (weight desc, id) order."""
    order = []
    seen = set()
    for seed in seeds:
        if seed not in seen:
            if len(order) >= max_nodes:
                return order
            seen.add(seed)
            order.append(seed)
    start = 0
    for _ in range(hops):
        end = len(order)
        for i in range(start, end):
            followed = 0
            for _, target in depends[order[i]]:
                if target in seen:
                    continue
                if followed >= fan_out:
                    break
                if len(order) >= max_nodes:
                    return order
                seen.add(target)
                order.append(target)
                followed += 1
        if len(order) == end:
            break
        start = end
    return order


def load(daemon, base, depends, mentions):
    connection = daemon.connection()
    start = time.perf_counter()
    for first in range(0, len(base), 500):
        entities = [{"entity_id": entity_id(row), "entity_type": "package",
                     "embeddings": [{"vector": base[row].tolist()}]}
                    for row in range(first, min(first + 500, len(base)))]
        daemon.post(connection, "/entities/batch", json.dumps({"entities": entities}))
    edges = [(row, RELATION, target, weight)
             for row, out in depends.items() for weight, target in out]
    edges += [(row, "mentions", target, 1.0) for row, target in mentions]
    for first in range(0, len(edges), 10000):
        body = [{"from_entity": entity_id(f), "to_entity": entity_id(t), "relation": r, "weight": w}
                for f, r, t, w in edges[first:first + 10000]]
        daemon.post(connection, "/edges", json.dumps({"edges": body}))
    while daemon.pending() > 0:
        time.sleep(1)
    return len(edges), time.perf_counter() - start


def query_body(vector, ef, fan_out, max_nodes, pagerank=False, **overrides):
    body = {"query_vector": vector, "k": 10, "seeds": 10, "max_hops": 2, "relations": [RELATION],
            "direction": "out", "ef": ef, "include_entity": False, "include_context": True,
            "max_fan_out": fan_out, "max_nodes": max_nodes, "max_context_bytes": 16 << 20}
    if pagerank:
        body["scoring"] = "personalized_pagerank"
    body.update(overrides)
    return body


def ask_grpc(client, vector, ef, fan_out, max_nodes):
    """One question through the Python client: (context id set, truncation names, expanded
    entities)."""
    context = client.query(
        vector, k=10, seeds=10, hops=2, relations=[RELATION], direction="out", ef=ef,
        include_entity=False, include_context=True, max_fan_out=fan_out, max_nodes=max_nodes,
        max_context_bytes=16 << 20).context
    ids = {int(node.id[1:]) for node in context.nodes}
    expanded = {int(node.id[1:]) for node in context.nodes if node.hop < 2}
    return ids, tuple(context.truncated_by), expanded


def run_daemon(daemon, vectors, ef, fan_out, max_nodes, concurrency, pagerank=False,
               client=None, **overrides):
    """Questions/s, per-question latencies (s), context id sets, truncation names, client JSON
    cost per question (s; None through `client`, an `allidb.Client`), the expanded entities
    (hop 0 or 1) of each question, and the daemon's CPU time per question (s)."""
    local = threading.local()
    client_seconds = [0.0]
    lock = threading.Lock()

    def ask_client(i):
        t0 = time.perf_counter()
        ids, cut, expanded = ask_grpc(client, vectors[i], ef, fan_out, max_nodes)
        return time.perf_counter() - t0, ids, cut, expanded

    def ask(i):
        if not hasattr(local, "connection"):
            local.connection = daemon.connection()
        t0 = time.perf_counter()
        body = json.dumps(query_body(vectors[i], ef, fan_out, max_nodes, pagerank, **overrides))
        t1 = time.perf_counter()
        data = daemon.post(local.connection, "/query", body)
        t2 = time.perf_counter()
        context = json.loads(data).get("context") or {"nodes": []}
        t3 = time.perf_counter()
        with lock:
            client_seconds[0] += (t1 - t0) + (t3 - t2)
        ids = {int(node["entity_id"][1:]) for node in context["nodes"]}
        expanded = {int(node["entity_id"][1:])
                    for node in context["nodes"] if node.get("hop", 0) < 2}
        return t3 - t0, ids, tuple(context.get("truncated_by", [])), expanded

    cpu = daemon.cpu_seconds()
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        replies = list(pool.map(ask if client is None else ask_client, range(len(vectors))))
    elapsed = time.perf_counter() - start
    cpu = (daemon.cpu_seconds() - cpu) / len(vectors)
    client_json = None if client is not None else client_seconds[0] / len(vectors)
    return (len(vectors) / elapsed, [r[0] for r in replies], [r[1] for r in replies],
            [r[2] for r in replies], client_json, [r[3] for r in replies], cpu)


def run_cli(daemon, cli, data, ef, fan_out, max_nodes, concurrency, count=2000):
    """Questions/s through `allidb bench query --context`, the mean context entities per
    question, and the daemon's CPU time per question (s)."""
    cpu = daemon.cpu_seconds()
    out = subprocess.run(
        [cli, "--json", "--addr", daemon.grpc, "bench", "query", "--skip-ingest",
         "--vectors", os.path.join(data, "base.fvecs"),
         "--queries", os.path.join(data, "query.fvecs"),
         "--ground-truth", os.path.join(data, "groundtruth.ivecs"),
         "-n", str(count), "-k", "10", "--seeds", "10", "--max-hops", "2",
         "--relations", RELATION, "--ef", str(ef), "--fan-out", str(fan_out),
         "--max-nodes", str(max_nodes), "--context", "--concurrency", str(concurrency)],
        check=True, capture_output=True, text=True).stdout
    cpu = (daemon.cpu_seconds() - cpu) / count
    report = json.loads(out.strip().splitlines()[-1])
    entities = float(dict(report["parameters"])["context_entities_per_query"])
    return report["items_per_sec"], entities, cpu


def run_hnswlib(index, queries, depends, fan_out, max_nodes):
    sets = []
    start = time.perf_counter()
    for query in queries:
        labels, _ = index.knn_query(query, k=10)
        sets.append(set(capped_walk(labels[0].tolist(), depends, fan_out, max_nodes)))
    return len(queries) / (time.perf_counter() - start), sets


def recall(found, exact):
    return sum(len(f & e) for f, e in zip(found, exact)) / sum(len(e) for e in exact)


def median(values):
    return float(np.median(values))


def percentile_ms(latencies, q):
    return float(np.percentile(latencies, q)) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(HERE, "../../shared/data/npm-minilm-20k"))
    parser.add_argument("--allidbd", default=os.path.join(HERE, "../target/debug/allidbd"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ef", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--caps", default="16:1000,10000:20000")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--clients", default="http,grpc",
                        help="comma-separated: http (POST /query, JSON), grpc (allidb.Client), "
                             "cli (allidb bench query)")
    parser.add_argument("--allidb", default=None,
                        help="the allidb CLI for --clients cli (default: next to --allidbd)")
    parser.add_argument("--rate-only", action="store_true",
                        help="skip the PageRank and breakdown sections")
    args = parser.parse_args()
    caps = [tuple(int(x) for x in pair.split(":")) for pair in args.caps.split(",")]
    clients = args.clients.split(",")
    if not set(clients) <= {"http", "grpc", "cli"}:
        sys.exit(f"--clients: unknown client in {args.clients!r}")

    cli = args.allidb or os.path.join(os.path.dirname(args.allidbd), "allidb")
    base = read_vecs(os.path.join(args.data, "base.fvecs"), np.float32)
    queries = read_vecs(os.path.join(args.data, "query.fvecs"), np.float32)
    depends, mentions, hubs = generate_graph(len(base), args.seed)
    degrees = np.array([len(out) for out in depends.values()])
    print(f"# machine: {os.cpu_count()} cores, load {os.getloadavg()}")
    print(f"# graph: {degrees.sum()} `{RELATION}` edges (out-degree mean {degrees.mean():.1f}, "
          f"median {np.median(degrees):.0f}, p99 {np.percentile(degrees, 99):.0f}, "
          f"max {degrees.max()}), hubs {sorted(degrees[list(hubs)].tolist())}, "
          f"{len(mentions)} `mentions` edges; seed {args.seed}")

    exact_seeds = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    uncapped = [set(capped_walk(s.tolist(), depends, len(base), len(base))) for s in exact_seeds]
    print(f"# uncapped exact 2-hop sets: mean {np.mean([len(s) for s in uncapped]):.0f} entities, "
          f"max {max(len(s) for s in uncapped)}")

    index = hnswlib.Index(space="ip", dim=base.shape[1])
    index.init_index(max_elements=len(base), M=16, ef_construction=200, random_seed=100)
    index.add_items(base, np.arange(len(base)))
    index.set_ef(args.ef)
    index.set_num_threads(1)

    vectors = [q.tolist() for q in queries]
    with tempfile.TemporaryDirectory(prefix="graphrag-bench.") as work:
        daemon = Daemon(args.allidbd, work, ["--set", "query.max_expansion_nodes=20000"])
        grpc_client = None
        if "grpc" in clients:
            sys.path.insert(0, os.path.join(HERE, "../clients/python/src"))
            import allidb
            grpc_client = allidb.Client(daemon.grpc, timeout=120)
        try:
            edge_count, seconds = load(daemon, base, depends, mentions)
            print(f"# loaded {len(base)} entities and {edge_count} edges in {seconds:.1f} s "
                  f"(HNSW pending 0)")
            for fan_out, max_nodes in caps:
                capped = [set(capped_walk(s.tolist(), depends, fan_out, max_nodes))
                          for s in exact_seeds]
                print(f"\n## caps: max_fan_out {fan_out}, max_nodes {max_nodes}, ef {args.ef} "
                      f"(capped exact sets: mean {np.mean([len(s) for s in capped]):.0f})")
                figures = {"hnsw": []}
                cpus = {}
                if clients == ["cli"]:
                    _, _, sets, _, _, _, _ = run_daemon(
                        daemon, vectors, args.ef, fan_out, max_nodes, 1)
                    print(f"allidbd (one HTTP pass for the cli client's answers): recall vs "
                          f"capped {recall(sets, capped):.4f}, vs uncapped "
                          f"{recall(sets, uncapped):.4f}")
                for run in range(1, args.runs + 1):
                    for kind in clients:
                        for concurrency in (1, args.concurrency):
                            if kind == "cli":
                                qps, entities, cpu = run_cli(
                                    daemon, cli, args.data, args.ef, fan_out, max_nodes,
                                    concurrency)
                                figures.setdefault((kind, concurrency), []).append(qps)
                                cpus.setdefault((kind, concurrency), []).append(cpu)
                                print(f"run {run} allidbd cli, {concurrency} in flight: "
                                      f"{qps:.0f} q/s, context {entities:.1f} entities/q, "
                                      f"daemon CPU {cpu * 1000:.2f} ms/q")
                                continue
                            qps, _, sets, cut, client, _, cpu = run_daemon(
                                daemon, vectors, args.ef, fan_out, max_nodes, concurrency,
                                client=grpc_client if kind == "grpc" else None)
                            figures.setdefault((kind, concurrency), []).append(qps)
                            cpus.setdefault((kind, concurrency), []).append(cpu)
                            cuts = {name for names in cut for name in names}
                            json_cost = ("" if client is None
                                         else f"client JSON {client * 1000:.2f} ms/q, ")
                            print(f"run {run} allidbd {kind}, {concurrency} in flight: "
                                  f"{qps:.0f} q/s, "
                                  f"recall vs capped {recall(sets, capped):.4f}, "
                                  f"vs uncapped {recall(sets, uncapped):.4f}, {json_cost}"
                                  f"daemon CPU {cpu * 1000:.2f} ms/q, "
                                  f"truncated_by {sorted(cuts)}")
                    qps, sets = run_hnswlib(index, queries, depends, fan_out, max_nodes)
                    figures["hnsw"].append(qps)
                    print(f"run {run} hnswlib+BFS: {qps:.0f} q/s, "
                          f"recall vs capped {recall(sets, capped):.4f}, "
                          f"vs uncapped {recall(sets, uncapped):.4f}")
                hnsw = median(figures["hnsw"])
                for kind in clients:
                    for concurrency in (1, args.concurrency):
                        qps = median(figures[(kind, concurrency)])
                        cpu = median(cpus[(kind, concurrency)])
                        print(f"median: allidbd {kind} {concurrency} in flight {qps:.0f} q/s "
                              f"({qps / hnsw:.2f}x), daemon CPU {cpu * 1000:.2f} ms/q "
                              f"(daemon-only {1 / hnsw / cpu:.2f}x)")
                print(f"median: hnswlib+BFS {hnsw:.0f} q/s ({1000 / hnsw:.2f} ms/q)")
                if args.rate_only:
                    continue

                # PageRank versus unified, 1 in flight, without the context in the reply (so the
                # client's JSON does not blur the difference), split by whether the question's
                # walk expands a hub (known from one pass with the context).
                _, _, sets, _, _, expanded, _ = run_daemon(
                    daemon, vectors, args.ef, fan_out, max_nodes, 1)
                with_hub = [bool(s & hubs) for s in expanded]
                for hub in (True, False):
                    sizes = [len(s) for s, h in zip(sets, with_hub) if h == hub]
                    print(f"hubs {'yes' if hub else 'no '}: {len(sizes)} questions, "
                          f"context mean {np.mean(sizes):.0f} entities")
                rows = {}
                for run in range(1, args.runs + 1):
                    for pagerank in (False, True):
                        _, latencies, _, _, _, _, _ = run_daemon(
                            daemon, vectors, args.ef, fan_out, max_nodes, 1, pagerank,
                            include_context=False)
                        for hub in (True, False):
                            picked = [t for t, h in zip(latencies, with_hub) if h == hub]
                            rows.setdefault((pagerank, hub), []).append(
                                (percentile_ms(picked, 50), percentile_ms(picked, 99)))
                for (pagerank, hub), values in sorted(rows.items()):
                    p50 = median([v[0] for v in values])
                    p99 = median([v[1] for v in values])
                    print(f"{'pagerank' if pagerank else 'unified '} hubs {'yes' if hub else 'no '}"
                          f": p50 {p50:.2f} ms, p99 {p99:.2f} ms "
                          f"(runs: {', '.join(f'{v[0]:.2f}/{v[1]:.2f}' for v in values)})")

                # Where the daemon's time goes: the same question without the walk, without
                # the context in the reply, and in full (1 in flight, median of the runs).
                for label, overrides in (
                        ("max_hops 0, no context", {"max_hops": 0, "include_context": False}),
                        ("max_hops 2, no context", {"include_context": False}),
                        ("max_hops 2, context", {})):
                    p50s, cpus, clients = [], [], []
                    for _ in range(args.runs):
                        _, latencies, _, _, client, _, cpu = run_daemon(
                            daemon, vectors, args.ef, fan_out, max_nodes, 1, **overrides)
                        p50s.append(percentile_ms(latencies, 50))
                        cpus.append(cpu * 1000)
                        clients.append(client * 1000)
                    print(f"breakdown {label}: p50 {median(p50s):.2f} ms, daemon CPU "
                          f"{median(cpus):.2f} ms/q, client JSON {median(clients):.2f} ms/q")
        finally:
            if grpc_client is not None:
                grpc_client.close()
            daemon.stop()


if __name__ == "__main__":
    main()
