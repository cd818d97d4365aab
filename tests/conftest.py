"""Shared fixtures: databases (SQLite always, PostgreSQL when BSSBUS_TEST_PG_URL is set),
and a socket guard so unit tests never reach the network by accident."""
from __future__ import annotations

import os
import socket

import pytest

from dao.db import scratch_schema

PG_URL = os.environ.get("BSSBUS_TEST_PG_URL")


def _db_params():
    params = ["sqlite"]
    if PG_URL:
        params.append("postgresql")
    return params


def pg_schema_url():
    """A URL on a new, empty PostgreSQL schema of BSSBUS_TEST_PG_URL, dropped afterwards."""
    return scratch_schema(PG_URL)


@pytest.fixture(params=_db_params())
def db_url(request, tmp_path):
    """A fresh, empty database URL: a SQLite file, and a PostgreSQL schema when configured."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/bus.db"
        return
    with pg_schema_url() as url:
        yield url


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Refuse any TCP connection that is not to loopback (zeep's habit of a socket guard)."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        if self.family not in (socket.AF_INET, socket.AF_INET6):
            return real_connect(self, address)
        host = address[0]
        if not (host.startswith("127.") or host in ("localhost", "::1")):
            raise RuntimeError(f"test tried to reach the network: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
