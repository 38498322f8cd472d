"""Fixtures: real `allidbd` processes on free loopback ports, each with its own temporary data
directory, stopped at the end.

The binary: ``$ALLIDBD_BIN`` when set, else ``target/debug/allidbd`` or
``target/release/allidbd`` under the repository root (the newer of the two). Without one the
tests that need a daemon fail, saying how to build it.

The shared daemon runs with auth enabled and one API key per tenant, so each test gets a tenant
of its own (:func:`tenant`): tests do not see each other's data, and each tenant may pick its
own vector dimension.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import queue
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

import allidb

PACKAGE_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = PACKAGE_DIR.parent.parent
READY_TIMEOUT = 60.0
#: Tenants the shared daemon has keys for (one per test that asks for a tenant).
TENANT_POOL = 200


def allidbd_binary() -> Path:
    """The daemon binary (see the module documentation)."""
    env = os.environ.get("ALLIDBD_BIN")
    if env:
        path = Path(env)
        if not path.is_file():
            pytest.fail(f"ALLIDBD_BIN={env} is not a file")
        return path
    candidates = [REPO_ROOT / "target" / kind / "allidbd" for kind in ("debug", "release")]
    existing = [p for p in candidates if p.is_file()]
    if not existing:
        pytest.fail(
            "no allidbd binary: set ALLIDBD_BIN, or build one from the repository root with "
            "`cargo build -p allidb-cmd --bin allidbd`"
        )
    return max(existing, key=lambda p: p.stat().st_mtime)


@dataclass
class Key:
    """An API key of the test daemon."""

    secret: str
    tenant: str
    role: str


def key_line(key: Key) -> str:
    """The key file line of a key: its SHA-256, tenant and role."""
    digest = hashlib.sha256(key.secret.encode()).hexdigest()
    return f"{digest} {key.tenant} {key.role}"


@dataclass
class Daemon:
    """A running `allidbd`: addresses from its stdout lines, a log of its stderr."""

    directory: Path
    config: str = ""
    process: Optional[subprocess.Popen] = None
    grpc_addr: str = ""
    http_addr: str = ""
    admin_addr: str = ""
    keys: List[Key] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.directory / "allidbd.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def start(self) -> "Daemon":
        config_path = self.directory / "allidb.toml"
        config_path.write_text(self.config)
        command = [
            str(allidbd_binary()),
            "--config", str(config_path),
            "--data-dir", str(self.directory / "data"),
            "--grpc-addr", "127.0.0.1:0",
            "--http-addr", "127.0.0.1:0",
            "--set", "server.admin_addr=127.0.0.1:0",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIDB_")}
        env.setdefault("RUST_LOG", "warn")
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env, text=True
        )
        log.close()
        lines: "queue.Queue[Optional[str]]" = queue.Queue()

        def read(stream) -> None:
            for line in stream:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=read, args=(self.process.stdout,), daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise RuntimeError(f"allidbd not ready in {READY_TIMEOUT} s; log:\n{self.log()}")
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                code = self.process.wait()
                raise RuntimeError(f"allidbd exited ({code}) before ready; log:\n{self.log()}")
            for name in ("grpc", "http", "admin"):
                prefix = f"allidbd: {name} listening on "
                if line.startswith(prefix):
                    setattr(self, f"{name}_addr", line[len(prefix):])
            if line == "allidbd: ready":
                return self

    def stop(self) -> None:
        """SIGTERM (graceful), SIGKILL after 15 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def client(self, api_key: Optional[str] = None, **kwargs) -> allidb.Client:
        return allidb.Client(self.grpc_addr, api_key=api_key, **kwargs)


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="allidb-pytest-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_daemon(workdir: Path, name: str, config: str = "", keys: Optional[List[Key]] = None) -> Daemon:
    directory = workdir / name
    directory.mkdir()
    if keys:
        key_file = directory / "keys"
        key_file.write_text("".join(key_line(k) + "\n" for k in keys))
        key_file.chmod(0o600)
        config = f'[auth]\nenabled = true\nkey_file = "{key_file}"\nkeys_env = ""\n' + config
    daemon = Daemon(directory=directory, config=config, keys=list(keys or []))
    return daemon.start()


@pytest.fixture(scope="session")
def auth_daemon(workdir: Path) -> Iterator[Daemon]:
    """The shared daemon: auth on, a write key per tenant ``t0``..., and a read-only key and
    an admin key for tenant ``t0``."""
    keys = [Key(secrets.token_hex(16), f"t{i}", "write") for i in range(TENANT_POOL)]
    keys.append(Key(secrets.token_hex(16), "t0", "read"))
    daemon = start_daemon(workdir, "auth", keys=keys)
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def open_daemon(workdir: Path) -> Iterator[Daemon]:
    """A daemon with the defaults (auth off, every request is tenant ``default``)."""
    daemon = start_daemon(workdir, "open")
    yield daemon
    daemon.stop()


_tenant_numbers = itertools.count(1)


@dataclass
class Tenant:
    """A tenant of the shared daemon with its write key; ``client()`` connects as it."""

    daemon: Daemon
    name: str
    api_key: str
    clients: List[allidb.Client] = field(default_factory=list)

    def client(self, **kwargs) -> allidb.Client:
        c = self.daemon.client(self.api_key, **kwargs)
        self.clients.append(c)
        return c


def _next_tenant(auth_daemon: Daemon) -> Tenant:
    number = next(_tenant_numbers)
    if number >= TENANT_POOL:
        pytest.fail("the test daemon's tenant pool is used up: raise TENANT_POOL")
    key = auth_daemon.keys[number]
    return Tenant(auth_daemon, key.tenant, key.secret)


@pytest.fixture
def tenant(auth_daemon: Daemon) -> Iterator[Tenant]:
    """A fresh tenant of the shared daemon (no data yet, any dimension)."""
    t = _next_tenant(auth_daemon)
    yield t
    for c in t.clients:
        c.close()


@pytest.fixture
def other_tenant(auth_daemon: Daemon) -> Iterator[Tenant]:
    """A second fresh tenant, for isolation tests."""
    t = _next_tenant(auth_daemon)
    yield t
    for c in t.clients:
        c.close()


@pytest.fixture
def db(tenant: Tenant) -> allidb.Client:
    """A sync client of a fresh tenant."""
    return tenant.client()


def keys_by_role(daemon: Daemon) -> Dict[str, Key]:
    """The shared daemon's ``t0`` keys by role."""
    return {k.role: k for k in daemon.keys if k.tenant == "t0"}
