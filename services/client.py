"""A zeep client of the bus's own services, for `bssbus call`, the demo, the sandbox and tests.

The WSDLs come from the local wsdl/ folder (parsed once per process) and the address is the
bus's ``/ws/<Service>``. Arguments and answers are the plain dicts of wsdl/examples/.

Answers are read as the bus's adapters read a peer's (:func:`safe_zeep_settings`,
:class:`BoundedTransport`): no DTD, no entity, no network look-up, no huge tree, no compressed
answer, and no answer longer than a cap.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import requests
import zeep
from requests.adapters import HTTPAdapter
from zeep.exceptions import TransportError
from zeep.helpers import serialize_object
from zeep.transports import Transport

from services.models import CONTRACTS
from services.models.common import WSDL_DIR


def safe_zeep_settings() -> zeep.Settings:
    """zeep's parser settings for answers from another system: a DTD, an entity or an external
    reference makes the answer unusable (zeep raises), and libxml2 keeps its size limits."""
    return zeep.Settings(strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=True,
                         xml_huge_tree=False)


class BoundedTransport(Transport):
    """zeep's Transport that reads at most ``max_answer_bytes`` of an answer and asks for it
    uncompressed (``Accept-Encoding: identity``: a compressed answer would be a decompression
    bomb waiting for requests to expand it). A longer answer is a TransportError; one that
    trickles in for longer than ``operation_timeout`` in all is a ``requests.Timeout``."""

    def __init__(self, *args, max_answer_bytes: int = 16 << 20, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_answer_bytes = max_answer_bytes
        self.session.headers["Accept-Encoding"] = "identity"

    def post(self, address, message, headers):
        response = self.session.post(address, data=message, headers=headers, timeout=self.operation_timeout,
                                     stream=True)
        try:
            started, size, chunks = time.monotonic(), 0, []
            for chunk in response.iter_content(1 << 16):   # decoded, should a peer compress anyway
                size += len(chunk)
                if size > self.max_answer_bytes:
                    raise TransportError(f"the answer is longer than {self.max_answer_bytes} bytes",
                                         status_code=response.status_code)
                if self.operation_timeout and time.monotonic() - started > self.operation_timeout:
                    raise requests.Timeout(f"the answer took longer than {self.operation_timeout:g} s to arrive")
                chunks.append(chunk)
            response._content = b"".join(chunks)   # what response.content returns from now on
            response._content_consumed = True
        finally:
            response.close()
        return response


@dataclass
class CallResult:
    """An answer from the bus: head and body dicts, or the fault, and how long it took."""

    head: dict | None
    body: dict | None
    fault_code: str | None = None
    fault_string: str | None = None
    elapsed_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.fault_code is None and (self.head or {}).get("RESPONSE", {}).get("RSP_CODE") == "0000"

    @property
    def rsp_code(self) -> str | None:
        return ((self.head or {}).get("RESPONSE") or {}).get("RSP_CODE")

    @property
    def sender(self) -> str | None:
        return (self.head or {}).get("MSG_SENDER")


class BusClient:
    """Calls ``<base_url>/ws/<Service>`` with zeep; thread-safe, one zeep Client per service."""

    def __init__(self, base_url: str, timeout: float = 30.0, login=None):
        """``login(args)``: the SOAP header (a ``wsse:Security`` element, see
        :func:`bus.security.username_token` / :func:`bus.security.login_for`) to send with a
        call, or None; a fresh one a call, so each carries its own Nonce and Created."""
        self.base_url = base_url.rstrip("/")
        self.login = login
        session = requests.Session()
        session.trust_env = False  # no proxy/netrc look-ups in os.environ on every call
        session.mount("http://", HTTPAdapter(pool_maxsize=32))
        self.transport = BoundedTransport(session=session, timeout=timeout, operation_timeout=timeout)
        self._services: dict[str, object] = {}
        self._lock = threading.Lock()

    def _service(self, name: str):
        proxy = self._services.get(name)
        if proxy is None:
            with self._lock:
                if name not in self._services:
                    contract = CONTRACTS[name]
                    client = zeep.Client(str(WSDL_DIR / contract.wsdl), transport=self.transport,
                                         settings=safe_zeep_settings())
                    binding = f"{{{contract.namespace}}}{name}Soap11Binding"
                    self._services[name] = client.create_service(binding, f"{self.base_url}/ws/{name}")
                proxy = self._services[name]
        return proxy

    def call(self, service: str, operation: str, args: dict) -> CallResult:
        """Call one operation with ``args`` = {"UNI_BSS_HEAD": ..., "UNI_BSS_BODY": ...}."""
        if service not in CONTRACTS:
            raise KeyError(f"unknown service {service!r}; known: {', '.join(CONTRACTS)}")
        if operation not in CONTRACTS[service].operations:
            raise KeyError(f"{service} has no operation {operation!r}; it has "
                           f"{', '.join(CONTRACTS[service].operations)}")
        started = time.perf_counter()
        try:
            header = self.login(args) if self.login else None
            extra = {"_soapheaders": [header]} if header is not None else {}
            result = getattr(self._service(service), operation)(**args, **extra)
        except zeep.exceptions.Fault as fault:
            code = (fault.code or "").split(":", 1)[-1]  # "soap:Client.X" -> "Client.X"
            return CallResult(None, None, code, fault.message,
                              (time.perf_counter() - started) * 1000)
        data = serialize_object(result, dict) or {}
        return CallResult(data.get("UNI_BSS_HEAD"), data.get("UNI_BSS_BODY"),
                          elapsed_ms=(time.perf_counter() - started) * 1000)
