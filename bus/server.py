"""Running WSGI apps: gunicorn for `serve` and `sandbox`, a threaded server for tests and the demo.

gunicorn runs ``gthread`` workers: each worker serves many connections with a thread pool,
so a slow peer ties up one thread, not a worker. The application is built in each worker
after the fork (database engines and HTTP pools are never shared across processes).
"""
from __future__ import annotations

import logging
import socket
import socketserver
import threading
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from gunicorn.app.base import BaseApplication


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):  # the journal records requests; stderr stays quiet
        pass


class ThreadedWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0):
    """Start ``app`` on a threaded loopback server; returns (server, base URL). Stop with
    ``server.shutdown(); server.server_close()``."""
    server = make_server(host, port, app, server_class=ThreadedWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name=f"wsgi-{server.server_port}", daemon=True)
    thread.start()
    return server, f"http://{host}:{server.server_port}"


class GunicornApp(BaseApplication):
    """gunicorn with options from code; ``factory`` builds the WSGI app inside each worker."""

    def __init__(self, factory: Callable[[], object], options: dict):
        self.factory = factory
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self):
        return self.factory()


def _none() -> None:
    return None


def run_gunicorn(factory, host: str, port: int, workers: int, threads: int, timeout: int = 60,
                 name: str = "bssbus", on_exit=None) -> None:
    options = {"bind": f"{host}:{port}", "workers": workers, "threads": threads,
               "worker_class": "gthread", "timeout": timeout, "graceful_timeout": 10,
               "keepalive": 30, "proc_name": name, "accesslog": None, "errorlog": "-",
               "loglevel": "warning"}
    if on_exit is not None:
        options["on_exit"] = lambda _arbiter: on_exit()
    # a worker stopping gracefully closes its app (the bus: scheduler, forwarder, writer, pool)
    options["worker_exit"] = lambda _server, worker: getattr(getattr(worker, "wsgi", None), "close", _none)()
    logging.getLogger("gunicorn.error").setLevel(logging.WARNING)
    GunicornApp(factory, options).run()
