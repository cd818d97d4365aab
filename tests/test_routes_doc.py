"""docs/ROUTES.md is generated from config/bus.yaml and kept current; every operation has a route."""
from pathlib import Path

from bus.cli import routes_markdown
from config.settings import load_settings
from services.models import CONTRACTS

DOC = Path(__file__).resolve().parents[1] / "docs" / "ROUTES.md"


def test_routes_document_is_current():
    assert DOC.read_text(encoding="utf-8") == routes_markdown(load_settings(env={})), \
        "docs/ROUTES.md is stale: run `bssbus routes --markdown > docs/ROUTES.md`"


def test_every_operation_has_a_route():
    text = routes_markdown(load_settings(env={}))
    assert "no route" not in text
    for service, contract in CONTRACTS.items():
        for operation in contract.operations:
            assert f"| {service} | {operation} |" in text
