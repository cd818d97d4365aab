"""The SoapUI project, sent as a tester sends it: `bssbus soapui-project` against a real bus
(EmbeddedBus over HTTP, authentication on for every caller that sends credentials), the project
read back, its password properties filled in, and every request it holds posted with the
WS-Security its configuration names (UsernameToken, PasswordDigest, Nonce, Created), to the
endpoint, with the SOAPAction and the content type of its SOAP version."""
from __future__ import annotations

import re

import pytest
import yaml
from lxml import etree

from bus.cli import main
from bus.embedded import EmbeddedBus
from bus.security import username_token
from config.settings import load_settings
from services.models import CONTRACTS
from services.soapui import CON, ENVELOPE
from tests.e2e.conftest import post, wait_for

NS = {"con": CON}
PASSWORDS = {"ESALES": "es-pass", "HQCRM": "hq-pass", "PCRM": "pc-pass", "TOPUP": "tu-pass", "VAC": "vac-pass",
             "ICBC": "icbc-pass", "CCB": "ccb-pass"}


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """A bus that checks every credential it gets (``optional``: the one example no consumer
    speaks for, the bus's own ListPayments, still goes through without)."""
    work = tmp_path_factory.mktemp("soapui")
    secrets = work / "secrets.yaml"
    secrets.write_text(yaml.safe_dump({"consumers": {cid: {"password": pw} for cid, pw in PASSWORDS.items()}}),
                       encoding="utf-8")
    settings = load_settings(env={}).copy()
    settings.raw["security"] = dict(settings.raw["security"], authentication="optional", secrets_file=str(secrets))
    with EmbeddedBus(settings, workdir=work) as embedded:
        yield embedded


class Project:
    """What SoapUI does with the project file, as far as sending its requests goes."""

    def __init__(self, path):
        self.path = path
        self.root = etree.parse(str(path)).getroot()

    def set_property(self, name: str, value: str) -> None:
        """Project > Custom Properties: a value typed in, then File > Save Project."""
        (prop,) = [p for p in self.root.findall("con:properties/con:property", NS)
                   if p.findtext("con:name", namespaces=NS) == name]
        prop.find("con:value", NS).text = value
        etree.ElementTree(self.root).write(str(self.path), xml_declaration=True, encoding="UTF-8")
        self.root = etree.parse(str(self.path)).getroot()

    def expand(self, text: str) -> str:
        values = {p.findtext("con:name", namespaces=NS): p.findtext("con:value", namespaces=NS) or ""
                  for p in self.root.findall("con:properties/con:property", NS)}
        return re.sub(r"\$\{#Project#([^}]+)\}", lambda m: values[m.group(1)], text)

    def calls(self):
        """(interface, operation, call) of every request in the project."""
        for iface in self.root.findall("con:interface", NS):
            for op in iface.findall("con:operation", NS):
                for call in op.findall("con:call", NS):
                    yield iface, op, call

    def send(self, iface, op, call):
        """Send one request: (HTTP status, the answer's envelope)."""
        version = iface.get("soapVersion")
        envelope = etree.fromstring(call.findtext("con:request", namespaces=NS).encode("utf-8"))
        if call.get("outgoingWss"):
            (config,) = [o for o in self.root.findall("con:wssContainer/con:outgoing", NS)
                         if o.findtext("con:name", namespaces=NS) == call.get("outgoingWss")]
            (entry,) = config.findall("con:entry[@type='Username']", NS)
            digest = entry.findtext("con:configuration/passwordType", namespaces=NS) == "PasswordDigest"
            token = username_token(self.expand(entry.get("username")), self.expand(entry.get("password")), digest)
            if config.get("mustUnderstand") == "true":
                token.set(f"{{{ENVELOPE[version]}}}mustUnderstand", "1")
            envelope.find(f"{{{ENVELOPE[version]}}}Header").append(token)
        action = op.get("action")
        if version == "1_1":
            content_type, headers = "text/xml;charset=UTF-8", {"SOAPAction": f'"{action}"'}
        else:
            content_type, headers = f'application/soap+xml;charset=UTF-8;action="{action}"', {}
        status, _, body = post(call.findtext("con:endpoint", namespaces=NS),
                               etree.tostring(envelope, encoding="UTF-8"), content_type, headers)
        return status, etree.fromstring(body)


def fault_code(answer) -> str | None:
    fault = answer.find(".//{*}Body/{*}Fault")
    if fault is None:
        return None
    return fault.findtext("faultcode") or fault.findtext("{*}Code/{*}Subcode/{*}Value")


@pytest.fixture(scope="module")
def project(secured, tmp_path_factory):
    path = tmp_path_factory.mktemp("soapui-project") / "bssbus-soapui-project.xml"
    assert main(["soapui-project", "--endpoint", secured.url, "--output", str(path)]) == 0
    return Project(path)


def test_a_request_without_its_password_is_refused(project):
    (iface, op, call) = next(c for c in project.calls() if c[1].get("name") == "QueryArrears")
    status, answer = project.send(iface, op, call)   # the property is still empty
    assert status == 500 and fault_code(answer).endswith("Client.FailedAuthentication")


def test_every_request_of_the_project_is_answered(secured, project):
    for cid, password in PASSWORDS.items():
        project.set_property(f"{cid}_PASSWORD", password)
    sent = 0
    for iface, op, call in project.calls():
        status, answer = project.send(iface, op, call)
        where = f"{iface.get('name')}.{op.get('name')}"
        assert fault_code(answer) is None, (where, etree.tostring(answer)[:600])
        assert status == 200, where
        assert answer.findtext(".//{*}RESPONSE/{*}RSP_CODE") == "0000", (where, etree.tostring(answer)[:600])
        # the bus took it from the consumer the request's WS-Security configuration names
        request = etree.fromstring(call.findtext("con:request", namespaces=NS).encode("utf-8"))
        trans_ido, caller = (request.findtext(f".//{{*}}UNI_BSS_HEAD/{{*}}{f}") for f in ("TRANS_IDO", "ORIG_DOMAIN"))
        last = [h for h in secured.bus.journal.hops(trans_ido) if h["direction"] == "in"
                and h["source"] == caller and h["operation"] == op.get("name")][-1]   # not a peer's onward call
        assert last["consumer"] == call.get("outgoingWss"), (where, last["consumer"])
        sent += 1
    assert sent == 2 * sum(len(c.operations) for c in CONTRACTS.values())
    # the one-way messages the bus accepted reach their peers
    wait_for(lambda: not [r for r in _outbox(secured) if r != "delivered"], timeout=60)


def _outbox(embedded) -> list[str]:
    from sqlalchemy import select

    from dao.models import OutboxEntry
    t = OutboxEntry.__table__
    with embedded.bus.engine.connect() as conn:
        return [r for (r,) in conn.execute(select(t.c.status))]

