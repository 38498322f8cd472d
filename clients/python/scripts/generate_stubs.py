"""Regenerates the committed gRPC stubs of the `allidb` package from api/proto/allidb.proto.

Usage (from anywhere; needs the pinned generator, `pip install ./clients/python[dev]`):

    python clients/python/scripts/generate_stubs.py            # rewrites src/allidb/_proto/
    python clients/python/scripts/generate_stubs.py OUT_DIR    # writes into OUT_DIR instead

The output is deterministic for a given grpcio-tools version, so the test
`tests/test_stubs.py` regenerates into a temporary directory and compares bytes with the
committed files. The generator version is pinned here and in pyproject.toml's `dev` and `test`
extras; a different version is refused rather than producing a spurious diff.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

#: grpcio-tools version the committed stubs were generated with.
GRPCIO_TOOLS_VERSION = "1.85.1"

PACKAGE_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = PACKAGE_DIR.parent.parent
PROTO_DIR = REPO_ROOT / "api" / "proto"
PROTO_FILE = "allidb.proto"
DEFAULT_OUT = PACKAGE_DIR / "src" / "allidb" / "_proto"
#: Files the generator writes, all committed.
GENERATED = ("allidb_pb2.py", "allidb_pb2.pyi", "allidb_pb2_grpc.py")


def generate(out_dir: Path, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Generates the stubs into `out_dir` and returns the files written."""
    from importlib.metadata import version

    from grpc_tools import protoc

    installed = version("grpcio-tools")
    if installed != GRPCIO_TOOLS_VERSION:
        raise RuntimeError(
            f"grpcio-tools {installed} is installed, the stubs are generated with "
            f"{GRPCIO_TOOLS_VERSION}: pip install grpcio-tools=={GRPCIO_TOOLS_VERSION}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as raw:
        args = [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"--python_out={raw}",
            f"--pyi_out={raw}",
            f"--grpc_python_out={raw}",
            PROTO_FILE,
        ]
        code = protoc.main(args)
        if code != 0:
            raise RuntimeError(f"grpc_tools.protoc failed with exit code {code}")
        written = []
        for name in GENERATED:
            text = (Path(raw) / name).read_text(encoding="utf-8")
            # The gRPC plugin imports the messages as a top-level module; inside the package
            # they are a sibling module.
            text = text.replace(
                "import allidb_pb2 as allidb__pb2", "from . import allidb_pb2 as allidb__pb2"
            )
            target = out_dir / name
            target.write_bytes(text.encode("utf-8"))
            written.append(target)
    return written


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    for path in generate(out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
