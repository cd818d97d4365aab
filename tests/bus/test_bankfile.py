"""The bank reconciliation file: name, checksum, streaming read with every refusal, atomic write."""
from __future__ import annotations

import hashlib

import pytest

from bus import bankfile
from bus.bankfile import BankFileError, Header

GOOD = [
    "D|ICBC202611260000000001|20261126093000|18603011234|10000|0|",
    "D|ICBC202611260000000002|20261126094500|18603011234|10000|1|ICBC202611260000000001",
    "D|ICBC202611260000000003|20261126235959|13012345678|5|0|",
]


def write(tmp_path, lines, name="ICBC_20261126.txt", header=None, trailer=None, raw: bytes | None = None):
    path = tmp_path / name
    count, total = len(lines), sum(int(line.split("|")[4]) for line in lines if line.count("|") >= 4
                                   and line.split("|")[4].isdigit())
    header = header if header is not None else f"H|ICBC|20261126|{count}|{total}"
    trailer = trailer if trailer is not None else f"T|{count}|{total}"
    data = raw if raw is not None else "\r\n".join([header, *lines, trailer, ""]).encode("gbk")
    path.write_bytes(data)
    return path


def read_all(path, bank="ICBC", day="20261126"):
    return list(bankfile.read(path, bank, day))


def test_a_good_file_is_read_whole_in_order(tmp_path):
    rows = read_all(write(tmp_path, GOOD))
    assert rows[0] == Header("ICBC", "20261126", 3, 20005)
    assert [r[0] for r in rows[1:]] == [line.split("|")[1] for line in GOOD]
    assert rows[2] == ("ICBC202611260000000002", "20261126094500", "18603011234", 10000, "1",
                       "ICBC202611260000000001", 3)


def test_bare_line_feeds_are_read_too(tmp_path):
    data = "\n".join(["H|ICBC|20261126|3|20005", *GOOD, "T|3|20005", ""]).encode("gbk")
    assert len(read_all(write(tmp_path, GOOD, raw=data))) == 4


@pytest.mark.parametrize("header, trailer, lines, expected", [
    ("H|ICBC|20261126|3|20005", "T|4|20005", GOOD, "trailer says 4 lines"),
    ("H|ICBC|20261126|4|20005", "T|4|20005", GOOD, "the file holds 3 lines, 20005 fen; its trailer says 4"),
    ("H|ICBC|20261126|3|20006", "T|3|20006", GOOD, "20005 fen; its trailer says 3 lines, 20006 fen"),
    ("H|ICBC|20261126|3", "T|3|20005", GOOD, "line 1: the header is not"),
    ("H|CCB|20261126|3|20005", "T|3|20005", GOOD, "the header is for CCB 20261126, the file name for ICBC"),
    ("H|ICBC|20261125|3|20005", "T|3|20005", GOOD, "the header is for ICBC 20261125"),
    ("H|ICBC|20261126|3|20005", "T|3", GOOD, "line 5: the trailer is not T|<count>|<sum fen>"),
    (None, None, [GOOD[0], "D|X|20261126093000|18603011234|10.00|0|"], "line 3: field 5 is not an amount"),
    (None, None, [GOOD[0], "D|X|20261326093000|18603011234|1000|0|"], "line 3: field 3 is not a valid time"),
    (None, None, [GOOD[0], "D|X|20261126093000|1860301123|1000|0|"], "line 3: field 4 is not a number"),
    (None, None, [GOOD[0], "D|X|20261126093000|18603011234|1000|2|"], "line 3: field 6 is not a type"),
    (None, None, [GOOD[0], "D|X|20261126093000|18603011234|1000|0"], "line 3: a D line has 7 fields, this one 6"),
    (None, None, [GOOD[0], "X|X|20261126093000|18603011234|1000|0|"], "line 3: not a D| line"),
    (None, None, [GOOD[0], "D|X|20261126093000|18603011234|1000|1|"], "line 3: a reversal (type 1) names its"),
    (None, None, [GOOD[0], "D|X|20261126093000|18603011234|1000|0|Y"], "line 3: a reversal (type 1) names its"),
])
def test_a_bad_file_is_refused_with_the_line_and_the_reason(tmp_path, header, trailer, lines, expected):
    with pytest.raises(BankFileError) as refused:
        read_all(write(tmp_path, lines, header=header, trailer=trailer))
    assert expected in str(refused.value)


def test_a_missing_trailer_text_after_it_and_an_empty_file_are_refused(tmp_path):
    no_trailer = "\r\n".join(["H|ICBC|20261126|3|20005", *GOOD, ""]).encode("gbk")
    with pytest.raises(BankFileError, match="line 5: the trailer .* is missing"):
        read_all(write(tmp_path, GOOD, raw=no_trailer))
    after = "\r\n".join(["H|ICBC|20261126|3|20005", *GOOD, "T|3|20005", "D|more", ""]).encode("gbk")
    with pytest.raises(BankFileError, match="line 6: text after the trailer"):
        read_all(write(tmp_path, GOOD, raw=after))
    later = "\r\n".join(["H|ICBC|20261126|3|20005", *GOOD, "T|3|20005", "", "  ", "D|more", ""]).encode("gbk")
    with pytest.raises(BankFileError, match="line 8: text after the trailer"):
        read_all(write(tmp_path, GOOD, raw=later))
    blank = "\r\n".join(["H|ICBC|20261126|3|20005", *GOOD, "T|3|20005", "", "", ""]).encode("gbk")
    assert len(read_all(write(tmp_path, GOOD, raw=blank))) == 4
    with pytest.raises(BankFileError, match="the file is empty"):
        read_all(write(tmp_path, GOOD, raw=b""))


def test_bytes_that_are_not_gbk_are_refused(tmp_path):
    data = "\r\n".join(["H|ICBC|20261126|3|20005", *GOOD, "T|3|20005", ""]).encode("gbk")
    with pytest.raises(BankFileError, match="not GBK text"):
        read_all(write(tmp_path, GOOD, raw=data.replace(b"|0|\r\n", b"|0|\x80\r\n", 1)))


def test_a_chinese_serial_in_gbk_is_read(tmp_path):
    lines = ["D|工行202611260001|20261126093000|18603011234|100|0|"]
    assert read_all(write(tmp_path, lines))[1][0] == "工行202611260001"


@pytest.mark.parametrize("name", ["icbc_20261126.txt", "ICBC-20261126.txt", "ICBC_2026112.txt",
                                  "ICBC_20261126.csv", "ABCDEFGHIJK_20261126.txt"])
def test_a_file_named_otherwise_is_refused(name):
    with pytest.raises(BankFileError, match="is named <BANKCODE>_<YYYYMMDD>.txt"):
        bankfile.parse_name(name)


def test_the_name_gives_bank_and_day():
    assert bankfile.parse_name("/x/y/CCB_20261126.txt") == ("CCB", "20261126")


def test_checksum_companion(tmp_path):
    path = write(tmp_path, GOOD)
    assert bankfile.stated_md5(path) is None
    bankfile.checksum_path(path).write_text(f"{hashlib.md5(path.read_bytes()).hexdigest().upper()}  ICBC_20261126.txt\n")
    assert bankfile.stated_md5(path) == bankfile.md5_of(path) == hashlib.md5(path.read_bytes()).hexdigest()


def test_write_atomically_leaves_gbk_crlf_and_its_checksum(tmp_path):
    path = tmp_path / "out" / "ICBC_20261126_RESULT.txt"
    md5 = bankfile.write_atomically(path, ["H|ICBC|20261126|1|5", "D|x|补缴", "T|1|5"])
    assert path.read_bytes() == "H|ICBC|20261126|1|5\r\nD|x|补缴\r\nT|1|5\r\n".encode("gbk")
    assert bankfile.stated_md5(path) == md5 == hashlib.md5(path.read_bytes()).hexdigest()
    assert sorted(p.name for p in path.parent.iterdir()) == ["ICBC_20261126_RESULT.txt",
                                                              "ICBC_20261126_RESULT.txt.chk"]
