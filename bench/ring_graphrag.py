"""Graph-RAG questions on one node and on rings (issue 32; docs/benchmarks.md "Cluster-wide
reads"): the one-call question of bench/graphrag_bench.py (npm-minilm-20k with its generated
power-law graph; k 10, 10 seeds, 2 hops over `depends`, the context, fan-out 16, 1,000 nodes)
asked of a single node, a 3-node ring and a 5-node ring (replication factor 3), all on this
machine, in one run.

Per setup: the data loaded through the first node (HTTP, at ONE, then waited on until every
node has indexed every vector and the daemons are idle: the load's dumps, flushes and
compactions done); then the 500 questions with 1 and with --concurrency in
flight, spread over the nodes (client thread i asks node i mod n), reporting questions/s,
p50/p99 latency, and the daemons' CPU time per question summed over every node (/proc: the
figure that predicts scaling on real hosts, since all nodes share this machine's cores;
without the background threads that index, dump, flush and compact what the load wrote,
reported apart); then per hop count (0, 1, 2) the daemons' CPU per question (all questions, 1
in flight, median of the runs; also each node's process CPU apart, background threads
included: with 1 in flight node 0 coordinates every question) and 100 questions with
`explain`, reporting the calls to other nodes per question
(`allidb_cluster_query_calls_total`), the rounds, the most calls one node got and the most
nodes one question's `profile` lists (node 0's covering set shows there). Prints one JSON line per measurement and the ratios to one node.

Usage (from the repository root, after `cargo build --profile test -p allidb-cmd --bins`; the
rings use scripts/dev-cluster.sh's ports 7100-7143):
  python3 bench/ring_graphrag.py [--setups 1,3,5] [--concurrency 4] [--runs 3] [--data DIR]
      [--allidbd PATH]
"""
import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from allidbd_process import Daemon
from graphrag_bench import generate_graph, load, percentile_ms, query_body, read_vecs

HERE = os.path.dirname(os.path.abspath(__file__))


class RingNode(Daemon):
    """Node `i` of a ring started by scripts/dev-cluster.sh in `work` (its fixed ports)."""

    def __init__(self, work, i):  # pylint: disable=super-init-not-called
        base = 7100 + 10 * i
        self.grpc = f"127.0.0.1:{base}"
        self.http = ("127.0.0.1", base + 1)
        self.admin = f"127.0.0.1:{base + 2}"
        with open(os.path.join(work, "pids")) as pids:
            self.pid = int(pids.read().split()[i])

    def cpu_seconds(self):
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        os.kill(self.pid, 15)
        while os.path.exists(f"/proc/{self.pid}"):
            time.sleep(0.1)


class Single(Daemon):
    """A single node, with its pid where RingNode keeps it."""

    @property
    def pid(self):
        return self.process.pid


def start(nodes, binary, work):
    if nodes == 1:
        return [Single(binary, work)]
    subprocess.run([os.path.join(HERE, "../scripts/dev-cluster.sh"), "--nodes", str(nodes),
                    "--dir", work, "--bin", binary], check=True, stdout=subprocess.DEVNULL)
    ring = [RingNode(work, i) for i in range(nodes)]
    for _ in range(600):
        status = json.load(urllib.request.urlopen(f"http://{ring[0].admin}/cluster/status"))
        if sum(n["status"] == "normal" for n in status["nodes"]) == nodes:
            return ring
        time.sleep(0.2)
    raise SystemExit(f"the {nodes}-node ring did not form")


# The daemon's background threads (vector indexing and index dumps, memtable flushes,
# compactions): what a load leaves for later, not a question's work.
BACKGROUND_THREADS = ("allidb-indexer", "allidb-flush", "allidb-compact")


def background_cpu_seconds(pid):
    """User + system CPU time so far of the background threads of process `pid` (Linux
    /proc, per thread)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as stat:
                text = stat.read()
        except FileNotFoundError:
            continue
        if text[text.index("(") + 1:text.rindex(")")].startswith(BACKGROUND_THREADS):
            fields = text.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def question_cpu_seconds(nodes):
    """(CPU time so far of the nodes' processes without their background threads, of the
    background threads), summed over the nodes."""
    total = sum(n.cpu_seconds() for n in nodes)
    background = sum(background_cpu_seconds(n.pid) for n in nodes)
    return total - background, background


def settle(nodes, idle_share=0.1, seconds=2.0, limit=300.0):
    """Waits until every vector is indexed and the daemons, summed, use at most `idle_share`
    of one core over `seconds` (the dumps, flushes and compactions the load started are done),
    or `limit` seconds have passed; returns the seconds waited."""
    start_at = time.perf_counter()
    while sum(n.pending() for n in nodes) > 0 and time.perf_counter() - start_at < limit:
        time.sleep(1)
    while time.perf_counter() - start_at < limit:
        cpu = sum(n.cpu_seconds() for n in nodes)
        time.sleep(seconds)
        if sum(n.cpu_seconds() for n in nodes) - cpu <= idle_share * seconds:
            break
    return time.perf_counter() - start_at


def metric(node, name):
    text = urllib.request.urlopen(f"http://{node.admin}/metrics").read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name))


def profile_bytes(profiles, field):
    """The mean over `profiles` (replies' `profile`) of `field` summed over the nodes asked."""
    return round(float(np.mean([sum(n.get(field, 0) for n in p.get("nodes", []))
                                for p in profiles])) if profiles else 0.0)


def ask_all(nodes, vectors, concurrency, ef=64, **overrides):
    """Questions/s, latencies (s), replies, daemon CPU per question summed over the nodes (s;
    without the background threads, see `question_cpu_seconds`), calls to other nodes per
    question and the background threads' CPU per question (s)."""
    local = threading.local()
    counter = iter(range(1 << 30))
    lock = threading.Lock()

    def ask(i):
        if not hasattr(local, "connection"):
            with lock:
                local.node = nodes[next(counter) % len(nodes)]
            local.connection = local.node.connection()
        body = json.dumps(query_body(vectors[i], ef, 16, 1000, **overrides))
        t0 = time.perf_counter()
        data = local.node.post(local.connection, "/query", body)
        return time.perf_counter() - t0, json.loads(data)

    calls = sum(metric(n, "allidb_cluster_query_calls_total") for n in nodes)
    cpu, background = question_cpu_seconds(nodes)
    start_at = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        replies = list(pool.map(ask, range(len(vectors))))
    elapsed = time.perf_counter() - start_at
    cpu_after, background_after = question_cpu_seconds(nodes)
    calls = (sum(metric(n, "allidb_cluster_query_calls_total") for n in nodes) - calls)
    return (len(vectors) / elapsed, [r[0] for r in replies], [r[1] for r in replies],
            (cpu_after - cpu) / len(vectors), calls / len(vectors),
            (background_after - background) / len(vectors))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(HERE, "../../shared/data/npm-minilm-20k"))
    parser.add_argument("--allidbd", default=os.path.join(HERE, "../target/debug/allidbd"))
    parser.add_argument("--setups", default="1,3,5")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args()
    base = read_vecs(os.path.join(args.data, "base.fvecs"), np.float32)
    queries = read_vecs(os.path.join(args.data, "query.fvecs"), np.float32).tolist()
    depends, mentions, _ = generate_graph(len(base), args.seed)
    print(f"# machine: {os.cpu_count()} cores, load {os.getloadavg()}")
    results = {}
    for nodes in [int(n) for n in args.setups.split(",")]:
        with tempfile.TemporaryDirectory() as work:
            ring = start(nodes, os.path.abspath(args.allidbd), work)
            try:
                edges, seconds = load(ring[0], base, depends, mentions)
                settled = settle(ring)
                setup = "1 node" if nodes == 1 else f"{nodes} nodes RF 3"
                print(json.dumps({"setup": setup, "loaded_edges": edges,
                                  "load_seconds": round(seconds, 1),
                                  "settle_seconds": round(settled, 1)}))
                for concurrency in (1, args.concurrency):
                    runs = [ask_all(ring, queries, concurrency) for _ in range(args.runs)]
                    rate = float(np.median([r[0] for r in runs]))
                    latencies = [t for r in runs for t in r[1]]
                    cpu = float(np.median([r[3] for r in runs]))
                    results[(nodes, concurrency)] = (rate, cpu)
                    print(json.dumps({
                        "setup": setup, "in_flight": concurrency, "questions_per_sec": round(rate, 1),
                        "p50_ms": round(percentile_ms(latencies, 50), 2),
                        "p99_ms": round(percentile_ms(latencies, 99), 2),
                        "daemon_cpu_ms_per_question": round(cpu * 1000, 3),
                        "background_cpu_ms_per_question": round(
                            float(np.median([r[5] for r in runs])) * 1000, 3),
                        "calls_to_other_nodes_per_question": round(runs[0][4], 2),
                        "runs_questions_per_sec": [round(r[0], 1) for r in runs]}))
                for hops in (0, 1, 2):
                    cpus, by_node = [], []
                    for _ in range(args.runs):
                        before = [n.cpu_seconds() for n in ring]
                        cpus.append(ask_all(ring, queries, 1, max_hops=hops)[3])
                        by_node.append([(n.cpu_seconds() - b) / len(queries)
                                        for n, b in zip(ring, before)])
                    _, _, replies, _, calls, _ = ask_all(ring, queries[:100], 1, max_hops=hops,
                                                      explain=True)
                    profiles = [r.get("profile") or {} for r in replies]
                    print(json.dumps({
                        "setup": setup, "max_hops": hops,
                        "daemon_cpu_ms_per_question": round(float(np.median(cpus)) * 1000, 3),
                        "process_cpu_ms_per_question_by_node": [
                            round(float(np.median([run[i] for run in by_node])) * 1000, 3)
                            for i in range(len(ring))],
                        "calls_to_other_nodes_per_question": round(calls, 2),
                        "rounds_max": max((p.get("rounds", 0) for p in profiles), default=0),
                        "nodes_in_profile_max": max((len(p.get("nodes", [])) for p in profiles),
                                                    default=0),
                        "calls_per_node_max": max((n.get("calls", 0) for p in profiles
                                                   for n in p.get("nodes", [])), default=0),
                        "bytes_sent_per_question": profile_bytes(profiles, "bytes_sent"),
                        "bytes_received_per_question": profile_bytes(profiles, "bytes_received")}))
            finally:
                for node in ring:
                    node.stop()
    for (nodes, concurrency), (rate, cpu) in sorted(results.items()):
        one = results.get((1, concurrency))
        if one and nodes != 1:
            print(json.dumps({"setup": f"{nodes} nodes RF 3 / 1 node", "in_flight": concurrency,
                              "rate_ratio": round(rate / one[0], 2),
                              "cpu_per_question_ratio": round(cpu / one[1], 2)}))


if __name__ == "__main__":
    main()
