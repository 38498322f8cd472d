"""Recall@10 and daemon CPU per question against the query's `ef`, on one node and on a 5-node
ring (replication factor 3), all on this machine (issue 32; docs/cluster.md "Candidates": the
per-node ef rule, docs/benchmarks.md "The per-node ef rule").

Per setup: the data of bench/ring_graphrag.py loaded (npm-minilm-20k with its generated graph,
through the first node, waited on until indexed and idle), then the 500 queries as 0-hop
questions (k 10, 10 seeds, no context) with 1 in flight at each `ef` of --efs (sent in the
request), each --runs times: recall@10 against the data set's exact top 10
(groundtruth.ivecs) and the daemons' CPU per question summed over the nodes (without their
background threads). A ring's nodes apply the per-node ef rule to the `ef` sent; a daemon
before it searched with the `ef` sent on every covering node.

Usage (from the repository root, after `cargo build --profile test -p allidb-cmd --bins`):
  python3 bench/ring_ef.py [--setups 1,5] [--efs 16,24,32,48,64] [--runs 2] [--data DIR]
      [--allidbd PATH]
"""
import argparse
import json
import os
import tempfile

import numpy as np

from graphrag_bench import generate_graph, load, read_vecs
from ring_graphrag import HERE, ask_all, settle, start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(HERE, "../../shared/data/npm-minilm-20k"))
    parser.add_argument("--allidbd", default=os.path.join(HERE, "../target/debug/allidbd"))
    parser.add_argument("--setups", default="1,5")
    parser.add_argument("--efs", default="16,24,32,48,64")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args()
    base = read_vecs(os.path.join(args.data, "base.fvecs"), np.float32)
    queries = read_vecs(os.path.join(args.data, "query.fvecs"), np.float32).tolist()
    truth = read_vecs(os.path.join(args.data, "groundtruth.ivecs"), np.int32)[:, :10]
    depends, mentions, _ = generate_graph(len(base), args.seed)
    print(f"# machine: {os.cpu_count()} cores, load {os.getloadavg()}")
    for nodes in [int(n) for n in args.setups.split(",")]:
        with tempfile.TemporaryDirectory() as work:
            ring = start(nodes, os.path.abspath(args.allidbd), work)
            try:
                load(ring[0], base, depends, mentions)
                settle(ring)
                for ef in [int(e) for e in args.efs.split(",")]:
                    runs = [ask_all(ring, queries, 1, ef=ef, max_hops=0, include_context=False)
                            for _ in range(args.runs)]
                    found = 0
                    for i, reply in enumerate(runs[0][2]):
                        ids = {int(r["entity_id"][1:]) for r in reply.get("results", [])}
                        found += len(ids & set(truth[i].tolist()))
                    print(json.dumps({
                        "setup": "1 node" if nodes == 1 else f"{nodes} nodes RF 3", "ef": ef,
                        "recall_at_10": round(found / (10 * len(runs[0][2])), 4),
                        "daemon_cpu_ms_per_question": [round(r[3] * 1000, 3) for r in runs],
                        "calls_to_other_nodes_per_question": round(runs[0][4], 2)}), flush=True)
            finally:
                for node in ring:
                    node.stop()


if __name__ == "__main__":
    main()
