"""Money between the canonical contracts (integer fen) and legacy peers (yuan as decimal text).

Exact both ways, with integer and string arithmetic only: no float anywhere, no rounding.
Anything that is not exactly an amount is refused with ``ValueError``; an adapter turns that
into a fault rather than guessing.

* ``fen_to_yuan(12345) == "123.45"``, ``fen_to_yuan(-1) == "-0.01"``, ``fen_to_yuan(0) == "0.00"``
* ``yuan_to_fen("123.45") == 12345``; refused: ``"1.2"``, ``"1.234"``, ``"1e3"``, ``" 1.00"``,
  ``"+1.00"``, ``"--1.00"``, ``"1,00"``, ``""``, full-width or other non-ASCII digits, and any
  value that is not a ``str`` (``bool``, ``float``, ``Decimal``, ``bytes``...).

The bound is the canonical ``FenType`` of wsdl/common/BssTypes.xsd: at most 999,999,999,999 fen
either side of zero, which is also what the legacy pattern ``-?[0-9]{1,10}\\.[0-9]{2}`` holds.
"""
from __future__ import annotations

import re

MAX_FEN = 999_999_999_999          # FenType's bound: 12 digits of fen
_YUAN = re.compile(r"(-?)([0-9]{1,10})\.([0-9]{2})")   # ASCII digits only, matched in full


def _check_sign(fen: int, signed: bool, what: str) -> int:
    if not -MAX_FEN <= fen <= MAX_FEN:
        raise ValueError(f"{what} is out of range: at most {MAX_FEN} fen either side of zero")
    if fen < 0 and not signed:
        raise ValueError(f"{what} is negative where only zero or more is allowed")
    return fen


def fen_to_yuan(fen: int, *, signed: bool = True) -> str:
    """``fen`` (an int, not a bool) as yuan text with exactly two decimals.

    ``signed=False`` refuses negative amounts (payments, arrears)."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise ValueError(f"an amount in fen must be an int, not {type(fen).__name__} {fen!r}")
    _check_sign(fen, signed, f"amount {fen} fen")
    yuan, cents = divmod(abs(fen), 100)
    return f"{'-' if fen < 0 else ''}{yuan}.{cents:02d}"


def yuan_to_fen(text: str, *, signed: bool = True) -> int:
    """Yuan text (``-?D{1,10}.DD``, ASCII digits, nothing around it) as an int of fen.

    ``"-0.00"`` is zero. ``signed=False`` refuses negative amounts."""
    if not isinstance(text, str):
        raise ValueError(f"an amount in yuan must be text, not {type(text).__name__} {text!r}")
    match = _YUAN.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an amount in yuan with exactly two decimals (e.g. 123.45)")
    sign, yuan, cents = match.groups()
    fen = int(yuan) * 100 + int(cents)
    return _check_sign(-fen if sign else fen, signed, f"amount {text!r}")
