"""Two allidbd builds on one 5-node ring (issue 32; docs/benchmarks.md "Cluster-wide reads: the
last hop's facts with the hop before it"): the ring is started and loaded once (the data of
bench/ring_graphrag.py), then every daemon is restarted on the same data directories with one
binary, then the other, alternated --reps times, so both builds run on the same token layout
and covering set. Per build and restart: --runs runs of the 500 questions per hop count (0, 1,
2) at 1 in flight and the benchmark's question at 4 in flight; prints one JSON line with the
daemons' CPU per question summed over the nodes (ms), the calls to other nodes per question and
the p50 latency (ms).

Usage (from the repository root; the ring uses scripts/dev-cluster.sh's ports 7100-7143):
  python3 bench/ring_ab.py BINARY_A BINARY_B [--reps 3] [--runs 2]
"""
import argparse
import json
import os
import subprocess
import tempfile
import time
import urllib.request

import numpy as np

from graphrag_bench import generate_graph, load, read_vecs
from ring_graphrag import ask_all, settle, start

HERE = os.path.dirname(os.path.abspath(__file__))


def stop(ring, children):
    """Stops every node of `ring` (`children`: the ones this script started, by index)."""
    for i, node in enumerate(ring):
        if i in children:
            children[i].terminate()
            children[i].wait()
        else:
            node.stop()


def restart(ring, work, binary, children):
    """Stops every node of `ring` and starts it again on its data directory with `binary`."""
    stop(ring, children)
    for i, node in enumerate(ring):
        directory = os.path.join(work, f"n{i}")
        with open(os.path.join(directory, "allidbd.log"), "a") as log:
            child = subprocess.Popen([binary, "--config", os.path.join(directory, "allidb.toml")],
                                     stdout=subprocess.DEVNULL, stderr=log)
        node.pid = child.pid
        children[i] = child
    for _ in range(600):
        try:
            status = json.load(urllib.request.urlopen(f"http://{ring[0].admin}/cluster/status"))
            ready = all(urllib.request.urlopen(f"http://{n.admin}/readyz").status == 200
                        for n in ring)
            if ready and sum(n["status"] == "normal" for n in status["nodes"]) == len(ring):
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("the ring did not come back")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("binaries", nargs=2)
    parser.add_argument("--data", default=os.path.join(HERE, "../../shared/data/npm-minilm-20k"))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    binaries = [os.path.abspath(b) for b in args.binaries]
    base = read_vecs(os.path.join(args.data, "base.fvecs"), np.float32)
    queries = read_vecs(os.path.join(args.data, "query.fvecs"), np.float32).tolist()
    depends, mentions, _ = generate_graph(len(base), 20)
    children = {}
    with tempfile.TemporaryDirectory() as work:
        ring = start(5, binaries[0], work)
        try:
            load(ring[0], base, depends, mentions)
            settle(ring)
            for rep in range(args.reps):
                for binary in binaries:
                    restart(ring, work, binary, children)
                    settle(ring)
                    ask_all(ring, queries[:100], 1, max_hops=2)
                    line = {"binary": binary, "rep": rep}
                    for hops in (0, 1, 2):
                        runs = [ask_all(ring, queries, 1, max_hops=hops)
                                for _ in range(args.runs)]
                        line[f"hops_{hops}_cpu_ms"] = round(
                            float(np.median([r[3] for r in runs])) * 1000, 3)
                        line[f"hops_{hops}_calls"] = round(runs[0][4], 2)
                        line[f"hops_{hops}_p50_ms"] = round(
                            float(np.median([t for r in runs for t in r[1]])) * 1000, 3)
                    rate, _, _, cpu, calls, _ = ask_all(ring, queries, 4)
                    line.update({"question_4_in_flight_cpu_ms": round(cpu * 1000, 3),
                                 "question_4_in_flight_calls": round(calls, 2),
                                 "question_4_in_flight_per_sec": round(rate, 1)})
                    print(json.dumps(line), flush=True)
        finally:
            stop(ring, children)


if __name__ == "__main__":
    main()
