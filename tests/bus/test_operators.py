"""Operators and their roles (bus/operators.py): who may see personal data unmasked."""
from __future__ import annotations

import pytest

from bus.operators import RAW_READER, AccessDenied, Operators, named_operator
from config.settings import ConfigError, load_settings


def test_only_an_operator_with_the_role_is_authorized():
    operators = Operators.from_config({"alice": {"roles": [RAW_READER]}, "bob": {"roles": []}, "carol": None})
    assert operators.authorize("alice", RAW_READER).name == "alice"
    for name, words in ((None, "--operator NAME or $BSSBUS_OPERATOR"), ("", "--operator NAME"),
                        ("bob", "lacks the role raw-reader"), ("carol", "lacks the role"),
                        ("alicia", 'did you mean "alice"?')):
        with pytest.raises(AccessDenied) as denied:
            operators.authorize(name, RAW_READER)
        assert words in str(denied.value)


def test_nobody_is_an_operator_by_default():
    operators = Operators.from_settings(load_settings(env={}))
    assert operators.by_name == {}
    with pytest.raises(AccessDenied):
        operators.authorize("root", RAW_READER)


@pytest.mark.parametrize("section, words", [
    ({"alice": {"roles": ["raw-raeder"]}}, 'unknown role \'raw-raeder\' (did you mean "raw-reader"?)'),
    ({"alice": {"roles": "raw-reader"}}, "operators.alice: give the operator's roles"),
    ({"alice": {"role": ["raw-reader"]}}, "operators.alice"),
    (["alice"], "operators must map"),
])
def test_a_bad_operators_section_is_a_config_error(section, words):
    with pytest.raises(ConfigError) as err:
        Operators.from_config(section)
    assert words in str(err.value)


def test_the_operator_is_named_on_the_command_line_or_in_the_environment(monkeypatch):
    monkeypatch.setenv("BSSBUS_OPERATOR", "alice")
    assert named_operator(None) == "alice" and named_operator("bob") == "bob"
    monkeypatch.delenv("BSSBUS_OPERATOR")
    assert named_operator(None) is None


def test_an_operators_console_password_comes_from_the_environment_or_the_secrets_file():
    from bus.operators import operator_password_variable
    from bus.security import hash_password
    section = {"alice": {"roles": ["raw-reader"]}, "bob": {}, "carol": {}}
    secrets = {"operators": {"bob": {"password_hash": hash_password("bob-pw", iterations=1000)}}}
    ops = Operators.from_config(section, secrets, env={operator_password_variable("alice"): "alice-pw"})
    assert operator_password_variable("alice") == "BSSBUS_OPERATOR_ALICE_PASSWORD"
    assert ops.authenticate("alice", "alice-pw").name == "alice"
    assert ops.authenticate("bob", "bob-pw").name == "bob"
    for name, password in (("alice", "bob-pw"), ("bob", "alice-pw"), ("carol", ""), ("carol", "x"), ("eve", "x")):
        assert ops.authenticate(name, password) is None, name
    assert not ops.by_name["carol"].can_log_in and "alice-pw" not in repr(ops.by_name["alice"])


def test_a_password_in_the_configuration_is_refused():
    for key in ("password", "password_hash"):
        with pytest.raises(ConfigError, match="BSSBUS_OPERATOR_ALICE_PASSWORD"):
            Operators.from_config({"alice": {"roles": [], key: "x"}})
