"""tantivy (Python package, in process) against AlliDB's lexical index: the reference for
issue 38's BM25 (docs/benchmarks.md, "Lexical and hybrid search").

Two corpora:
- npm-minilm-20k's texts (default): texts.jsonl, one document per row, with the known-item name
  queries of index/examples/hybrid_known_item.rs (query i: the package name of base row
  groundtruth.ivecs[i][0]); prints success@10 on both sides.
- `--synthetic N`: N generated documents of `--words` words on average (default 60, ~400 bytes;
  each between half and 1.5 times as many, so that lengths differ) drawn
  from a Zipf law (exponent 1.1) over a vocabulary of 100,000 made-up lowercase words, and
  queries of two words of rank 100 to 20,000 (the same seed gives the same corpus); prints how
  many of tantivy's top 10 AlliDB's top 10 also has (overlap@10; ties may order differently).

tantivy indexes with its default tokenizer (split on non-alphanumerics, lowercase) and one
writer thread, then runs the queries as a boolean OR of their tokens, top 10 by its BM25, on one
thread. With ALLIDBD (the path of an `allidbd` binary) in the environment, the same run starts
that daemon on loopback ports, writes the documents as entities (one chunk each, no vector; the
`allidb` Python client of clients/python, 1,000 per call) and sends the same queries, text only,
through `QueryBatch` (k 10, no expansion, ids only) from one client.
Usage: [ALLIDBD=target/debug/allidbd] python3 bench/tantivy_bm25.py [--data DIR] [--queries N]
           [--synthetic N [--words W] [--seed S]]
"""
import argparse
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


def npm_corpus(data_dir, wanted):
    """The corpus' texts, and per query (the package name of a known item) its target row."""
    rows = [json.loads(line) for line in open(f"{data_dir}/texts.jsonl", encoding="utf-8")]
    truth = read_ivecs(f"{data_dir}/groundtruth.ivecs")
    targets = [int(truth[i][0]) for i in range(min(wanted, len(truth)))]
    return [r["text"] for r in rows], [rows[t]["id"] for t in targets], targets


def synthetic_corpus(count, words, wanted, seed):
    """`count` texts of `words` Zipf-drawn made-up words each, and `wanted` two-word queries."""
    rng = np.random.default_rng(seed)
    vocabulary = 100_000
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(3, 11, size=vocabulary)
    names = ["".join(rng.choice(letters, size=n)) for n in lengths]
    weights = 1.0 / np.arange(1, vocabulary + 1) ** 1.1
    weights /= weights.sum()
    lengths = rng.integers(words // 2, words * 3 // 2 + 1, size=count)
    drawn = rng.choice(vocabulary, size=int(lengths.sum()), p=weights)
    ends = np.cumsum(lengths)
    texts = [" ".join(names[w] for w in drawn[end - n:end]) for n, end in zip(lengths, ends)]
    queries = [" ".join(names[w] for w in rng.integers(100, 20_000, size=2)) for _ in range(wanted)]
    return texts, queries


def tantivy_search(texts, queries):
    """Indexes `texts` and runs `queries`; prints the rates; returns each query's top 10 rows."""
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("row", stored=True, indexed=False)
    builder.add_text_field("text", stored=False)
    schema = builder.build()
    with tempfile.TemporaryDirectory() as directory:
        index = tantivy.Index(schema, path=directory)
        writer = index.writer(heap_size=64 * 1024 * 1024, num_threads=1)
        start = time.perf_counter()
        for row, text in enumerate(texts):
            writer.add_document(tantivy.Document(row=row, text=text))
        writer.commit()
        writer.wait_merging_threads()
        build = time.perf_counter() - start
        index.reload()
        searcher = index.searcher()
        parsed = []
        for text in queries:
            tokens = re.findall(r"[a-z0-9]+", text.lower())
            terms = [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "text", t)) for t in tokens]
            parsed.append(tantivy.Query.boolean_query(terms))
        top = []
        start = time.perf_counter()
        for query in parsed:
            hits = searcher.search(query, 10).hits
            top.append([searcher.doc(address)["row"][0] for _, address in hits])
        elapsed = time.perf_counter() - start
    print(f"tantivy {getattr(tantivy, '__version__', '')}: indexing {len(texts) / build:.0f} "
          f"docs/s (one writer thread, commit included); {len(queries) / elapsed:.0f} top-10 "
          f"queries/s (one thread, stored row fetched per hit)")
    return top


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(here, "../../shared/data/npm-minilm-20k"))
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--synthetic", type=int, default=0, help="documents of a synthetic corpus")
    parser.add_argument("--words", type=int, default=60)
    parser.add_argument("--seed", type=int, default=38)
    args = parser.parse_args()
    if args.synthetic:
        texts, queries = synthetic_corpus(args.synthetic, args.words, args.queries, args.seed)
        targets = None
        print(f"synthetic corpus: {len(texts)} documents of {args.words} words on average, "
              f"{sum(map(len, texts)) / len(texts):.0f} bytes on average")
    else:
        texts, queries, targets = npm_corpus(args.data, args.queries)
    top = tantivy_search(texts, queries)
    if targets is not None:
        found = sum(t in rows for t, rows in zip(targets, top))
        print(f"tantivy success@10 by name {found / len(queries):.3f} ({len(queries)} queries)")
    binary = os.environ.get("ALLIDBD")
    if binary:
        through_daemon(binary, texts, queries, targets, top)


def through_daemon(binary, texts, queries, targets, tantivy_top):
    """The queries, text only, through a fresh daemon's QueryBatch."""
    import allidb
    from allidbd_process import Daemon

    with tempfile.TemporaryDirectory() as work:
        daemon = Daemon(binary, work)
        try:
            with allidb.Client(daemon.grpc) as db:
                start = time.perf_counter()
                for first in range(0, len(texts), 1000):
                    db.put_many([
                        allidb.Entity(f"r{row}", chunks=[allidb.Chunk("text", texts[row])])
                        for row in range(first, min(first + 1000, len(texts)))
                    ])
                ingest = time.perf_counter() - start
                start = time.perf_counter()
                replies = db.query_batch(texts=queries, k=10, hops=0, include_entity=False)
                elapsed = time.perf_counter() - start
        finally:
            daemon.stop()
    print(f"allidbd QueryBatch, text only: {len(queries) / elapsed:.0f} top-10 queries/s "
          f"({len(queries)} in one call); ingest {len(texts) / ingest:.0f} entities/s "
          f"(put_many of 1,000, texts only)")
    if targets is not None:
        found = sum(f"r{t}" in reply.ids for t, reply in zip(targets, replies))
        print(f"allidbd success@10 by name {found / len(queries):.3f}")
    else:
        shared = sum(len({f"r{r}" for r in want} & set(reply.ids))
                     for want, reply in zip(tantivy_top, replies))
        print(f"overlap@10 with tantivy: {shared / (10 * len(queries)):.3f}")


if __name__ == "__main__":
    main()
