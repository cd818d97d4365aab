"""Number segments: binary search over ranges, overrides, overlap checks and live reload."""
from __future__ import annotations

import os
import time

import pytest

from bus.segments import SegmentDirectory, SegmentError, SegmentTable
from config.settings import load_settings

HEADER = "begin_msisdn,end_msisdn,province_code,province,city,area_code\n"


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_default_table_covers_all_31_provinces():
    settings = load_settings(env={})
    table = SegmentTable.from_files(settings.segments_file, settings.overrides_file)
    assert len(table) > 30000
    assert table.provinces() == set(settings.phases)
    assert table.lookup("18600000000").province_code == "51"  # moved: the override wins
    assert table.lookup("18600000001").province_code == "11"  # its neighbour stays in Beijing
    assert table.lookup("13000000000").province == "山东"


def test_boundaries_and_gaps(tmp_path):
    f = write(tmp_path / "s.csv", HEADER + "13000000000,13000009999,17,山东,济南,0531\n"
                                           "13000020000,13000029999,30,安徽,合肥,0551\n")
    table = SegmentTable.from_files(f)
    assert table.lookup("13000000000").province_code == "17"
    assert table.lookup("13000009999").city == "济南"
    assert table.lookup("13000010000") is None       # the gap between two ranges
    assert table.lookup("13000029999").province_code == "30"
    assert table.lookup("12999999999") is None
    assert table.lookup("13000030000") is None
    assert table.lookup("1300000") is None and table.lookup("abcdefghijk") is None


@pytest.mark.parametrize("rows, words", [
    ("13000000000,13000009999,17\n13000005000,13000019999,30\n", "overlaps"),
    ("13000009999,13000000000,17\n", "not a range"),
    ("130000,130001,17\n", "11-digit"),
    ("x,y,17\n", "numbers"),
])
def test_bad_tables_are_refused_with_the_line(tmp_path, rows, words):
    f = write(tmp_path / "s.csv", HEADER + rows)
    with pytest.raises(SegmentError, match=words) as err:
        SegmentTable.from_files(f)
    assert "s.csv:" in str(err.value)


def test_reload_without_restart(tmp_path):
    f = write(tmp_path / "s.csv", HEADER + "13000000000,13000009999,17\n")
    directory = SegmentDirectory(f, None, check_every=0)
    assert directory.lookup("13000000005").province_code == "17"
    write(f, HEADER + "13000000000,13000009999,51\n")
    os.utime(f, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert directory.lookup("13000000005").province_code == "51"
    write(f, HEADER + "broken\n")
    os.utime(f, ns=(time.time_ns() + 2 * 10**9, time.time_ns() + 2 * 10**9))
    assert directory.lookup("13000000005").province_code == "51", "a broken file keeps the last good table"
