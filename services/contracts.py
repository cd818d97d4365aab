"""The contract files of wsdl/, as served and as validated against.

Each service's WSDL is served as the file itself with its endpoint address rewritten to
where it is served and every ``schemaLocation`` rewritten to ``?xsd=<name>``; each imported
XSD is served the same way. The schemas are compiled once, at start-up, one after the other
(concurrent ``XMLSchema`` compiles fail intermittently in libxml2), before any thread serves.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path

from lxml import etree

from services.models import CONTRACTS
from services.models.common import WSDL_DIR, Contract

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
SOAP11_BINDING_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"

SHARED = "common"   # wsdl/common/: the schemas every contract imports
_SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_comments=False)
_compile_lock = threading.Lock()


class ContractFiles:
    """The served and compiled form of every contract under wsdl/."""

    def __init__(self, root: Path = WSDL_DIR, contracts: dict[str, Contract] = CONTRACTS):
        self.root = root
        self.contracts = contracts
        self.files: dict[str, Path] = {}
        for path in sorted(root.rglob("*.xsd")) + sorted(root.rglob("*.wsdl")):
            if path.name in self.files:
                raise ValueError(f"two contract files are named {path.name}: {self.files[path.name]} and {path}")
            self.files[path.name] = path
        self._raw = {name: path.read_bytes() for name, path in self.files.items()}
        self.schemas: dict[str, etree.XMLSchema] = {}
        with _compile_lock:
            for name, contract in contracts.items():
                xsd = root / Path(contract.wsdl).with_suffix(".xsd")
                self.schemas[name] = etree.XMLSchema(etree.parse(str(xsd), _SAFE))

    def location(self, name: str, address: str) -> str:
        """Where schema ``name`` is served: a shared schema (wsdl/common/) at one address for
        every service, ``<root>/ws/common?xsd=<name>``, so a client generated from several
        contracts sees each shared type once; a service's own schema beside its WSDL."""
        if self.files[name].parent.name == SHARED:
            return f"{address.rsplit('/ws/', 1)[0]}/ws/{SHARED}?xsd={name}"
        return f"{address}?xsd={name}"

    def _rewrite_locations(self, data: bytes, address: str) -> bytes:
        def repl(match: re.Match) -> bytes:
            name = Path(match.group(2).decode()).name
            return match.group(1) + self.location(name, address).encode() + match.group(3)
        return re.sub(rb'(schemaLocation=")([^"]+)(")', repl, data)

    def wsdl(self, service: str, address: str) -> bytes:
        """The service's WSDL, served from ``address`` (the full /ws/<Service> URL)."""
        data = self._raw[Path(self.contracts[service].wsdl).name]
        data = re.sub(rb'(<soap(?:12)?:address\s+location=")[^"]*(")',
                      lambda m: m.group(1) + address.encode() + m.group(2), data)
        return self._rewrite_locations(data, address)

    def imports(self, name: str) -> list[str]:
        """Contract file ``name`` and the schema files it imports, transitively, each once (file
        names, in import order)."""
        seen = [name]
        for current in seen:
            for location in re.findall(rb'schemaLocation="([^"]+)"', self._raw[current]):
                if Path(location.decode()).name not in seen:
                    seen.append(Path(location.decode()).name)
        return seen

    def xsd(self, name: str, address: str) -> bytes | None:
        """An imported schema by file name (``address`` is the /ws/<Service> or /ws/common URL
        it is served from), or None when there is no such file."""
        if not name.endswith(".xsd") or name not in self._raw:
            return None
        return self._rewrite_locations(self._raw[name], address)
