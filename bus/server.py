"""Running WSGI apps: gunicorn for `serve` and `sandbox`, a threaded server for tests and the demo.

gunicorn runs ``gthread`` workers: each worker serves many connections with a thread pool,
so a slow peer ties up one thread, not a worker. The application is built in each worker
after the fork (database engines and HTTP pools are never shared across processes).

With ``server.tls`` gunicorn terminates TLS itself (bus/transport.py: TlsConfig), and
:class:`ClientCertificateEnviron` hands the application the client certificate the TLS
layer verified, under the names mod_ssl uses.
"""
from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import threading
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from gunicorn import util as gunicorn_util
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


class ClientCertificateEnviron:
    """WSGI middleware: the verified client certificate of the request's TLS connection in the
    environ, as mod_ssl names it: ``SSL_CLIENT_VERIFY`` (``SUCCESS`` or ``NONE``),
    ``SSL_CLIENT_S_DN`` (RFC 4514), ``SSL_CLIENT_CERT`` (PEM) and ``SSL_CLIENT_FINGERPRINT``
    (SHA-256 of the DER, hex). gunicorn's workers do not set these; they do put the
    connection's socket in ``gunicorn.socket``, and with ``cert_reqs`` optional or required
    the TLS handshake has verified any certificate the client presented against ``ca_certs``."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        from bus.transport import certificate_identity
        sock = environ.get("gunicorn.socket")
        der = None
        if isinstance(sock, ssl.SSLSocket) and sock.context.verify_mode != ssl.CERT_NONE:
            try:
                der = sock.getpeercert(binary_form=True)
            except (ValueError, OSError):
                der = None
        if der:
            subject, fingerprint, pem = certificate_identity(der)
            environ.update(SSL_CLIENT_VERIFY="SUCCESS", SSL_CLIENT_S_DN=subject, SSL_CLIENT_CERT=pem,
                           SSL_CLIENT_FINGERPRINT=fingerprint)
        else:
            environ["SSL_CLIENT_VERIFY"] = "NONE"
        return self.app(environ, start_response)

    def close(self) -> None:
        getattr(self.app, "close", _none)()


def soap_write_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """What gunicorn answers a request it refuses before the application sees it (a request
    line or header too long, a malformed request line or chunk): a SOAP 1.1 fault, never
    gunicorn's HTML page. A 4xx refusal is Client.MalformedRequest, anything else
    Server.InternalError; HTTP 500 as for every SOAP 1.1 fault, the connection closed."""
    from bus.faults import InternalError, MalformedRequest, fault_envelope
    if 400 <= status_int < 500:
        fault = MalformedRequest(f"The HTTP request could not be read ({status_int} {reason}"
                                 + (f": {mesg}" if mesg else "") + "); send a well-formed HTTP request "
                                 "with headers under 8 KB.")
    else:
        fault = InternalError("The bus's HTTP server failed on this request; the failure is in its log.")
    body = fault_envelope(fault)
    head = (f"HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n"
            f"Content-Type: text/xml; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n").encode("latin-1")
    gunicorn_util.write_nonblock(sock, head + body)


def run_gunicorn(factory, host: str, port: int, workers: int, threads: int, timeout: int = 60,
                 name: str = "bssbus", on_exit=None, tls=None, forwarded_allow_ips=None) -> None:
    """``tls``: a bus.transport.TlsConfig (None: plain HTTP); ``forwarded_allow_ips``: the
    proxies whose X-Forwarded-Proto gunicorn believes (its default: loopback)."""
    options = {"bind": f"{host}:{port}", "workers": workers, "threads": threads,
               "worker_class": "gthread", "timeout": timeout, "graceful_timeout": 10,
               "keepalive": 30, "proc_name": name, "accesslog": None, "errorlog": "-",
               "loglevel": "warning"}
    if tls is not None:
        options.update(tls.gunicorn_options())
        if tls.client_certs != "none":
            factory = _with_client_certificates(factory)
    if forwarded_allow_ips:
        options["forwarded_allow_ips"] = ",".join(str(n) for n in forwarded_allow_ips)
    if on_exit is not None:
        options["on_exit"] = lambda _arbiter: on_exit()
    # a worker that exited (however) leaves its live gauges behind in PROMETHEUS_MULTIPROC_DIR
    options["child_exit"] = lambda _server, worker: _worker_exited(worker.pid)
    # a worker stopping gracefully closes its app (the bus: scheduler, forwarder, writer, pool)
    options["worker_exit"] = lambda _server, worker: getattr(getattr(worker, "wsgi", None), "close", _none)()
    logging.getLogger("gunicorn.error").setLevel(logging.WARNING)
    gunicorn_util.write_error = soap_write_error   # this process serves SOAP: its refusals too
    GunicornApp(factory, options).run()


def _worker_exited(pid: int) -> None:
    from bus.metrics import worker_exited
    worker_exited(pid)


def _with_client_certificates(factory):
    return lambda: ClientCertificateEnviron(factory())
