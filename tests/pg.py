"""A real PostgreSQL server for the tests: ``initdb`` and ``pg_ctl`` of the Debian ``postgresql`` package in a
temporary folder, listening on a unix socket there and on a free loopback port, stopped at the end.

PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` user the package created.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import free_port

BINDIR = Path("/usr/lib/postgresql/15/bin")


def _as_server_user(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", "postgres", "--", *args]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields a SQLAlchemy URL (``postgresql+psycopg://``) of a fresh database ``b2bua``."""
    assert (BINDIR / "initdb").exists(), "PostgreSQL 15 is not installed: apt install postgresql-15"
    folder = Path(tempfile.mkdtemp(prefix="b2bua-pg-"))
    data, sock = folder / "data", folder / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for p in (folder, sock):
            os.chown(p, owner.pw_uid, owner.pw_gid)
    port = free_port()
    log = folder / "server.log"
    try:
        subprocess.run(_as_server_user([str(BINDIR / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                                        "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"]),
                       check=True, capture_output=True, timeout=120)
        subprocess.run(_as_server_user([str(BINDIR / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                                        "-o", f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off",
                                        "start"]), check=True, capture_output=True, timeout=90)
        subprocess.run(_as_server_user([str(BINDIR / "createdb"), "-h", str(sock), "-p", str(port), "-U", "postgres",
                                        "b2bua"]), check=True, capture_output=True, timeout=60)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/b2bua"
    finally:
        if data.exists():
            subprocess.run(_as_server_user([str(BINDIR / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                                            "stop"]), capture_output=True, timeout=60)
        deadline = time.monotonic() + 10
        while (sock / f".s.PGSQL.{port}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(folder, ignore_errors=True)


__all__ = ["postgres_server"]
