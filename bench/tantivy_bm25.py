"""tantivy (Python package, in process) on npm-minilm-20k's texts: the reference for AlliDB's
lexical index (docs/benchmarks.md, "Lexical and hybrid search").

Indexes texts.jsonl (one document per row, field `text`, tantivy's default tokenizer: split on
non-alphanumerics, lowercase) with one writer thread, then runs the known-item name queries of
index/examples/hybrid_known_item.rs (query i: the package name of base row
groundtruth.ivecs[i][0]) as a boolean OR of the name's tokens, top 10 by tantivy's BM25, on one
thread. Prints documents/s, queries/s and success@10.

With ALLIDBD (the path of an `allidbd` binary) in the environment, the same run also starts that
daemon on loopback ports, writes the 20,000 texts as entities (one chunk each, no vector; the
`allidb` Python client of clients/python, 1,000 per call) and sends the same name queries,
text only, through `QueryBatch` (k 10, no expansion, ids only) from one client: queries/s and
success@10 through the daemon.
Usage: [ALLIDBD=target/debug/allidbd] python3 bench/tantivy_bm25.py [DATA_DIR] [QUERIES]
"""
import json
import os
import re
import sys
import tempfile
import time

import numpy as np
import tantivy


def read_ivecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    return raw.reshape(-1, dim + 1)[:, 1:]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    data_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "../../shared/data/npm-minilm-20k")
    wanted = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    rows = [json.loads(line) for line in open(f"{data_dir}/texts.jsonl", encoding="utf-8")]
    truth = read_ivecs(f"{data_dir}/groundtruth.ivecs")

    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("row", stored=True, indexed=False)
    builder.add_text_field("text", stored=False)
    schema = builder.build()
    with tempfile.TemporaryDirectory() as directory:
        index = tantivy.Index(schema, path=directory)
        writer = index.writer(heap_size=64 * 1024 * 1024, num_threads=1)
        start = time.perf_counter()
        for row, doc in enumerate(rows):
            writer.add_document(tantivy.Document(row=row, text=doc["text"]))
        writer.commit()
        writer.wait_merging_threads()
        build = time.perf_counter() - start
        index.reload()
        searcher = index.searcher()

        queries = []
        for i in range(min(wanted, len(truth))):
            target = int(truth[i][0])
            tokens = re.findall(r"[a-z0-9]+", rows[target]["id"].lower())
            terms = [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "text", t)) for t in tokens]
            queries.append((target, tantivy.Query.boolean_query(terms)))
        found = 0
        start = time.perf_counter()
        for target, query in queries:
            hits = searcher.search(query, 10).hits
            if any(searcher.doc(address)["row"][0] == target for _, address in hits):
                found += 1
        elapsed = time.perf_counter() - start
    print(f"tantivy {tantivy.__version__ if hasattr(tantivy, '__version__') else ''}: indexing "
          f"{len(rows) / build:.0f} docs/s (one writer thread, commit included); "
          f"{len(queries) / elapsed:.0f} top-10 queries/s (one thread, stored row fetched per hit); "
          f"success@10 by name {found / len(queries):.3f} ({len(queries)} queries)")
    binary = os.environ.get("ALLIDBD")
    if binary:
        targets = [int(truth[i][0]) for i in range(min(wanted, len(truth)))]
        through_daemon(binary, rows, targets)


def through_daemon(binary, rows, targets):
    """The name queries, text only, through a fresh daemon's QueryBatch."""
    import allidb
    from allidbd_process import Daemon

    with tempfile.TemporaryDirectory() as work:
        daemon = Daemon(binary, work)
        try:
            with allidb.Client(daemon.grpc) as db:
                start = time.perf_counter()
                for first in range(0, len(rows), 1000):
                    db.put_many([
                        allidb.Entity(f"r{row}", chunks=[allidb.Chunk("text", rows[row]["text"])])
                        for row in range(first, min(first + 1000, len(rows)))
                    ])
                ingest = time.perf_counter() - start
                names = [rows[t]["id"] for t in targets]
                start = time.perf_counter()
                replies = db.query_batch(texts=names, k=10, hops=0, include_entity=False)
                elapsed = time.perf_counter() - start
                found = sum(f"r{t}" in reply.ids for t, reply in zip(targets, replies))
        finally:
            daemon.stop()
    print(f"allidbd QueryBatch, text only: {len(names) / elapsed:.0f} top-10 queries/s "
          f"({len(names)} in one call); success@10 by name {found / len(names):.3f}; "
          f"ingest {len(rows) / ingest:.0f} entities/s (put_many of 1,000, texts only)")


if __name__ == "__main__":
    main()
