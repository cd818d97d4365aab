"""adapters.money: fen <-> yuan text, exact both ways, refusing anything that is not an amount."""
from __future__ import annotations

import random
from decimal import Decimal

import pytest

from adapters.money import MAX_FEN, fen_to_yuan, yuan_to_fen

EDGES = [
    (0, "0.00"),
    (1, "0.01"),
    (-1, "-0.01"),
    (9, "0.09"),
    (10, "0.10"),
    (99, "0.99"),
    (100, "1.00"),
    (101, "1.01"),
    (-100, "-1.00"),
    (12345, "123.45"),
    (-12345, "-123.45"),
    (999_999_999_999, "9999999999.99"),     # the bound of FenType in wsdl/common/BssTypes.xsd
    (-999_999_999_999, "-9999999999.99"),
    (100_000_000_000, "1000000000.00"),
]


@pytest.mark.parametrize("fen, text", EDGES)
def test_edge_values_both_ways(fen, text):
    assert fen_to_yuan(fen) == text
    assert yuan_to_fen(text) == fen


def test_the_bound_is_fentype_and_the_legacy_pattern():
    assert MAX_FEN == 999_999_999_999
    for bad in (MAX_FEN + 1, -MAX_FEN - 1, 10**15):
        with pytest.raises(ValueError, match="out of range"):
            fen_to_yuan(bad)


def test_unsigned_refuses_negative_but_takes_zero():
    assert fen_to_yuan(0, signed=False) == "0.00"
    assert fen_to_yuan(1, signed=False) == "0.01"
    assert yuan_to_fen("0.01", signed=False) == 1
    with pytest.raises(ValueError, match="negative"):
        fen_to_yuan(-1, signed=False)
    with pytest.raises(ValueError, match="negative"):
        yuan_to_fen("-0.01", signed=False)


def test_minus_zero_and_leading_zeros_are_exact():
    assert yuan_to_fen("-0.00") == 0
    assert yuan_to_fen("-0.00", signed=False) == 0
    assert yuan_to_fen("0001.50") == 150
    assert fen_to_yuan(-0) == "0.00"


@pytest.mark.parametrize("text", [
    "", " ", "1", "1.", ".50", "1.2", "1.234", "1e3", "1E3", "1.00e0", " 1.00", "1.00 ", "1.00\n",
    "\t1.00", "+1.00", "--1.00", "-", "-.01", "1,00", "1,000.00", "1.0O", "0x10.00", "inf", "nan",
    "１.００", "١.٠٠", "12345678901.00", "1_000.00", "1.-1", "- 1.00", "1..00",
])
def test_yuan_text_that_is_not_exactly_an_amount_is_refused(text):
    with pytest.raises(ValueError):
        yuan_to_fen(text)


@pytest.mark.parametrize("value", [1.0, 0.01, Decimal("1.00"), b"1.00", None, 100, True, [1]])
def test_yuan_to_fen_takes_text_only(value):
    with pytest.raises(ValueError):
        yuan_to_fen(value)


@pytest.mark.parametrize("value", [True, False, 1.0, 0.1, Decimal("1"), "100", None, b"1"])
def test_fen_to_yuan_takes_ints_only(value):
    with pytest.raises(ValueError):
        fen_to_yuan(value)


def test_round_trips_over_a_deterministic_sweep():
    """Hypothesis-style, without hypothesis: every small value, every power-of-ten boundary,
    and many random values over the whole range, each way round."""
    values = set(range(-2_000, 2_001))
    for exp in range(13):
        for base in (10**exp, 10**exp - 1, 10**exp + 1):
            if base <= MAX_FEN:
                values.update((base, -base))
    rng = random.Random(20261127)
    values.update(rng.randint(-MAX_FEN, MAX_FEN) for _ in range(20_000))
    for fen in values:
        text = fen_to_yuan(fen)
        assert yuan_to_fen(text) == fen
        whole, cents = text.lstrip("-").split(".")
        assert len(cents) == 2 and whole == str(int(whole)) and text.startswith("-") == (fen < 0)
        # text -> fen -> text: the canonical spelling is reproduced exactly
        assert fen_to_yuan(yuan_to_fen(text)) == text
    for _ in range(5_000):   # random legal spellings (signs, leading zeros) read exactly
        whole = rng.randint(0, 9_999_999_999)
        cents = rng.randint(0, 99)
        sign = rng.choice(("", "-"))
        text = f"{sign}{whole:0{rng.randint(1, 10)}d}.{cents:02d}"
        expected = (whole * 100 + cents) * (-1 if sign else 1)
        assert yuan_to_fen(text) == expected
