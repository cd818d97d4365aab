"""The WSGI applications ``python -m bench.http_layer`` puts under each HTTP server.

``minimal``: reads the request body and answers a fixed SOAP envelope of about 1 KiB
(``RSP_CODE`` 0000), so that what a server costs a request is the server's own work.

``bus``: the bus as ``bssbus serve`` builds it in each gunicorn worker
(``BusApplication(Bus(settings).start())``), configured by the environment like the command
(``BSSBUS_CONFIG``, ``BSSBUS_DB_URL``, ``BSSBUS_SANDBOX_URL``...; config/settings.py). It is
built on its first request in the process that serves it, so a server that imports the module
before forking its workers (uWSGI without ``--lazy-apps``, gunicorn with ``--preload``) still
gives each worker its own database engine, HTTP pools and threads. The database is migrated
and the cut-over table seeded before the servers start (bench.http_layer does it once, as
``bssbus serve`` does).

    gunicorn -k gthread -w 2 --threads 32 bench.wsgi_apps:bus
    granian --interface wsgi --workers 2 bench.wsgi_apps:minimal
"""
from __future__ import annotations

import threading

_ENVELOPE = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    '<soapenv:Body><QueryArrearsResponse xmlns="http://bench.bssbus.invalid/minimal">'
    "<UNI_BSS_HEAD><ORIG_DOMAIN>BILL</ORIG_DOMAIN><SERVICE_NAME>BankPayment</SERVICE_NAME>"
    "<OPERATE_NAME>QueryArrears</OPERATE_NAME><TRANS_IDO>BENCH0000000000000000</TRANS_IDO>"
    "<RESPONSE><RSP_TYPE>0</RSP_TYPE><RSP_CODE>0000</RSP_CODE><RSP_DESC>OK</RSP_DESC></RESPONSE>"
    "</UNI_BSS_HEAD><UNI_BSS_BODY><SERIAL_NUMBER>13800000000</SERIAL_NUMBER>"
    "<ARREARS_FEE>0</ARREARS_FEE><NOTE>{pad}</NOTE></UNI_BSS_BODY>"
    "</QueryArrearsResponse></soapenv:Body></soapenv:Envelope>\n")
ANSWER = _ENVELOPE.format(pad="x" * (1024 - len(_ENVELOPE.format(pad="")))).encode("utf-8")
_HEADERS = [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(ANSWER)))]


def minimal(environ, start_response):
    """Read the request body, answer :data:`ANSWER` (1,024 bytes); ``GET /healthz`` too."""
    stream = environ["wsgi.input"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    while length > 0:
        chunk = stream.read(min(length, 65536))
        if not chunk:
            break
        length -= len(chunk)
    start_response("200 OK", list(_HEADERS))
    return [ANSWER]


class _Lazy:
    """A WSGI app that builds ``factory()`` on its first call in this process."""

    def __init__(self, factory):
        self.factory, self.app, self.lock = factory, None, threading.Lock()

    def __call__(self, environ, start_response):
        app = self.app
        if app is None:
            with self.lock:
                if self.app is None:
                    self.app = self.factory()
                app = self.app
        return app(environ, start_response)

    def close(self) -> None:
        if self.app is not None:
            getattr(self.app, "close", lambda: None)()


def build_bus():
    """The bus app as ``bssbus serve``'s factory builds it, from the environment's settings."""
    from bus import privacy
    from bus.core import Bus
    from config.settings import load_settings
    from services.app import BusApplication

    settings = load_settings(None)
    privacy.configure(settings)
    return BusApplication(Bus(settings).start())


bus = _Lazy(build_bus)
