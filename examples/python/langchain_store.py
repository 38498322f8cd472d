"""AlliDB as a LangChain vector store, with graph expansion as a search option.

Install the package with its LangChain extra (from the repository root), then run against a
daemon on 127.0.0.1:7000:
    pip install './clients/python[langchain]'
    python examples/python/langchain_store.py [ADDR] [API_KEY]

`WordHashEmbeddings` below only stands in for a real embedding model so that the example runs
offline; use your model's LangChain `Embeddings` instead (its dimension becomes the tenant's).
"""

import hashlib
import math
import sys

from langchain_core.embeddings import Embeddings

import allidb
from allidb.langchain import AlliDBVectorStore


class WordHashEmbeddings(Embeddings):
    """A stand-in embedding: a normalised bag of words hashed into 64 dimensions."""

    def _embed(self, text):
        vector = [0.0] * 64
        for word in text.lower().replace(".", " ").replace("?", " ").split():
            vector[int(hashlib.sha1(word.encode()).hexdigest(), 16) % 64] += 1.0
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]

    def embed_documents(self, texts):
        return [self._embed(t) for t in texts]

    def embed_query(self, text):
        return self._embed(text)


addr = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7000"
api_key = sys.argv[2] if len(sys.argv) > 2 else None

with allidb.Client(addr, api_key=api_key) as client:
    store = AlliDBVectorStore(client, WordHashEmbeddings())
    ids = store.add_texts(
        [
            "Paris is the capital of France.",
            "Berlin is the capital of Germany.",
            "The Louvre museum holds the Mona Lisa.",
        ],
        metadatas=[{"source": "atlas"}, {"source": "atlas"}, {"source": "guide"}],
        ids=["paris", "berlin", "louvre"],
    )
    print("added:", ids)
    # The Louvre shares no word with the question; an edge from Paris brings it in.
    client.add_edges([allidb.Edge("paris", "louvre", "has_museum")])

    for doc, score in store.similarity_search_with_score("capital of France", k=2):
        print(f"similar: {doc.id} {score:.3f} {doc.metadata['source']}")
    for doc, score in store.similarity_search_with_score("capital of France", k=2, hops=1, seeds=1):
        print(f"with hops=1: {doc.id} {score:.3f} path={doc.metadata['_allidb_path']}")
    retriever = store.as_retriever(search_kwargs={"k": 3, "hops": 1, "filter": {"source": "guide"}})
    print("retriever:", [d.page_content for d in retriever.invoke("capital of France")])
