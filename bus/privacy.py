"""Personal data: which fields hold it and how they are masked wherever people can read them.

The :class:`Privacy` policy comes from ``privacy:`` in config/bus.yaml: ``fields`` names each
element or key that holds personal data (customer and payer names, certificate numbers,
bank account numbers, addresses, other parties' numbers) with its *kind*, and ``kinds`` says
how much of each kind stays visible (``first`` and ``last`` characters; every other character
becomes ``*``, and at least a third of any value is hidden). It masks

- XML (:meth:`Privacy.mask_xml`): the journal's raw requests and responses, in any charset
  (GBK included); element and attribute names are matched by local name, in any namespace.
  A document that does not parse is masked by patterns instead: never shown raw, never an error.
- data (:meth:`Privacy.mask_data`): a Message's head and body, an outbox row's message.
- free text (:meth:`Privacy.mask_text`): log lines, fault strings, reasons. A field written
  as XML, ``NAME=value``, ``'NAME': 'value'`` or ``"NAME": "value"``, or echoed by a schema
  validation error, is masked by its name; an 18-digit resident identity number and a
  16-19 digit bank card number (62... UnionPay or 4... Visa, Luhn-valid) by their shape;
  and values the same document or hop holds in a personal field wherever they appear.

Where it is applied: `bssbus journal` and `bssbus dlq` output (bus/cli.py), every log record
of the process (:func:`install_log_masking`: a log record factory, so third-party loggers and
tracebacks are covered too) and the bus's pages. The raw bytes are shown only to an operator
with the ``raw-reader`` role who asks for them (bus/operators.py), and each such view is
journalled.
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

from lxml import etree

from config.settings import ConfigError, did_you_mean

MASK = "*"


@dataclass(frozen=True)
class MaskRule:
    """How one kind of personal data is masked: ``first`` and ``last`` characters stay, the
    others become ``*`` (the length stays). At least a third of a value is always hidden, so a
    short value shows fewer characters than the rule says."""

    kind: str
    first: int = 0
    last: int = 0

    def mask(self, value: str) -> str:
        n = len(value)
        if not n:
            return value
        first, last = self.first, self.last
        hidden = max(1, -(-n // 3))
        while first + last > n - hidden:
            if last >= first and last > 0:
                last -= 1
            else:
                first -= 1
        return value[:first] + MASK * (n - first - last) + value[n - last:]


# Free-text shapes: a resident identity number (18 characters, a real date of birth inside)
# and a bank card number (UnionPay 62..., Visa 4..., 16-19 digits; checked with Luhn).
RESIDENT_ID = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])"
                         r"(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx](?![0-9A-Za-z])")
BANK_CARD = re.compile(r"(?<![0-9A-Za-z])(?:62|4)\d{14,17}(?![0-9A-Za-z])")
_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_ENCODING = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def decode_xml(data: bytes | str) -> str:
    """XML bytes as text: in the charset its declaration names (GBK...), else UTF-8, else
    GB18030, else Latin-1; never fails."""
    if isinstance(data, str):
        return data
    declared = _ENCODING.match(data)
    for charset in ([declared.group(1).decode("ascii")] if declared else []) + ["utf-8", "gb18030"]:
        try:
            return data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


class Privacy:
    """The personal-data policy: fields and their MaskRules, and the masking of XML, data and text."""

    def __init__(self, fields: dict[str, MaskRule], kinds: dict[str, MaskRule] | None = None):
        self.fields = {name.casefold(): rule for name, rule in fields.items()}
        self.kinds = dict(kinds or {rule.kind: rule for rule in fields.values()})
        names = "|".join(sorted((re.escape(n) for n in fields), key=len, reverse=True)) or "(?!)"
        ns = r"(?:[\w.-]+:)?"
        # Every repetition that could scan on without a match is bounded, so that text made to
        # look like many unfinished fields costs time in proportion to its length, not its square.
        self._patterns = [re.compile(p, re.IGNORECASE | re.DOTALL) for p in (
            # a schema validation error about a field: Element 'CERT_NUM': [facet 'x'] The value '...'
            rf"(?P<pre>Element '(?:\{{[^}}]{{0,512}}\}})?(?P<f>{names})': (?:\[facet '[^']{{0,64}}'\] )?"
            r"(?:The value )?')(?P<v>[^']{0,512})(?P<post>)",
            # an element, as XML (closed, unclosed or CDATA) ...
            rf"(?P<pre><{ns}(?P<f>{names})(?:\s[^<>]{{0,512}})?(?<!/)>(?:<!\[CDATA\[)?)"
            r"(?P<v>(?:(?!\]\]>)[^<])*)(?P<post>)",
            # ... or as escaped XML inside text
            rf"(?P<pre>&lt;{ns}(?P<f>{names})(?:\s(?:(?!&gt;)[^<]){{0,512}})?&gt;)(?P<v>(?:(?!&lt;)[^<])*)(?P<post>)",
            # 'NAME': 'value', "NAME": "value", NAME="value", \"NAME\": \"value\"
            rf"(?<![\w])(?P<f>{names})(?P<pre>\\?['\"]?\s*[:=]\s*(?P<q>\\?['\"]))"
            r"(?P<v>(?:(?!(?P=q)).){0,512})(?P<post>)",
            # NAME=value, NAME: value
            rf"(?<![\w])(?P<f>{names})(?P<pre>\s*[:=]\s*)(?P<v>[^\s,;&<>'\"\]\}}\)]+)(?P<post>)",
        )]

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_config(cls, section: dict | None) -> "Privacy":
        """From ``privacy:`` ({fields: {NAME: kind}, kinds: {kind: {first, last}}}); ConfigError if unusable."""
        section = section or {}
        if not isinstance(section, dict):
            raise ConfigError("privacy must be a mapping with fields and kinds")
        kinds, rules = section.get("kinds") or {}, {}
        if not isinstance(kinds, dict):
            raise ConfigError("privacy.kinds must map each kind to {first: N, last: N}")
        for kind, spec in kinds.items():
            spec = spec or {}
            if not isinstance(spec, dict) or set(spec) - {"first", "last"} or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in spec.values()):
                raise ConfigError(f"privacy.kinds.{kind}: give how many characters stay visible as "
                                  "{first: N, last: N} (whole numbers, 0 or more)")
            rules[str(kind)] = MaskRule(str(kind), spec.get("first", 0), spec.get("last", 0))
        fields = section.get("fields") or {}
        if not isinstance(fields, dict):
            raise ConfigError("privacy.fields must map each element name to a kind")
        out = {}
        for name, kind in fields.items():
            if kind not in rules:
                raise ConfigError(f"privacy.fields.{name}: unknown kind {kind!r}{did_you_mean(kind, rules)}; "
                                  f"privacy.kinds defines {', '.join(rules) or 'none'}")
            out[str(name)] = rules[kind]
        return cls(out, rules)

    @classmethod
    def from_settings(cls, settings) -> "Privacy":
        return cls.from_config(settings.section("privacy"))

    def rule(self, name: str) -> MaskRule | None:
        """The MaskRule of the field (element or key) ``name``, or None if it is no personal data."""
        return self.fields.get(name.casefold())

    def _kind(self, kind: str) -> MaskRule:
        return self.kinds.get(kind) or MaskRule(kind)

    # -- free text ------------------------------------------------------------------------
    def mask_text(self, text: str | None, known: dict[str, str] | None = None) -> str | None:
        """``text`` with personal data masked: fields by name, identity and card numbers by
        shape, and every value of ``known`` (original -> masked) wherever it appears."""
        if not text:
            return text
        if known:   # whole values only: a number inside a longer serial is not that number
            values = "|".join(re.escape(v) for v in sorted(known, key=len, reverse=True))
            text = re.sub(rf"(?<![0-9A-Za-z])(?:{values})(?![0-9A-Za-z])", lambda m: known[m.group()], text)
        for pattern in self._patterns:
            text = pattern.sub(self._field_match, text)
        text = RESIDENT_ID.sub(lambda m: self._kind("certificate").mask(m.group()), text)
        return BANK_CARD.sub(lambda m: self._kind("bank_account").mask(m.group())
                             if luhn_ok(m.group()) else m.group(), text)

    def _field_match(self, m: re.Match) -> str:
        rule = self.rule(m.group("f"))
        start, end = m.span("v")
        return m.string[m.start():start] + rule.mask(m.group("v")) + m.string[end:m.end()]

    # -- data -----------------------------------------------------------------------------
    def mask_data(self, data: Any, known: dict[str, str] | None = None) -> Any:
        """A copy of ``data`` (dicts, lists, text: a Message's head and body) with the values
        of personal fields masked and any other text masked as free text."""
        if known is None:
            known = self.personal_values(data)
        if isinstance(data, dict):
            out = {}
            for key, value in data.items():
                rule = self.rule(str(key))
                out[key] = self._mask_all(value, rule) if rule else self.mask_data(value, known)
            return out
        if isinstance(data, (list, tuple)):
            return [self.mask_data(v, known) for v in data]
        if isinstance(data, str):
            return self.mask_text(data, known)
        return data

    def _mask_all(self, value: Any, rule: MaskRule) -> Any:
        if isinstance(value, dict):
            return {k: self._mask_all(v, rule) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._mask_all(v, rule) for v in value]
        return None if value is None else rule.mask(str(value))

    def personal_values(self, data: Any) -> dict[str, str]:
        """The values of the personal fields in ``data``, each with its mask (original -> masked)."""
        known: dict[str, str] = {}
        self._collect_data(data, known)
        return known

    def _collect_data(self, data: Any, known: dict[str, str], rule: MaskRule | None = None) -> None:
        if isinstance(data, dict):
            for key, value in data.items():
                self._collect_data(value, known, rule or self.rule(str(key)))
        elif isinstance(data, (list, tuple)):
            for value in data:
                self._collect_data(value, known, rule)
        elif rule is not None and data is not None:
            _remember(known, str(data), rule)

    # -- XML ------------------------------------------------------------------------------
    def mask_xml(self, data: bytes | str | None, known: dict[str, str] | None = None) -> str | None:
        """An XML document (bytes in any charset, or text) as text with personal data masked.
        ``known`` (original -> masked) gains the personal values found, so that the other
        document of a hop can be masked where it echoes them."""
        if data is None:
            return None
        known = {} if known is None else known
        text = decode_xml(data).lstrip("\ufeff")
        declaration = _DECLARATION.match(text)
        try:
            root = etree.fromstring(text[declaration.end():] if declaration else text, _parser())
        except (etree.XMLSyntaxError, ValueError):
            root = None
        if root is None:   # not XML (a refused request, a cut-off body): mask by patterns alone
            for pattern in self._patterns[1:3]:
                for m in pattern.finditer(text):
                    _remember(known, m.group("v"), self.rule(m.group("f")))
            return self.mask_text(text, known)
        inside = {}   # element -> the rule of the personal field it is in
        for el in root.iter():
            rule = inside.get(el.getparent()) if el.getparent() is not None else None
            if isinstance(el.tag, str):
                rule = rule or self.rule(etree.QName(el).localname)
                for name, value in el.attrib.items():
                    _remember(known, value, self.rule(etree.QName(name).localname) or rule)
            if rule is not None:
                inside[el] = rule
                _remember(known, (el.text or "").strip(), rule)
        for el in root.iter():
            rule = inside.get(el)
            if isinstance(el.tag, str) or isinstance(el, etree._Comment):
                el.text = rule.mask(el.text) if rule and el.text else self.mask_text(el.text, known)
            parent_rule = inside.get(el.getparent()) if el.getparent() is not None else None
            el.tail = parent_rule.mask(el.tail) if parent_rule and el.tail else self.mask_text(el.tail, known)
            if isinstance(el.tag, str):
                for name, value in el.attrib.items():
                    attr_rule = self.rule(etree.QName(name).localname) or rule
                    el.set(name, attr_rule.mask(value) if attr_rule else self.mask_text(value, known))
        body = etree.tostring(root, encoding="unicode")
        return (declaration.group() + "\n" + body) if declaration else body

    # -- a journal hop --------------------------------------------------------------------
    def mask_hop(self, row: dict) -> dict:
        """A journal row fit to show: its raw request and response as masked XML text, its
        reason (``error``) masked, with the personal values of either document masked in all."""
        known: dict[str, str] = {}
        out = dict(row)
        for column in ("request", "response"):
            if row.get(column) is not None:
                out[column] = self.mask_xml(row[column], known)
        for column in ("error", "route"):
            out[column] = self.mask_text(row.get(column), known)
        return out


def _remember(known: dict[str, str], value: str, rule: MaskRule | None) -> None:
    if rule is not None and value and len(value) >= 2:
        known[value] = rule.mask(value)


def _parser() -> etree.XMLParser:
    """Hardened and forgiving of nothing: no DTD, no entities, no network (one per call:
    lxml parsers are not shared across threads)."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


# -- the process's policy and its logs -----------------------------------------------------
_lock = threading.Lock()
_policy: Privacy | None = None
_installed = False


def policy() -> Privacy:
    """The process's policy: the one :func:`configure` set, else the default configuration's."""
    global _policy
    if _policy is None:
        from config.settings import load_settings
        try:
            settings = load_settings()
        except ConfigError:   # a broken $BSSBUS_CONFIG must not leave anything unmasked
            settings = load_settings(env={})
        with _lock:
            _policy = _policy or Privacy.from_settings(settings)
    return _policy


def configure(settings) -> Privacy:
    """Use ``settings``' ``privacy:`` in this process (and mask its logs); returns the policy."""
    global _policy
    masking = Privacy.from_settings(settings)
    with _lock:
        _policy = masking
    install_log_masking()
    return masking


def mask_record(record: logging.LogRecord) -> None:
    """Mask a log record's message, traceback and stack in place (its arguments are merged in).
    SQLAlchemy's result rows (logged at DEBUG) are left out whole: their columns have no names
    to mask by. (Statement parameters are hidden by the engines themselves: dao/db.py.)"""
    masking = policy()
    if record.name.startswith("sqlalchemy.engine") and str(record.msg).startswith("Row"):
        record.msg, record.args = "Row (its values are not logged: they may hold personal data)", None
        return
    try:
        message = record.getMessage()
    except Exception:   # a bad format string: keep what there is, masked
        message = f"{record.msg!r} % {record.args!r}"
    record.msg, record.args = masking.mask_text(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = masking.mask_text(record.exc_text)
    if record.stack_info:
        record.stack_info = masking.mask_text(record.stack_info)


def install_log_masking() -> None:
    """Mask every log record this process makes, whatever the logger and the handler (a log
    record factory). Idempotent."""
    global _installed
    with _lock:
        if _installed:
            return
        make = logging.getLogRecordFactory()

        def masked_record(*args, **kwargs) -> logging.LogRecord:
            record = make(*args, **kwargs)
            mask_record(record)
            return record

        logging.setLogRecordFactory(masked_record)
        _installed = True
