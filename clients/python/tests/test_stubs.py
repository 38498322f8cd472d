"""The committed stubs are what the pinned generator makes from api/proto/allidb.proto."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent
SCRIPT = PACKAGE_DIR / "scripts" / "generate_stubs.py"
COMMITTED = PACKAGE_DIR / "src" / "allidb" / "_proto"


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_stubs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    generator = load_generator()
    assert generator.PROTO_DIR.joinpath(generator.PROTO_FILE).is_file()
    written = generator.generate(tmp_path)
    assert sorted(p.name for p in written) == sorted(generator.GENERATED)
    stale = [
        p.name for p in written if p.read_bytes() != (COMMITTED / p.name).read_bytes()
    ]
    assert not stale, (
        f"stubs {stale} are stale: run `python clients/python/scripts/generate_stubs.py` "
        "and commit the result"
    )


def test_staleness_is_detected(tmp_path: Path) -> None:
    """A proto with one more field generates different bytes (the check above can fail)."""
    generator = load_generator()
    proto_dir = tmp_path / "proto"
    proto_dir.mkdir()
    text = (generator.PROTO_DIR / generator.PROTO_FILE).read_text()
    marker = "message HealthCheckRequest {}"
    assert marker in text
    text = text.replace(marker, "message HealthCheckRequest { string probe = 1; }")
    (proto_dir / generator.PROTO_FILE).write_text(text)
    out = tmp_path / "out"
    generator.generate(out, proto_dir=proto_dir)
    assert (out / "allidb_pb2.py").read_bytes() != (COMMITTED / "allidb_pb2.py").read_bytes()


def test_package_imports_the_packaged_stubs() -> None:
    import allidb
    from allidb._proto import allidb_pb2, allidb_pb2_grpc

    assert allidb_pb2.DESCRIPTOR.name == "allidb.proto"
    assert "QueryBatch" in allidb_pb2.DESCRIPTOR.services_by_name["AlliDB"].methods_by_name
    assert hasattr(allidb_pb2_grpc, "AlliDBStub")
    assert allidb.Client and allidb.AsyncClient


if __name__ == "__main__":
    pytest.main([__file__])
