"""peers.<key>.auth: the credentials the bus sends a peer, checked when the configuration is
loaded. The password comes from the environment or a file outside the checkout, never from
the configuration."""
from __future__ import annotations

import pytest

from config.settings import CONFIG_DIR, ConfigError, PeerAuth, load_settings, password_variable

SANDBOX = {"BSSBUS_SANDBOX_URL": "http://127.0.0.1:9"}


def settings_with(tmp_path, yaml_text: str, **env):
    override = tmp_path / "auth.yaml"
    override.write_text(yaml_text, encoding="utf-8")
    return load_settings(override, env={**SANDBOX, **env})


def load_error(tmp_path, yaml_text: str, **env) -> str:
    with pytest.raises(ConfigError) as caught:
        settings_with(tmp_path, yaml_text, **env)
    return str(caught.value)


def test_the_default_configuration_sends_no_credentials():
    peers = load_settings(env=SANDBOX).peers
    assert all(peer.auth is None for peer in peers.values())


def test_password_variables_are_named_after_the_peer_and_province():
    assert password_variable("hq_billing") == "BSSBUS_PEER_HQ_BILLING_PASSWORD"
    assert password_variable("province_billing", "34") == "BSSBUS_PEER_PROVINCE_BILLING_34_PASSWORD"


def test_each_scheme_with_its_password_from_the_environment(tmp_path):
    settings = settings_with(tmp_path, """
peers:
  hq_crm: {auth: {scheme: basic, username: bssbus}}
  hq_billing: {auth: {scheme: username_token_digest, username: bssbus, password_env: HQB_SECRET}}
  province_billing:
    auth: {scheme: username_token, username: "bus-{province}"}
""", BSSBUS_PEER_HQ_CRM_PASSWORD="crm-secret", HQB_SECRET="hqb-secret",
        BSSBUS_PEER_PROVINCE_BILLING_PASSWORD="pb-secret")
    peers = settings.peers
    assert (peers["hq_crm"].auth.scheme, peers["hq_crm"].auth.password) == ("basic", "crm-secret")
    assert peers["hq_billing"].auth.digest and peers["hq_billing"].auth.password == "hqb-secret"
    auth = peers["province_billing"].for_province("51").auth
    assert (auth.scheme, auth.username_for("51"), auth.password) == ("username_token", "bus-51", "pb-secret")
    assert peers["topup"].auth is None
    for password in ("crm-secret", "hqb-secret", "pb-secret"):
        assert password not in repr(peers) and password not in repr(settings.raw), "a password is never shown"


def test_a_province_has_its_own_auth_or_the_peers(tmp_path):
    settings = settings_with(tmp_path, """
peers:
  province_billing:
    auth: {scheme: username_token, username: "bus-{province}"}
    provinces:
      "34": {auth: {scheme: basic, username: bssbus34}}
      "76": {auth: false}
""", BSSBUS_PEER_PROVINCE_BILLING_PASSWORD="pb", BSSBUS_PEER_PROVINCE_BILLING_34_PASSWORD="js")
    peer = settings.peers["province_billing"]
    legacy = peer.for_province("34", "BankPayment")
    assert (legacy.adapter, legacy.auth.scheme, legacy.auth.password) == ("legacy_billing", "basic", "js")
    assert legacy.auth_where == 'peers.province_billing.provinces."34".auth'
    assert peer.for_province("34", "TopUp").auth.username_for("34") == "bus-34", \
        "services outside the override keep the peer's auth"
    assert peer.for_province("76", "BankPayment").auth is None
    assert peer.for_province("76", "BankPayment").auth_where == 'peers.province_billing.provinces."76".auth'
    assert peer.for_province("51", "BankPayment").auth.password == "pb"


def test_a_password_file_outside_the_checkout(tmp_path):
    secret = tmp_path / "hq_billing.password"
    secret.write_text("file-secret\n", encoding="utf-8")
    settings = settings_with(tmp_path, f"""
peers:
  hq_billing: {{auth: {{scheme: basic, username: bssbus, password_file: "{secret}"}}}}
""")
    assert settings.peers["hq_billing"].auth.password == "file-secret", "the trailing newline is not part of it"


@pytest.mark.parametrize("yaml_text, env, words", [
    ("peers:\n  hq_billing: {auth: {scheme: basic, username: bssbus}}\n", {},
     "peers.hq_billing.auth: the password is not set: set the environment variable "
     "BSSBUS_PEER_HQ_BILLING_PASSWORD"),
    ("peers:\n  hq_billing: {auth: {scheme: basic, username: bssbus, password_env: MY_VAR}}\n", {"MY_VAR": ""},
     "set the environment variable MY_VAR"),
    ("peers:\n  province_billing:\n    provinces:\n      \"34\": {auth: {scheme: basic, username: js}}\n", {},
     'peers.province_billing.provinces."34".auth: the password is not set: set the environment variable '
     "BSSBUS_PEER_PROVINCE_BILLING_34_PASSWORD"),
    ("peers:\n  hq_billing: {auth: {scheme: username_tokn, username: bssbus}}\n", {"BSSBUS_PEER_HQ_BILLING_PASSWORD": "x"},
     "peers.hq_billing.auth.scheme: 'username_tokn' is not a scheme the bus can send (did you mean \"username_token\"?)"),
    ("peers:\n  hq_billing: {auth: {scheme: digest, username: bssbus}}\n", {"BSSBUS_PEER_HQ_BILLING_PASSWORD": "x"},
     "use one of username_token, username_token_digest, basic"),
    ("peers:\n  hq_billing: {auth: {scheme: basic, username: bssbus, password: hunter2}}\n", {},
     "peers.hq_billing.auth.password: a password does not belong in the configuration"),
    ("peers:\n  hq_billing: {auth: {scheme: basic, username: bssbus, pasword_env: X}}\n", {},
     "peers.hq_billing.auth.pasword_env: unknown setting (did you mean \"password_env\"?)"),
    ("peers:\n  hq_billing: {auth: {scheme: basic}}\n", {"BSSBUS_PEER_HQ_BILLING_PASSWORD": "x"},
     "peers.hq_billing.auth.username: the user name the peer knows the bus by is missing"),
    ("peers:\n  hq_billing: {auth: {scheme: basic, username: 'bus-{province}'}}\n", {"BSSBUS_PEER_HQ_BILLING_PASSWORD": "x"},
     "{province} is only known on a peer whose url has {province}"),
    ("peers:\n  province_crm: {auth: {scheme: basic, username: 'bus-{city}'}}\n", {"BSSBUS_PEER_PROVINCE_CRM_PASSWORD": "x"},
     "may contain {province} and no other {...} field"),
    ("peers:\n  hq_billing: {auth: {scheme: basic, username: 'a:b'}}\n", {"BSSBUS_PEER_HQ_BILLING_PASSWORD": "x"},
     "allows no ':' in a user name"),
    ("peers:\n  hq_billing: {auth: {scheme: basic, username: a, password_env: X, password_file: /tmp/x}}\n", {},
     "give password_env or password_file, not both"),
    ("peers:\n  hq_billing: {auth: basic}\n", {}, "peers.hq_billing.auth must be a mapping"),
])
def test_unusable_auth_is_a_clear_error_at_load_time(tmp_path, yaml_text, env, words):
    assert words in load_error(tmp_path, yaml_text, **env)


def test_a_missing_password_names_the_variable_even_for_a_password_the_env_does_not_hold(tmp_path):
    message = load_error(tmp_path, "peers:\n  topup: {auth: {scheme: username_token, username: bus}}\n")
    assert message.endswith("(or name a file in peers.topup.auth.password_file)")


def test_a_password_file_must_exist_be_outside_the_checkout_and_hold_a_password(tmp_path):
    missing = tmp_path / "nope"
    assert f"{missing} does not exist" in load_error(
        tmp_path, f"peers:\n  hq_billing: {{auth: {{scheme: basic, username: a, password_file: '{missing}'}}}}\n")
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    assert f"{empty} is empty" in load_error(
        tmp_path, f"peers:\n  hq_billing: {{auth: {{scheme: basic, username: a, password_file: '{empty}'}}}}\n")
    inside = CONFIG_DIR / "bus.yaml"   # any file of the checkout, existing or not, is refused unread
    assert "is inside the bus's checkout; keep secrets outside the repository" in load_error(
        tmp_path, f"peers:\n  hq_billing: {{auth: {{scheme: basic, username: a, password_file: '{inside}'}}}}\n")


def test_peer_auth_parses_alone():
    auth = PeerAuth.parse({"scheme": "username_token_digest", "username": "u-{province}"}, "x.auth",
                          variable="V", env={"V": "pw"}, per_province=True)
    assert (auth.username_for("11"), auth.password, auth.source, auth.where) == ("u-11", "pw", "$V", "x.auth")
    assert PeerAuth.parse(None, "x", variable="V", env={}, per_province=False) is None
