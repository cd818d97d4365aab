"""The bank reconciliation file (对账文件): its name, its checksum, reading it and writing the
result the bus sends back (../shared/DOMAIN.md, "Bank reconciliation file").

- Name ``<BANKCODE>_<YYYYMMDD>.txt``; GBK; CRLF line ends (a bare LF is read too).
- ``H|<bank code>|<accounting date>|<count>|<sum fen>``, then one line a transaction
  ``D|<bank serial>|<txn time YYYYMMDDHHMMSS>|<MSISDN>|<amount fen>|<type 0 pay, 1 reversal>|<original serial or empty>``,
  then ``T|<count>|<sum fen>``. The sums are of the amount column, payments and reversals alike.
- A companion ``<name>.chk`` holds the file's MD5 (hex; anything after the first word is ignored).

:func:`read` streams the file: it never holds more than one line, and raises
:class:`BankFileError` (with the line number) on the first thing wrong, so a caller that
posts nothing before the whole file was read posts nothing for a bad file.

The result file ``<BANKCODE>_<YYYYMMDD>_RESULT.txt`` (with its ``.chk``) lists what did not
balance: ``H|<bank>|<date>|<count>|<sum>``, one
``D|<serial>|<time>|<MSISDN>|<bank amount>|<billing amount>|<type>|<original serial>|<outcome>|<action>|<detail>``
a transaction (an amount the side lacks is empty), and ``T|<count>|<sum>``; outcome 01 bank
has it, billing lacks it (银有我无), 02 billing has it, bank lacks it (我有银无), 03 they differ
(or two billings list it), 04 the number's billing cannot list payments; action POST, REVERSE
(handed to the bus's delivery), HOLD, NONE or FAILED.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

ENCODING = "gbk"
NAME = re.compile(r"([0-9A-Z]{2,10})_([0-9]{8})\.txt")
_HEADER = re.compile(r"H\|([0-9A-Z]{2,10})\|([0-9]{8})\|([0-9]{1,9})\|([0-9]{1,15})")
_TRAILER = re.compile(r"T\|([0-9]{1,9})\|([0-9]{1,15})")
_LINE = re.compile(r"D\|([^|]{1,32})\|(20[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
                   r"(?:[01][0-9]|2[0-3])[0-5][0-9][0-5][0-9])\|(1[3-9][0-9]{9})\|([1-9][0-9]{0,11})\|([01])\|([^|]{0,32})")
CHUNK = 1 << 20


class BankFileError(ValueError):
    """The file is refused whole; ``str()`` says why, and where."""


@dataclass(frozen=True)
class Header:
    bank_code: str
    acct_date: str
    count: int
    amount: int


def parse_name(path: str | os.PathLike) -> tuple[str, str]:
    """(bank code, accounting date) of a file named ``<BANKCODE>_<YYYYMMDD>.txt``."""
    name = Path(path).name
    match = NAME.fullmatch(name)
    if match is None:
        raise BankFileError(f"{name}: a bank file is named <BANKCODE>_<YYYYMMDD>.txt (e.g. ICBC_20261126.txt)")
    return match.group(1), match.group(2)


def checksum_path(path: str | os.PathLike) -> Path:
    return Path(f"{path}.chk")


def md5_of(path: str | os.PathLike) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def stated_md5(path: str | os.PathLike) -> str | None:
    """The MD5 the ``.chk`` beside ``path`` states, or None when there is no ``.chk`` (yet)."""
    try:
        text = checksum_path(path).read_text(encoding="ascii", errors="replace").split()
    except FileNotFoundError:
        return None
    return text[0].lower() if text else ""


def read(path: str | os.PathLike, bank_code: str, acct_date: str, progress=None) -> Iterator[tuple]:
    """The header (a :class:`Header`), then a tuple
    ``(serial, time, msisdn, amount, type, original serial, line number)`` a transaction.

    Everything is checked on the way: the header's bank and date against the file name, each
    line's fields, and (when the trailer is reached) the count and sum against the header and
    the trailer. ``progress(lines)`` is called every 65,536 lines."""
    count = amount = 0
    header = None
    line_no = 0
    with open(path, encoding=ENCODING, errors="strict", newline="") as handle:
        try:
            for line_no, line in enumerate(handle, 1):
                line = line.rstrip("\r\n")
                if header is None:
                    header = _header(line, bank_code, acct_date)
                    yield header
                    continue
                match = _LINE.fullmatch(line)
                if match is None:
                    if line.startswith("T|"):
                        _trailer(line, line_no, header, count, amount)
                        for more, rest in enumerate(handle, line_no + 1):   # blank lines only, to the end
                            if rest.strip():
                                raise BankFileError(f"line {more}: text after the trailer")
                        return
                    raise BankFileError(f"line {line_no}: {_why(line)}")
                serial, when, msisdn, fen, kind, orig = match.groups()
                if (kind == "1") != bool(orig):
                    raise BankFileError(f"line {line_no}: a reversal (type 1) names its original serial, "
                                        "a payment (type 0) none")
                value = int(fen)
                count += 1
                amount += value
                yield serial, when, msisdn, value, kind, orig, line_no
                if progress is not None and not line_no & 0xFFFF:
                    progress(line_no)
        except UnicodeDecodeError as exc:
            raise BankFileError(f"after line {line_no}: not GBK text ({exc.reason})") from None
    if header is None:
        raise BankFileError("the file is empty")
    raise BankFileError(f"line {line_no + 1}: the trailer (T|<count>|<sum>) is missing")


def _header(line: str, bank_code: str, acct_date: str) -> Header:
    match = _HEADER.fullmatch(line)
    if match is None:
        raise BankFileError("line 1: the header is not H|<bank code>|<YYYYMMDD>|<count>|<sum fen>")
    header = Header(match.group(1), match.group(2), int(match.group(3)), int(match.group(4)))
    if (header.bank_code, header.acct_date) != (bank_code, acct_date):
        raise BankFileError(f"line 1: the header is for {header.bank_code} {header.acct_date}, the file name for "
                            f"{bank_code} {acct_date}")
    return header


def _trailer(line: str, line_no: int, header: Header, count: int, amount: int) -> None:
    match = _TRAILER.fullmatch(line)
    if match is None:
        raise BankFileError(f"line {line_no}: the trailer is not T|<count>|<sum fen>")
    stated = int(match.group(1)), int(match.group(2))
    if stated != (header.count, header.amount):
        raise BankFileError(f"line {line_no}: the trailer says {stated[0]} lines, {stated[1]} fen; the header "
                            f"{header.count} lines, {header.amount} fen")
    if (count, amount) != stated:
        raise BankFileError(f"line {line_no}: the file holds {count} lines, {amount} fen; its trailer says "
                            f"{stated[0]} lines, {stated[1]} fen")


def _why(line: str) -> str:
    """What is wrong with a transaction line, in words."""
    fields = line.split("|")
    if not line.startswith("D|"):
        return f"not a D| line: {line[:40]!r}"
    if len(fields) != 7:
        return f"a D line has 7 fields, this one {len(fields)}"
    names = ("", "a bank serial (1..32 characters)", "a time (YYYYMMDDHHMMSS)", "a number (11 digits)",
             "an amount (positive fen, no sign or point)", "a type (0 or 1)", "an original serial")
    checks = (None, r"[^|]{1,32}", r"[0-9]{14}", r"1[3-9][0-9]{9}", r"[1-9][0-9]{0,11}", r"[01]", r"[^|]{0,32}")
    for i in range(1, 7):
        if not re.fullmatch(checks[i], fields[i]):
            return f"field {i + 1} is not {names[i]}: {fields[i][:40]!r}"
    return f"field 3 is not a valid time: {fields[2]!r}"


def write_atomically(path: Path, lines: Iterable[str]) -> str:
    """Write GBK CRLF ``lines`` to ``path`` under a temporary name, then rename; then its
    ``.chk``. Returns the MD5."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    digest = hashlib.md5()
    with open(temp, "wb") as handle:
        for line in lines:
            data = (line + "\r\n").encode(ENCODING, errors="replace")
            digest.update(data)
            handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    chk_temp = path.with_name(f".{path.name}.chk.tmp")
    chk_temp.write_text(digest.hexdigest() + "\n", encoding="ascii")
    os.replace(chk_temp, checksum_path(path))
    return digest.hexdigest()
