"""The synchronous client against a real daemon: every method, its errors, numpy inputs."""

from __future__ import annotations

import socket

import grpc
import numpy as np
import pytest

import allidb
from allidb import Chunk, Edge, Entity, _convert
from allidb._proto import allidb_pb2 as pb

from conftest import Daemon, Tenant, keys_by_role


def unit(i: int, dim: int = 3) -> list:
    v = [0.0] * dim
    v[i] = 1.0
    return v


def test_health_needs_no_key(auth_daemon: Daemon) -> None:
    with auth_daemon.client() as db:
        health = db.health()
    assert health.healthy is True
    assert health.status == "healthy"
    assert health.version
    assert health.timestamp_nanos > 0


def test_put_get_round_trip(db: allidb.Client) -> None:
    entity = Entity(
        "paris",
        vector=[0.5, 0.25, -1.0],
        type="city",
        attributes={"country": "fr", "rank": "1"},
        chunks=[Chunk("intro", "Paris is the capital of France.", {"lang": "en"})],
        edges=[Edge.to("france", "capital_of", 0.75)],
        importance=0.5,
    )
    assert db.put(entity) == "paris"
    got = db.get("paris")
    assert got is not None
    assert got.id == "paris"
    assert got.type == "city"
    assert got.vector == [0.5, 0.25, -1.0]
    assert len(got.embeddings) == 1 and got.embeddings[0].version == 1
    assert got.attributes == {"country": "fr", "rank": "1"}
    assert got.chunks == [Chunk("intro", "Paris is the capital of France.", {"lang": "en"})]
    assert [(e.source, e.target, e.relation, e.weight) for e in got.edges] == [
        ("paris", "france", "capital_of", 0.75)
    ]
    assert got.importance == 0.5
    assert got.created_at_nanos > 0 and got.updated_at_nanos >= got.created_at_nanos
    assert got.text == "Paris is the capital of France."
    # The out-edge is also the target's in-edge.
    db.put(Entity("france", vector=[0.0, 1.0, 0.0]))
    france = db.get("france")
    assert [(e.source, e.relation) for e in france.incoming_edges] == [("paris", "capital_of")]


def test_put_accepts_a_dict_and_versions(db: allidb.Client) -> None:
    db.put({"id": "a", "vector": [1.0, 0.0], "type": "doc"})
    db.put(
        Entity(
            "b",
            embeddings=[allidb.Embedding([1.0, 0.0], version=1), allidb.Embedding([0.0, 1.0], version=2)],
        )
    )
    assert db.get("a").type == "doc"
    b = db.get("b")
    assert [e.version for e in b.embeddings] == [1, 2]
    assert b.vector == [0.0, 1.0]  # the highest version is the searchable one
    with pytest.raises(ValueError, match="either vector or embeddings"):
        db.put(Entity("c", vector=[1.0, 0.0], embeddings=[allidb.Embedding([0.0, 1.0])]))


def test_numpy_vectors(db: allidb.Client) -> None:
    db.put(Entity("f32", vector=np.array([1.0, 0.0, 0.0], dtype=np.float32)))
    db.put(Entity("f64", vector=np.array([0.0, 1.0, 0.0], dtype=np.float64)))
    assert db.get("f32").vector == [1.0, 0.0, 0.0]
    assert db.get("f64").vector == [0.0, 1.0, 0.0]
    assert db.query(np.array([0.0, 1.0, 0.0], dtype=np.float32), k=1).ids == ["f64"]
    replies = db.query_batch(np.eye(3, dtype=np.float32)[:2], k=1)
    assert [r.ids for r in replies] == [["f32"], ["f64"]]
    with pytest.raises(ValueError, match="one-dimensional"):
        db.query(np.eye(3), k=1)


def test_get_missing_and_get_many(db: allidb.Client) -> None:
    assert db.get("nope") is None
    db.put_many([Entity(f"e{i}", vector=unit(i % 3)) for i in range(5)])
    got = db.get_many(["e3", "nope", "e1"])
    assert [e.id for e in got.entities] == ["e3", "e1"]
    assert got.missing_ids == ["nope"]
    # More ids than one request takes (1000) are split.
    ids = [f"e{i}" for i in range(1500)]
    got = db.get_many(ids)
    assert [e.id for e in got.entities] == [f"e{i}" for i in range(5)]
    assert len(got.missing_ids) == 1495


def test_wrong_dimension_is_invalid_argument_with_the_servers_message(db: allidb.Client) -> None:
    db.put(Entity("a", vector=[1.0, 0.0, 0.0]))
    with pytest.raises(allidb.InvalidArgument) as put_error:
        db.put(Entity("b", vector=[1.0, 0.0]))
    assert put_error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "dimension" in put_error.value.message and "expected 3, got 2" in put_error.value.message
    with pytest.raises(allidb.InvalidArgument) as query_error:
        db.query([1.0, 0.0], k=2)
    assert query_error.value.message == "vector dimension mismatch: expected 3, got 2"
    assert str(query_error.value) == "INVALID_ARGUMENT: vector dimension mismatch: expected 3, got 2"
    assert isinstance(query_error.value, allidb.AlliDBError)


def test_bad_ids_and_values_name_the_field(db: allidb.Client) -> None:
    with pytest.raises(allidb.InvalidArgument) as empty:
        db.put(Entity("", vector=[1.0, 0.0]))
    assert "entity_id" in empty.value.message
    with pytest.raises(allidb.InvalidArgument) as too_long:
        db.get("x" * 513)
    assert "entity_id" in too_long.value.message
    with pytest.raises(allidb.InvalidArgument) as nan:
        db.put(Entity("n", vector=[1.0, float("nan")]))
    assert "vector[1]" in nan.value.message and "finite" in nan.value.message
    with pytest.raises(allidb.InvalidArgument) as k_error:
        db.query([1.0, 0.0], k=1001)
    assert "k" in k_error.value.message
    with pytest.raises(allidb.InvalidArgument) as edge_error:
        db.add_edges([Edge("a", "", "r")])
    assert "to_entity" in edge_error.value.message


def test_put_many_writes_everything_in_batches(db: allidb.Client) -> None:
    seen = []
    entities = (Entity(f"id-{i:05d}", vector=[float(i), 1.0, 0.5]) for i in range(2500))
    result = db.put_many(entities, batch_size=100, concurrency=4, progress=seen.append)
    assert (result.total, result.written, result.failed, result.batches) == (2500, 2500, 0, 25)
    assert seen[-1] == 2500 and seen == sorted(seen)
    ids = [e.id for e in db.scan(page_size=1000)]
    assert ids == [f"id-{i:05d}" for i in range(2500)]
    assert db.get("id-01234").vector == [1234.0, 1.0, 0.5]


def test_put_many_reports_each_refused_entity(db: allidb.Client) -> None:
    good = [Entity(f"g{i}", vector=[1.0, float(i)]) for i in range(10)]
    bad = [Entity("bad-dim", vector=[1.0, 2.0, 3.0]), Entity("bad-nan", vector=[float("nan"), 1.0])]
    with pytest.raises(allidb.PutManyError) as error:
        db.put_many(good[:5] + bad + good[5:], batch_size=4)
    result = error.value.result
    assert (result.total, result.written, result.failed) == (12, 10, 2)
    reasons = {f.id: f.message for f in result.failures}
    assert set(reasons) == {"bad-dim", "bad-nan"}
    assert "expected 2, got 3" in reasons["bad-dim"]
    assert "finite" in reasons["bad-nan"]
    assert sorted(e.id for e in db.scan()) == sorted(e.id for e in good)
    again = db.put_many(bad, raise_on_error=False)
    assert again.failed == 2 and again.written == 0


def test_scan_covers_every_entity_once_across_pages(db: allidb.Client) -> None:
    ids = [f"s{i:03d}" for i in range(53)]
    db.put_many([Entity(i, vector=[1.0, 0.0]) for i in reversed(ids)])
    pages = list(db.scan_pages(page_size=7))
    assert all(len(p.entities) <= 7 for p in pages)
    assert len(pages) >= 8
    assert pages[-1].next_page_token == ""
    assert all(p.next_page_token for p in pages[:-1])
    scanned = [e.id for p in pages for e in p.entities]
    assert scanned == ids  # ascending, each exactly once
    assert [e.id for e in db.scan(page_size=7)] == ids
    assert [e.id for e in db.scan("s010", "s020", page_size=3)] == ids[10:20]
    # Resuming from a page token continues where the page ended.
    rest = list(db.scan_pages(page_size=7, page_token=pages[0].next_page_token))
    assert [e.id for p in rest for e in p.entities] == ids[7:]
    with pytest.raises(allidb.InvalidArgument) as bad_token:
        list(db.scan_pages(page_token="not a token"))
    assert "page_token" in bad_token.value.message


def test_delete(db: allidb.Client) -> None:
    db.put_many([Entity("keep", vector=[1.0, 0.0]), Entity("gone", vector=[0.9, 0.1])])
    assert db.delete("gone") is True
    assert db.delete("gone") is False
    assert db.get("gone") is None
    assert [e.id for e in db.scan()] == ["keep"]
    assert db.query([0.9, 0.1], k=5).ids == ["keep"]


def test_entities_expire_after_their_ttl(db: allidb.Client) -> None:
    import time

    before = time.time_ns()
    db.put(Entity("session", vector=[1.0, 0.0], ttl_secs=1, chunks=[Chunk("c", "flights")]))
    db.put(Entity("lasting", vector=[0.0, 1.0]))
    session = db.get("session")
    assert session is not None
    assert before + 1_000_000_000 <= session.expires_at_nanos <= time.time_ns() + 1_000_000_000
    assert db.get("lasting").expires_at_nanos == 0
    at = time.time_ns() + 60_000_000_000
    db.put(Entity("until", vector=[0.5, 0.5], expires_at_nanos=at))
    assert db.get("until").expires_at_nanos == at
    with pytest.raises(allidb.InvalidArgument, match="entity.ttl_secs must be"):
        db.put(Entity("bad", vector=[1.0, 0.0], ttl_secs=-1))
    with pytest.raises(allidb.InvalidArgument, match="entity.expires_at_nanos"):
        db.put(Entity("bad", vector=[1.0, 0.0], expires_at_nanos=before))
    time.sleep(max(0.0, (session.expires_at_nanos - time.time_ns()) / 1e9) + 0.05)
    assert db.get("session") is None
    assert sorted(e.id for e in db.scan()) == ["lasting", "until"]
    assert "session" not in db.query([1.0, 0.0], k=5).ids


def test_sources_merge_delete_and_replace(db: allidb.Client) -> None:
    for source, chunk in (("doc-a", "from a"), ("doc-b", "from b")):
        db.put(
            Entity("paris", vector=[1.0, 0.0], source_ids=[source],
                   chunks=[Chunk(source, chunk)], edges=[Edge.to("france", "capital_of")]),
            merge=True,
        )
    db.put(Entity("only-a", vector=[0.0, 1.0], source_ids=["doc-a"]), merge=True)
    paris = db.get("paris")
    assert paris is not None and paris.source_ids == ["doc-a", "doc-b"]
    assert {c.id: c.source_ids for c in paris.chunks} == {"doc-a": ["doc-a"], "doc-b": ["doc-b"]}
    assert paris.edges[0].source_ids == ["doc-a", "doc-b"]

    done = db.delete_by_source("doc-a")
    assert (done.deleted, done.updated) == (1, 1)
    assert db.get("only-a") is None
    paris = db.get("paris")
    assert paris is not None and paris.source_ids == ["doc-b"]
    assert [c.id for c in paris.chunks] == ["doc-b"]
    assert db.delete_by_source("doc-a") == allidb.SourceDeleted()

    replaced = db.replace_source("doc-b", [Entity("berlin", vector=[0.5, 0.5])])
    assert (replaced.deleted, replaced.written) == (1, 1)
    assert [e.id for e in db.scan()] == ["berlin"]
    assert db.get("berlin").source_ids == ["doc-b"]
    with pytest.raises(allidb.InvalidArgument, match="source_id"):
        db.delete_by_source("")


def test_delete_by_filter(db: allidb.Client) -> None:
    db.put_many([Entity(f"e{i}", vector=[1.0, float(i)], attributes={"kind": "a" if i < 6 else "b"})
                 for i in range(9)])
    assert db.delete_by_filter({"kind": "a"}, dry_run=True).matched == 6
    first = db.delete_by_filter({"kind": "a"}, max_deletes=4)
    assert (first.deleted, first.more) == (4, True)
    assert db.delete_by_filter({"kind": "a"}).deleted == 2
    with pytest.raises(allidb.InvalidArgument, match="confirm"):
        db.delete_by_filter()
    assert db.delete_by_filter(confirm=True).deleted == 3
    assert list(db.scan()) == []


def graph(db: allidb.Client) -> None:
    """q (the query's nearest) -cites-> n1 -cites-> n2, q -likes-> n3, m -cites-> q; the
    neighbours point far away from the query."""
    db.put_many(
        [
            Entity("q", vector=[1.0, 0.0, 0.0], type="doc",
                   edges=[Edge.to("n1", "cites", 1.0), Edge.to("n3", "likes", 1.0)]),
            Entity("n1", vector=[0.0, 1.0, 0.0], type="doc", edges=[Edge.to("n2", "cites")]),
            Entity("n2", vector=[0.0, 0.0, 1.0], type="doc"),
            Entity("n3", vector=[0.0, -1.0, 0.0], type="note"),
            Entity("m", vector=[-1.0, 0.0, 0.0], type="doc", edges=[Edge.to("q", "cites")]),
        ]
    )


def test_query_options(db: allidb.Client) -> None:
    graph(db)
    plain = db.query([1.0, 0.0, 0.0], k=1, hops=0, explain=True, trace_id="t-42")
    assert plain.ids == ["q"]
    assert plain.trace_id == "t-42"
    top = plain[0]
    assert top.entity is not None and top.entity.id == "q"
    assert top.components is not None and top.components.vector == pytest.approx(1.0, abs=1e-6)
    assert top.path.entity_ids == ["q"] and top.path.hops == 0
    # No expansion: the neighbours are far away, only ANN order counts.
    seeds_only = db.query([1.0, 0.0, 0.0], k=5, hops=0, seeds=1)
    assert seeds_only.ids == ["q"]
    # One hop out from the seed reaches n1 (cites) and n3 (likes), with their paths.
    expanded = db.query([1.0, 0.0, 0.0], k=5, hops=1, seeds=1, explain=True)
    paths = {r.id: r.path.entity_ids for r in expanded}
    assert paths == {"q": ["q"], "n1": ["q", "n1"], "n3": ["q", "n3"]}
    assert expanded[0].id == "q"
    # Relations, hops, direction and filters restrict the expansion's results.
    cites = db.query([1.0, 0.0, 0.0], k=5, hops=2, seeds=1, relations=["cites"], explain=True)
    assert {r.id: r.path.entity_ids for r in cites} == {
        "q": ["q"], "n1": ["q", "n1"], "n2": ["q", "n1", "n2"]
    }
    incoming = db.query([1.0, 0.0, 0.0], k=5, hops=1, seeds=1, direction="in")
    assert set(incoming.ids) == {"q", "m"}
    docs = db.query([1.0, 0.0, 0.0], k=5, hops=1, seeds=1, entity_types=["note"])
    assert docs.ids == ["n3"]
    # Ids and scores only.
    bare = db.query([1.0, 0.0, 0.0], k=2, hops=0, include_entity=False)
    assert all(r.entity is None for r in bare) and len(bare) == 2


def test_query_filters_weights_and_context(db: allidb.Client) -> None:
    db.put_many(
        [
            Entity("en-1", vector=[1.0, 0.0], attributes={"lang": "en"}),
            Entity("fr-1", vector=[0.99, 0.01], attributes={"lang": "fr"},
                   chunks=[Chunk("c", "bonjour")], edges=[Edge.to("en-1", "translates")]),
        ]
    )
    assert db.query([1.0, 0.0], k=5, hops=0, filters={"lang": "fr"}).ids == ["fr-1"]
    base = db.query([1.0, 0.0], k=1, hops=0, explain=True)[0]
    doubled = db.query([1.0, 0.0], k=1, hops=0, explain=True, weights=allidb.Weights(vector=2.0))[0]
    assert doubled.components.vector == pytest.approx(2 * base.components.vector, rel=1e-6)
    no_vector = db.query([1.0, 0.0], k=1, hops=0, explain=True, weights={"vector": 0.0})[0]
    assert no_vector.components.vector == 0.0
    with pytest.raises(ValueError, match="unknown weight"):
        db.query([1.0, 0.0], weights={"vectr": 1.0})
    ctx = db.query([0.99, 0.01], k=2, hops=1, seeds=1, include_context=True, context_chunks=True)
    assert ctx.context is not None
    assert [n.id for n in ctx.context.nodes] == ["fr-1", "en-1"]
    assert ctx.context.nodes[0].hop == 0 and ctx.context.nodes[1].hop == 1
    assert ctx.context.nodes[0].chunks == [Chunk("c", "bonjour")]
    assert [(e.source, e.target, e.relation) for e in ctx.context.edges] == [
        ("fr-1", "en-1", "translates")
    ]
    # The reply gives en-1 a step from fr-1; the client rebuilds the whole path.
    assert ctx.context.nodes[0].path == allidb.Path(entity_ids=["fr-1"])
    assert ctx.context.nodes[1].path.entity_ids == ["fr-1", "en-1"]
    assert [(e.source, e.target, e.relation) for e in ctx.context.nodes[1].path.edges] == [
        ("fr-1", "en-1", "translates")
    ]
    pr = db.query([1.0, 0.0], k=2, hops=1, scoring="pagerank", explain=True,
                  pagerank=allidb.PageRankOptions(damping=0.5))
    assert pr[0].pagerank is not None and pr[0].pagerank.iterations >= 1
    with pytest.raises(allidb.InvalidArgument) as damping:
        db.query([1.0, 0.0], k=2, scoring="pagerank", pagerank={"damping": 1.5})
    assert "pagerank.damping" in damping.value.message


def test_context_paths_rebuild_from_steps_and_full_paths() -> None:
    """A context reply: b is a step from a, c a step from b followed backwards, d (whose
    parent the filter removed) a whole path, e a step from a node not listed before it."""
    edge = pb.GraphEdge(from_entity="x", to_entity="d", relation="r", weight=0.5)
    reply = pb.QueryContext(
        nodes=[
            pb.ContextNode(entity_id="a"),
            pb.ContextNode(entity_id="b", hop=1, step=pb.ContextStep(parent=0, relation="r", weight=2.0)),
            pb.ContextNode(entity_id="c", hop=2,
                           step=pb.ContextStep(parent=1, relation="s", weight=1.0, reversed=True)),
            pb.ContextNode(entity_id="d", hop=2,
                           path=pb.GraphPath(entity_ids=["a", "x", "d"], edges=[edge, edge])),
        ]
    )
    nodes = _convert.context_from_proto(reply).nodes
    assert [n.path.entity_ids for n in nodes] == [["a"], ["a", "b"], ["a", "b", "c"], ["a", "x", "d"]]
    assert [(e.source, e.target, e.relation, e.weight) for e in nodes[2].path.edges] == [
        ("a", "b", "r", 2.0), ("c", "b", "s", 1.0)
    ]
    assert nodes[3].path.hops == 2
    reply.nodes.append(pb.ContextNode(entity_id="e", hop=1, step=pb.ContextStep(parent=4)))
    with pytest.raises(allidb.AlliDBError, match="not listed before it"):
        _convert.context_from_proto(reply)


def test_query_batch_equals_single_queries(db: allidb.Client) -> None:
    rng = np.random.default_rng(7)
    db.put_many([Entity(f"v{i}", vector=rng.normal(size=8)) for i in range(200)])
    queries = rng.normal(size=(12, 8))
    batch = db.query_batch(queries, k=5, hops=0, explain=True, trace_id="b-1")
    assert len(batch) == 12
    for vector, reply in zip(queries, batch):
        single = db.query(vector, k=5, hops=0, explain=True, trace_id="b-1")
        assert reply.ids == single.ids
        # Equal up to the recency term, which ages between the two calls.
        assert [r.score for r in reply] == pytest.approx([r.score for r in single], abs=1e-6)
        assert [r.components.vector for r in reply] == [r.components.vector for r in single]
        assert reply.trace_id == "b-1"
    # More vectors than one call takes (1000 per call) are split and kept in order.
    many = np.repeat(queries[:3], 400, axis=0)
    replies = db.query_batch(many, k=1, hops=0, include_entity=False)
    assert len(replies) == 1200
    assert [r.ids for r in replies] == [batch[i // 400].ids[:1] for i in range(1200)]
    with pytest.raises(allidb.InvalidArgument) as error:
        db.query_batch([[1.0] * 8, [1.0] * 3], k=1)
    assert "vectors[1]" in error.value.message and "expected 8, got 3" in error.value.message


def test_text_and_hybrid_queries(db: allidb.Client) -> None:
    docs = {
        "left-pad": ("left-pad: String left pad", unit(0)),
        "pad-right": ("pad-right: pad a string on the right", unit(1)),
        "lodash": ("lodash: modular utilities", unit(2)),
    }
    db.put_many(
        [Entity(i, vector=v, chunks=[Chunk("c", t)]) for i, (t, v) in docs.items()]
    )
    text = db.query(text="left-pad", k=3, hops=0, explain=True)
    assert text.ids == ["left-pad", "pad-right"]
    top = text.results[0]
    assert top.lexical is not None and set(top.lexical.terms) == {"left-pad", "left", "pad"}
    assert top.components.lexical == pytest.approx(1.0) and top.components.vector == 0.0
    hybrid = db.query(unit(2), text="left-pad", k=3, hops=0, fusion="rrf", lexical_weight=0.5)
    assert set(hybrid.ids) == {"left-pad", "pad-right", "lodash"}
    dbsf = db.query(unit(0), text="left-pad", k=1, hops=0, fusion="dbsf", explain=True)
    assert dbsf.ids == ["left-pad"]
    batch = db.query_batch(texts=["left-pad", "lodash"], k=1, hops=0)
    assert [r.ids for r in batch] == [["left-pad"], ["lodash"]]
    fused = db.query_batch([unit(2), unit(1)], texts=["lodash", "pad-right"], k=1, hops=0)
    assert [r.ids for r in fused] == [["lodash"], ["pad-right"]]
    for bad, field in [
        (dict(text="   "), "text must not be empty"),
        (dict(vector=unit(0), fusion="dbsf"), "fusion needs both"),
        (dict(vector=unit(0), text="x", lexical_weight=2.0), "lexical_weight must be in"),
        (dict(text="x" * 5000), "the maximum is 4096"),
    ]:
        with pytest.raises(allidb.InvalidArgument) as error:
            db.query(k=1, **bad)
        assert field in error.value.message
    with pytest.raises(ValueError):
        db.query(k=1)
    with pytest.raises(ValueError):
        db.query_batch([unit(0)], texts=["a", "b"])


def test_edges_and_traverse(db: allidb.Client) -> None:
    graph(db)
    assert db.add_edges([Edge("n2", "n3", "see_also", 0.5), ("n3", "m", "see_also")]) == 2
    assert [e.target for e in db.get("n2").edges] == ["n3"]
    walk = db.traverse("q", max_hops=2, relations=["cites"])
    assert walk.ids == ["q", "n1", "n2"]
    assert [n.depth for n in walk] == [0, 1, 2]
    assert walk.nodes[2].path.entity_ids == ["q", "n1", "n2"]
    assert walk.nodes[2].path.edges[1].relation == "cites"
    assert walk.nodes[1].entity is not None and walk.nodes[1].entity.type == "doc"
    three = db.traverse(["q"], max_hops=3, relations=["cites", "see_also"], include_entity=False)
    assert three.ids == ["q", "n1", "n2", "n3"] and three.nodes[3].entity is None
    back = db.traverse("q", max_hops=1, direction="in")
    assert back.ids == ["q", "m"]
    both = db.traverse("q", max_hops=1, direction="both")
    assert set(both.ids) == {"q", "n1", "n3", "m"}
    capped = db.traverse("q", max_hops=2, max_nodes=2)
    assert len(capped) == 2 and capped.truncated is True
    assert db.remove_edges([("n2", "n3", "see_also")]) == 1
    assert db.get("n2").edges == []
    assert db.traverse("q", max_hops=3, relations=["cites", "see_also"]).ids == ["q", "n1", "n2"]
    assert db.traverse("nope", max_hops=1).ids == []
    with pytest.raises(allidb.InvalidArgument):
        db.traverse([], max_hops=1)


def test_consistency_levels(db: allidb.Client) -> None:
    db.put(Entity("a", vector=[1.0]), consistency="all")
    assert db.get("a", consistency="quorum").id == "a"
    with pytest.raises(ValueError, match="consistency"):
        db.get("a", consistency="most")


def test_missing_and_unknown_keys_are_unauthenticated(auth_daemon: Daemon) -> None:
    with auth_daemon.client() as anonymous:
        with pytest.raises(allidb.Unauthenticated) as missing:
            anonymous.get("a")
    assert missing.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert missing.value.message == "unauthenticated: missing API key (x-allidb-api-key)"
    with auth_daemon.client("not-a-key") as stranger:
        with pytest.raises(allidb.Unauthenticated) as unknown:
            stranger.query([1.0], k=1)
    assert unknown.value.message == "unauthenticated: unknown API key"


def test_read_key_cannot_write(auth_daemon: Daemon) -> None:
    read = keys_by_role(auth_daemon)["read"]
    with auth_daemon.client(read.secret) as reader:
        assert reader.scan_pages().__next__().entities is not None
        with pytest.raises(allidb.PermissionDenied) as error:
            reader.put(Entity("x", vector=[1.0]))
    assert error.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_tenants_are_isolated(tenant: Tenant, other_tenant: Tenant) -> None:
    a, b = tenant.client(), other_tenant.client()
    a.put(Entity("secret", vector=[1.0, 0.0, 0.0], attributes={"owner": tenant.name}))
    # B has its own dimension and sees nothing of A's.
    b.put(Entity("mine", vector=[1.0, 0.0]))
    assert b.get("secret") is None
    assert [e.id for e in b.scan()] == ["mine"]
    assert b.query([1.0, 0.0], k=10).ids == ["mine"]
    assert a.get("secret").tenant_id == tenant.name
    # A tenant field naming another tenant is refused.
    with pytest.raises(allidb.PermissionDenied):
        b.put(Entity("x", vector=[1.0, 0.0], tenant_id=tenant.name))


def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with allidb.Client(f"127.0.0.1:{port}", timeout=5) as db:
        with pytest.raises(allidb.Unavailable) as error:
            db.health()
    assert error.value.code == grpc.StatusCode.UNAVAILABLE


def test_open_daemon_runs_as_the_default_tenant(open_daemon: Daemon) -> None:
    with open_daemon.client() as db:
        db.put(Entity("d", vector=[1.0, 2.0]))
        assert db.get("d").tenant_id == "default"
        assert db.wait_ready().healthy


def test_put_many_progress_bar_on_stderr(db: allidb.Client, capfd) -> None:
    result = db.put_many((Entity(f"p{i}", vector=[1.0, float(i)]) for i in range(100)),
                         batch_size=10, progress=True)
    assert result.written == 100
    err = capfd.readouterr().err
    assert "put_many" in err and "100" in err
    sized = db.put_many([Entity(f"q{i}", vector=[1.0, float(i)]) for i in range(30)], progress=True)
    assert sized.written == 30
    assert "30/30" in capfd.readouterr().err


def test_typed_attributes_and_where_on_query_scan_and_traverse(db: allidb.Client) -> None:
    import datetime

    when = datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)
    for i in range(6):
        db.put(
            Entity(
                f"w{i}",
                vector=[1.0, float(i)],
                attributes={"lang": "en" if i % 2 else "de"},
                typed_attributes={"rank": i, "score": i / 2, "ok": i < 3, "tags": [f"t{i}"],
                                  "at": when},
                edges=[Edge(f"w{i}", f"w{i + 1}", "next")] if i < 5 else [],
            )
        )
    got = db.get("w1")
    assert got.typed_attributes == {"rank": 1, "score": 0.5, "ok": True, "tags": ["t1"], "at": when}
    ids = lambda f: sorted(r.id for r in db.query([1.0, 0.0], k=10, hops=0, where=f))  # noqa: E731
    assert ids({"rank": {"$gte": 4}}) == ["w4", "w5"]
    assert ids({"$and": [{"lang": "en"}, {"ok": True}]}) == ["w1"]
    assert ids({"tags": {"$contain": "t3"}}) == ["w3"]
    assert ids({"at": {"$lt": when}}) == []
    assert [e.id for e in db.scan(where={"score": {"$lt": 1.0}}, page_size=1)] == ["w0", "w1"]
    walk = db.traverse("w0", max_hops=5, where={"lang": "en"})
    assert [n.id for n in walk.nodes] == ["w1", "w3", "w5"]
    with pytest.raises(allidb.InvalidArgument, match=r"where\.gt\.lang"):
        db.query([1.0, 0.0], where={"lang": {"$gt": 1}})
    with pytest.raises(ValueError, match="unknown operator"):
        db.query([1.0, 0.0], where={"$nor": []})


def test_explain_reports_the_filter_plan(db: allidb.Client) -> None:
    db.put_many([Entity(f"p{i}", vector=[1.0, float(i)], typed_attributes={"rank": i}) for i in range(20)])
    answer = db.query([1.0, 0.0], k=10, hops=0, explain=True, where={"rank": {"$lt": 5}})
    # Converted when first read, like the results and the context.
    assert type(answer.__dict__["filter_plan"]) is allidb.types.Deferred
    plan = answer.filter_plan
    assert isinstance(plan, allidb.FilterPlan)
    assert plan.plan == "exact"
    assert plan.entities == 20
    assert plan.matched == 5
    assert plan.real_selectivity == pytest.approx(0.25)
    assert plan.estimated_matches >= 5
    assert plan.estimated_selectivity == pytest.approx(plan.estimated_matches / 20)
    assert sorted(answer.ids) == ["p0", "p1", "p2", "p3", "p4"]
    # Without explain, or without a filter, no plan.
    assert db.query([1.0, 0.0], k=10, hops=0, where={"rank": {"$lt": 5}}).filter_plan is None
    assert db.query([1.0, 0.0], k=10, hops=0, explain=True).filter_plan is None
    # Each reply of a batch carries its own.
    batch = db.query_batch([[1.0, 0.0], [0.0, 1.0]], k=3, hops=0, explain=True, where={"rank": {"$gte": 18}})
    assert [r.filter_plan.matched for r in batch] == [2, 2]
