"""AlliDB quickstart over gRPC: put two linked entities, read one back, query, scan.

Generate the stubs first (from the repository root):
    pip install grpcio grpcio-tools
    python -m grpc_tools.protoc -I api/proto --python_out=examples/python \
        --grpc_python_out=examples/python allidb.proto
Then, with allidbd running on 127.0.0.1:7000:
    python examples/python/quickstart.py [ADDR] [API_KEY]
"""

import sys

import grpc

import allidb_pb2 as pb
import allidb_pb2_grpc as rpc

addr = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7000"
metadata = [("x-allidb-api-key", sys.argv[2])] if len(sys.argv) > 2 else []

with grpc.insecure_channel(addr) as channel:
    db = rpc.AlliDBStub(channel)
    health = db.HealthCheck(pb.HealthCheckRequest())
    print("health:", health.status, health.version)

    paris = pb.Entity(
        entity_id="paris", entity_type="city",
        embeddings=[pb.VectorEmbedding(vector=[0.9, 0.1, 0.0])],
        attributes={"country": "fr"},
        outgoing_edges=[pb.GraphEdge(to_entity="france", relation="capital_of", weight=1.0)],
    )
    france = pb.Entity(
        entity_id="france", entity_type="country",
        embeddings=[pb.VectorEmbedding(vector=[0.7, 0.3, 0.0])],
    )
    batch = db.BatchPutEntities(pb.BatchPutEntitiesRequest(entities=[paris, france]), metadata=metadata)
    print("batch:", batch.success_count, "written", list(batch.entity_ids))

    got = db.GetEntity(pb.GetEntityRequest(entity_id="france"), metadata=metadata)
    print("france incoming edges:", [(e.from_entity, e.relation) for e in got.entity.incoming_edges])

    answer = db.Query(pb.QueryRequest(query_vector=[1.0, 0.0, 0.0], k=2, trace_id="py-1", explain=True),
                      metadata=metadata)
    for r in answer.results:
        print(f"query: {r.entity_id} score={r.score:.3f} path={list(r.explanation.path.entity_ids)}")
    print("trace id echoed:", answer.trace_id)

    page = db.RangeScan(pb.RangeScanRequest(limit=10), metadata=metadata)
    print("scan:", [e.entity_id for e in page.entities])

    try:
        db.Query(pb.QueryRequest(query_vector=[1.0, 0.0]), metadata=metadata)
    except grpc.RpcError as err:
        print("wrong dimension:", err.code().name, "-", err.details())
