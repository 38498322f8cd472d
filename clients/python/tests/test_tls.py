"""TLS and mutual TLS through the client (certificates made with the openssl command)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Dict, Iterator

import pytest

import allidb
from allidb import Entity

from conftest import Daemon, start_daemon

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory)


def make_cert(directory: Path, name: str, ca: str, ext: str) -> None:
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory)
    (directory / f"{name}.ext").write_text(ext)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
            cwd=directory)
    (directory / f"{name}.key").chmod(0o600)


@pytest.fixture(scope="module")
def certs(workdir: Path) -> Dict[str, Path]:
    directory = workdir / "certs"
    directory.mkdir()
    make_ca(directory, "ca")
    make_ca(directory, "other-ca")
    make_ca(directory, "client-ca")
    make_cert(directory, "server", "ca",
              "subjectAltName=DNS:db.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    make_cert(directory, "client", "client-ca", "extendedKeyUsage=clientAuth\n")
    return {p.stem + p.suffix: p for p in directory.iterdir()}


@pytest.fixture(scope="module")
def tls_daemon(workdir: Path, certs: Dict[str, Path]) -> Iterator[Daemon]:
    config = (
        f'[tls]\nenabled = true\ncert_file = "{certs["server.pem"]}"\n'
        f'key_file = "{certs["server.key"]}"\n'
    )
    daemon = start_daemon(workdir, "tls", config)
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def mtls_daemon(workdir: Path, certs: Dict[str, Path]) -> Iterator[Daemon]:
    config = (
        f'[tls]\nenabled = true\ncert_file = "{certs["server.pem"]}"\n'
        f'key_file = "{certs["server.key"]}"\nclient_ca_file = "{certs["client-ca.pem"]}"\n'
    )
    daemon = start_daemon(workdir, "mtls", config)
    yield daemon
    daemon.stop()


def test_tls_with_the_servers_ca(tls_daemon: Daemon, certs: Dict[str, Path]) -> None:
    # CA as a path; the address is an IP on the certificate.
    with allidb.Client(tls_daemon.grpc_addr, tls_ca=certs["server.pem"].parent / "ca.pem") as db:
        db.put(Entity("tls", vector=[1.0, 0.0]))
        assert db.get("tls").vector == [1.0, 0.0]
    # CA as PEM bytes, verifying another name on the certificate.
    port = tls_daemon.grpc_addr.rsplit(":", 1)[1]
    pem = certs["ca.pem"].read_bytes()
    with allidb.Client(f"https://127.0.0.1:{port}", tls_ca=pem, tls_server_name="db.test") as db:
        assert db.health().healthy


def test_tls_refuses_a_wrong_ca_and_plaintext(tls_daemon: Daemon, certs: Dict[str, Path]) -> None:
    with allidb.Client(tls_daemon.grpc_addr, tls_ca=certs["other-ca.pem"], timeout=5) as db:
        with pytest.raises(allidb.Unavailable):
            db.health()
    with allidb.Client(tls_daemon.grpc_addr, timeout=5) as plaintext:
        with pytest.raises(allidb.Unavailable):
            plaintext.health()


def test_mutual_tls(mtls_daemon: Daemon, certs: Dict[str, Path]) -> None:
    with allidb.Client(mtls_daemon.grpc_addr, tls_ca=certs["ca.pem"],
                       tls_cert=certs["client.pem"], tls_key=certs["client.key"]) as db:
        assert db.health().healthy
        db.put(Entity("m", vector=[1.0]))
    with allidb.Client(mtls_daemon.grpc_addr, tls_ca=certs["ca.pem"], timeout=5) as no_cert:
        with pytest.raises(allidb.Unavailable):
            no_cert.health()
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        allidb.Client(mtls_daemon.grpc_addr, tls_cert=certs["client.pem"])


def test_async_client_over_tls(tls_daemon: Daemon, certs: Dict[str, Path]) -> None:
    import asyncio

    async def scenario():
        async with allidb.AsyncClient(tls_daemon.grpc_addr, tls_ca=certs["ca.pem"]) as db:
            await db.put(Entity("async-tls", vector=[0.0, 1.0]))
            return (await db.get("async-tls")).vector

    assert asyncio.run(scenario()) == [0.0, 1.0]
