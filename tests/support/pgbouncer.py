"""PgBouncer in front of the test PostgreSQL: started on a free port with a generated config, in
transaction pooling mode, for the databases a test names.

The binary comes from the Debian package `pgbouncer` (`.ci/run` installs it). Without it a test
is skipped, except under `CI=true`, where it fails: CI must run it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.support.postgres import PG_ADMIN_URL

CANDIDATES = ("pgbouncer", "/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


def binary() -> str:
    """The pgbouncer executable; skips the test (fails it under CI=true) when it is missing."""
    for candidate in CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    message = "pgbouncer is not installed (apt-get install -y pgbouncer)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(directory: Path, port: int, databases: Sequence[str]) -> Path:
    server = make_url(PG_ADMIN_URL)
    user = server.username or "postgres"
    lines = ["[databases]"]
    lines += [
        f"{name} = host={server.host or '127.0.0.1'} port={server.port or 5432} dbname={name}"
        for name in databases
    ]
    lines += [
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = trust",
        f"auth_file = {directory / 'users.txt'}",
        f"admin_users = {user}",
        "pool_mode = transaction",
        "default_pool_size = 8",
        "max_client_conn = 200",
        f"logfile = {directory / 'pgbouncer.log'}",
        "ignore_startup_parameters = extra_float_digits",
    ]
    (directory / "users.txt").write_text(f'"{user}" ""\n')
    path = directory / "pgbouncer.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def pgbouncer(databases: Sequence[str]) -> Iterator[int]:
    """Run PgBouncer for `databases` until the block ends; yields its port."""
    executable = binary()
    directory = Path(tempfile.mkdtemp(prefix="ghpulse-pgbouncer-"))
    # PgBouncer refuses to run as root: it drops to the PostgreSQL user, who must read the config.
    directory.chmod(0o755)
    port = _free_port()
    config = _config(directory, port, databases)
    for path in directory.iterdir():
        path.chmod(0o644)
    command = [executable, str(config)]
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
        command[1:1] = ["-u", "postgres"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_serving(process, port, directory / "pgbouncer.log")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_until_serving(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text() if log.exists() else ""
            raise RuntimeError(f"pgbouncer exited with {process.returncode}: {output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("pgbouncer did not start listening")


def stats(port: int) -> dict[str, int]:
    """Transactions PgBouncer has pooled per database (its admin console's `SHOW STATS`)."""
    server = make_url(PG_ADMIN_URL)
    with psycopg.connect(
        host="127.0.0.1",
        port=port,
        dbname="pgbouncer",
        user=server.username or "postgres",
        autocommit=True,
    ) as conn:
        result = conn.pgconn.exec_(b"SHOW STATS")
        names = [result.fname(i) for i in range(result.nfields)]
        column = names.index(b"total_xact_count")
        return {
            (result.get_value(row, 0) or b"").decode(): int(result.get_value(row, column) or 0)
            for row in range(result.ntuples)
        }
