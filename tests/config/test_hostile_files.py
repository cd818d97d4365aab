"""Configuration and segment files read safely: a YAML alias bomb, a deep or huge file, Python
object tags, bytes that are not UTF-8, broken CSV: each a ConfigError (SegmentError is one) that
names the file, never a hang, a crash or a traceback."""
from __future__ import annotations

import time

import pytest

from bus.segments import SegmentError, SegmentTable
from config.settings import (MAX_CONFIG_BYTES, ConfigError, load_settings, read_yaml)

LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def write(tmp_path, text, name="c.yaml", mode="w"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, words", [
    (LAUGHS, "expands to more than"),                                   # 9^9 values through aliases
    ("a: &a [*a]\n", "refers to itself"),                              # an alias inside its own anchor
    ("a: " + "[" * 10_000 + "]" * 10_000 + "\n", "nests deeper"),
    ("a: " + "[" * 60 + "]" * 60 + "\n", "nests deeper than 50"),
    ("a: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    ("a: !!python/name:os.system\n", "not valid YAML"),
    ("- a\n- b\n", "mapping at the top level"),
    ("a: [unclosed\n", "not valid YAML"),
    (b"bus: {port: \xff\xfe}\n", "not UTF-8"),
])
def test_hostile_yaml_is_a_config_error(tmp_path, text, words):
    path = write(tmp_path, text)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=words) as err:
        load_settings(path, env={})
    assert str(path) in str(err.value)
    assert time.monotonic() - started < 5, "refused, not walked"


def test_a_mildly_aliased_config_is_fine(tmp_path):
    """Anchors and aliases are YAML: a config that reuses a breaker block still loads."""
    path = write(tmp_path, "x-breaker: &br {failures: 3, cooldown_seconds: 2}\n"
                           "peers:\n  hq_crm: {breaker: *br}\n  hq_billing: {breaker: *br}\n")
    settings = load_settings(path, env={"BSSBUS_SANDBOX_URL": "http://127.0.0.1:9"})
    assert settings.peers["hq_crm"].breaker.failures == 3
    assert settings.peers["hq_billing"].breaker.cooldown_seconds == 2


def test_an_oversized_config_is_refused_unread(tmp_path):
    path = write(tmp_path, "# " + "x" * MAX_CONFIG_BYTES + "\n")
    with pytest.raises(ConfigError, match=f"larger than {MAX_CONFIG_BYTES} bytes"):
        load_settings(path, env={})


def test_a_config_that_never_ends_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="larger than"):
        read_yaml("/dev/zero")


@pytest.mark.parametrize("path, words", [("/nonexistent/bus.yaml", "does not exist"), ("/tmp", "directory")])
def test_a_missing_config_says_so(path, words):
    with pytest.raises(ConfigError, match=words):
        load_settings(path, env={})


@pytest.mark.parametrize("setting, value", [
    ("max_elements", 0), ("max_depth", 300), ("max_text_chars", "lots"), ("max_attributes", True),
    ("max_body_bytes", -1), ("max_attribute_chars", 1.5), ("max_peer_answer_bytes", 0),
])
def test_limits_must_be_whole_numbers(tmp_path, setting, value):
    path = write(tmp_path, f"bus:\n  {setting}: {value!r}\n".replace("'", '"'))
    with pytest.raises(ConfigError, match=f"bus.{setting}"):
        load_settings(path, env={})


def test_limits_can_be_set(tmp_path):
    path = write(tmp_path, "bus:\n  max_elements: 500\n  max_text_chars: 2048\n  max_peer_answer_bytes: 4096\n")
    settings = load_settings(path, env={"BSSBUS_SANDBOX_URL": "http://127.0.0.1:9"})
    assert settings.limits["max_elements"] == 500 and settings.limits["max_text_chars"] == 2048
    assert settings.limits["max_depth"] == 64
    assert {p.max_answer_bytes for p in settings.peers.values()} == {4096}


# -- segment files ---------------------------------------------------------------------------------

HEADER = b"begin_msisdn,end_msisdn,province_code,province,city,area_code\n"


@pytest.mark.parametrize("rows, words", [
    (b"13000000000,13000009999,17,\xff\xfe,x,0531\n", ":2: not UTF-8"),
    (b'13000000000,13000009999,17,"' + b"x" * 200_000 + b'",x,0531\n', ":2: not a CSV line"),
    (b"13000000000,13000009999,17\n" + b"x" * 100 + b",1,2\n", ":3: begin and end must be numbers"),
])
def test_hostile_segment_files_are_refused_with_the_line(tmp_path, rows, words):
    path = write(tmp_path, HEADER + rows, "s.csv")
    with pytest.raises(SegmentError, match=words) as err:
        SegmentTable.from_files(path)
    assert isinstance(err.value, ConfigError) and "s.csv" in str(err.value)


def test_hostile_override_files_are_refused(tmp_path):
    ranges = write(tmp_path, HEADER + b"13000000000,13000009999,17\n", "s.csv")
    overrides = write(tmp_path, b"msisdn,province_code,reason\n13000000001,51,\xc0\n", "o.csv")
    with pytest.raises(SegmentError, match="o.csv:2: not UTF-8"):
        SegmentTable.from_files(ranges, overrides)


def test_an_oversized_segment_file_is_refused(tmp_path, monkeypatch):
    import bus.segments
    monkeypatch.setattr(bus.segments, "MAX_FILE_BYTES", 100)
    path = write(tmp_path, HEADER + b"13000000000,13000009999,17\n" * 10, "s.csv")
    with pytest.raises(SegmentError, match="larger than 100 bytes"):
        SegmentTable.from_files(path)
