"""hnswlib reference sweep on a TEXMEX-format data set (same protocol as index/examples/ann_sweep.rs).

M=16, ef_construction=200, inner product on the (already normalised) vectors: build rate on one
thread and on THREADS threads (default: all cores), then recall@10 (by id, and tie-aware: a
returned row is a hit when its exact similarity is at least the 10th best minus 1e-5) and QPS on
one thread for ef in 16..256. With GAP_US > 0 each query is timed alone and followed by GAP_US
microseconds of sleep, as a daemon's searches are separated by the round trip when a client asks
one question at a time; QPS is then one over the mean query time (the sleeps not counted).
Usage: python3 bench/hnswlib_sweep.py [DATA_DIR] [THREADS] [GAP_US]
"""
import os
import sys
import time

import hnswlib
import numpy as np


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    rows = raw.reshape(-1, dim + 1)[:, 1:]
    return rows.view(dtype) if dtype != np.int32 else rows


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    data_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "../../shared/data/npm-minilm-20k")
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else os.cpu_count()
    gap = int(sys.argv[3]) / 1e6 if len(sys.argv) > 3 else 0.0
    base = np.ascontiguousarray(read_vecs(f"{data_dir}/base.fvecs", np.float32))
    queries = np.ascontiguousarray(read_vecs(f"{data_dir}/query.fvecs", np.float32))
    truth = read_vecs(f"{data_dir}/groundtruth.ivecs", np.int32)
    # The 10th best exact similarity of each query, for tie-aware recall.
    exact = queries @ base.T
    tenth = -np.partition(-exact, 9, axis=1)[:, 9]
    for build_threads in (threads, 1):
        index = hnswlib.Index(space="ip", dim=base.shape[1])
        index.init_index(max_elements=base.shape[0], M=16, ef_construction=200, random_seed=100)
        index.set_num_threads(build_threads)
        start = time.perf_counter()
        index.add_items(base, np.arange(base.shape[0]))
        elapsed = time.perf_counter() - start
        print(f"hnswlib {getattr(hnswlib, '__version__', '')} build, {build_threads} thread(s): "
              f"{elapsed:.1f} s = {base.shape[0] / elapsed:.0f} vectors/s")
    index.set_num_threads(1)
    print("| ef | recall@10 | tie-aware recall@10 | QPS (1 thread) |")
    for ef in (16, 32, 64, 128, 256):
        index.set_ef(ef)
        if gap:
            found = []
            elapsed = 0.0
            for q in queries:
                start = time.perf_counter()
                found.append(index.knn_query(q, k=10)[0][0])
                elapsed += time.perf_counter() - start
                time.sleep(gap)
        else:
            start = time.perf_counter()
            found = [index.knn_query(q, k=10)[0][0] for q in queries]
            elapsed = time.perf_counter() - start
        recall = np.mean([len(set(f) & set(t[:10])) / 10 for f, t in zip(found, truth)])
        tie_aware = np.mean([np.mean(exact[i, f] >= tenth[i] - 1e-5) for i, f in enumerate(found)])
        print(f"| {ef} | {recall:.3f} | {tie_aware:.3f} | {len(queries) / elapsed:.0f} |")


if __name__ == "__main__":
    main()
