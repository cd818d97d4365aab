"""Generated SOAP clients against a running bus: the bus they share.

One EmbeddedBus (the bus and its sandbox peers on loopback, real HTTP, SQLite) serves the whole
session; every toolkit loads each service's contract from its ``/ws/<Service>?wsdl`` and calls
through the address the WSDL names. Each toolkit generates and builds its client once, in a
pytest temporary folder (see the toolkit's module).

Missing toolkits skip with the command that installs them (``bash .ci/install-clients.sh``
installs all); under ``CI=true`` a missing toolkit fails instead.
"""
from __future__ import annotations

import pytest

from bus.embedded import EmbeddedBus


@pytest.fixture(scope="session")
def clients_bus(tmp_path_factory):
    """The bus the generated clients call: ``.url`` is its base URL (``/ws/<Service>?wsdl``)."""
    with EmbeddedBus(workdir=tmp_path_factory.mktemp("clients-bus")) as embedded:
        yield embedded
