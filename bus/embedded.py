"""The bus and the sandbox peers in this process, on loopback, for the demo and the tests.

Real HTTP on real sockets (a threaded WSGI server each), real databases: nothing is patched.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from bus.core import Bus
from bus.security import login_for
from bus.server import serve_in_thread
from config.settings import Settings, load_settings
from sandbox.app import SandboxApplication
from sandbox.auth import gate_for
from services.app import BusApplication


class EmbeddedBus:
    """Context manager: ``with EmbeddedBus() as eb: eb.url, eb.sandbox_url, eb.bus``."""

    def __init__(self, settings: Settings | None = None, db_url: str | None = None,
                 sandbox_db_url: str | None = None, workdir: str | Path | None = None, file_jobs: bool = False):
        self.settings = (settings or load_settings(env={})).copy()
        self.file_jobs = file_jobs   # False: no scheduled CDR or reconciliation scans (see start)
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="bssbus-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.db_url = db_url or f"sqlite:///{self.workdir}/bssbus.db"
        self.sandbox_db_url = sandbox_db_url or f"sqlite:///{self.workdir}/sandbox.db"
        self._servers = []

    def start(self) -> "EmbeddedBus":
        self.sandbox = SandboxApplication(self.sandbox_db_url, provinces=self.settings.phases,
                                          credentials=gate_for(self.settings, self.settings.phases))
        server, self.sandbox_url = serve_in_thread(self.sandbox)
        self._servers.append(server)
        self.settings.set_sandbox_url(self.sandbox_url)
        self.settings.raw.setdefault("database", {})["url"] = self.db_url
        # a bus on a temporary database takes no files from the configured folders on its own
        # (a test drives the jobs itself, or asks for them with file_jobs=True)
        if not self.file_jobs:
            files = self.settings.raw.setdefault("files", {})
            for job in ("cdr", "reconciliation"):
                files[job] = dict(files.get(job) or {}, enabled=False)
        self.bus = Bus(self.settings).start()
        self.app = BusApplication(self.bus)
        server, self.url = serve_in_thread(self.app)
        self._servers.append(server)
        self.sandbox.peers.bus_url = self.url
        self.sandbox.peers.login = login_for(self.bus.gatekeeper.consumers)
        return self

    def stop(self) -> None:
        for server in reversed(self._servers):
            server.shutdown()
            server.server_close()
        self._servers.clear()
        self.bus.stop()
        self.sandbox.engine.dispose()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "EmbeddedBus":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
