"""Operators: the people who run the bus, and the roles that let them do more than look.

``operators:`` in config/bus.yaml names each operator with their roles::

    operators:
      alice: {roles: [raw-reader]}

An operator names themself with ``--operator NAME`` (or ``$BSSBUS_OPERATOR``) on the command
line. Roles:

``raw-reader``
    may see messages unmasked: ``bssbus journal show KEY --raw --unmasked`` and
    ``bssbus dlq show ID --unmasked``. Each such view is journalled (direction ``adm``).

The command line takes the name on trust (whoever can run it can read the database, and
with it the key of an encrypted journal); the web console (services/console/) authenticates
the operator first (:meth:`Operators.authenticate`) and then asks :meth:`Operators.authorize`
the same question.

An operator's console password never lives in the configuration: it comes from
``BSSBUS_OPERATOR_<NAME>_PASSWORD`` or from the secrets file (``security.secrets_file`` or
``$BSSBUS_SECRETS_FILE``: YAML ``operators: {alice: {password_hash: ...}}``, the line
``bssbus hash-password`` prints, or ``password: ...``). An operator without one cannot log in
to the console; the command line does not need it.
"""
from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field

from config.settings import ConfigError, did_you_mean

RAW_READER = "raw-reader"
ROLES = {RAW_READER: "may see messages unmasked, personal data included"}
OPERATOR_ENV = "BSSBUS_OPERATOR"


class AccessDenied(Exception):
    """An operator (or nobody) asked for what their roles do not allow; the message says why."""


#: compared against when the name is unknown, so a wrong name costs the time a wrong password does
_NOBODY = "pbkdf2_sha256$200000$00000000000000000000000000000000$" + "0" * 64


@dataclass(frozen=True)
class Operator:
    name: str
    roles: frozenset[str]
    password: str | None = field(default=None, repr=False)
    password_hash: str | None = field(default=None, repr=False)   # pbkdf2_sha256$it$salt$hash

    def has(self, role: str) -> bool:
        return role in self.roles

    @property
    def can_log_in(self) -> bool:
        return self.password is not None or self.password_hash is not None

    def check_password(self, given: str) -> bool:
        from bus.security import verify_hash
        if self.password is not None:
            return hmac.compare_digest(self.password.encode(), given.encode())
        return self.password_hash is not None and verify_hash(self.password_hash, given)


def operator_password_variable(name: str) -> str:
    """The environment variable holding operator ``name``'s console password."""
    return "BSSBUS_OPERATOR_" + "".join(c if c.isalnum() else "_" for c in str(name)).upper() + "_PASSWORD"


class Operators:
    """The configured operators, by name."""

    def __init__(self, operators: dict[str, Operator]):
        self.by_name = dict(operators)

    @classmethod
    def from_config(cls, section: dict | None, secrets: dict | None = None, env=None) -> "Operators":
        """From ``operators:`` with each one's password from ``env`` (BSSBUS_OPERATOR_<NAME>_PASSWORD)
        or the secrets file's ``operators:`` (``secrets``)."""
        section, env = section or {}, os.environ if env is None else env
        held = (secrets or {}).get("operators") or {}
        if not isinstance(section, dict):
            raise ConfigError("operators must map each operator's name to {roles: [...]}")
        out = {}
        for name, spec in section.items():
            spec = spec or {}
            roles = spec.get("roles", []) if isinstance(spec, dict) else None
            if isinstance(spec, dict) and {"password", "password_hash"} & set(spec):
                raise ConfigError(f"operators.{name}: a password does not belong in the configuration; set "
                                  f"{operator_password_variable(name)} or put password_hash (bssbus hash-password) "
                                  "under operators: in the secrets file")
            if not isinstance(roles, list) or set(spec) - {"roles"}:
                raise ConfigError(f"operators.{name}: give the operator's roles as {{roles: [...]}}; "
                                  f"roles are {', '.join(ROLES)}")
            for role in roles:
                if role not in ROLES:
                    raise ConfigError(f"operators.{name}: unknown role {role!r}{did_you_mean(role, ROLES)}; "
                                      f"roles are {', '.join(ROLES)}")
            secret = held.get(name) if isinstance(held, dict) else None
            secret = secret if isinstance(secret, dict) else {}
            password = env.get(operator_password_variable(name)) or secret.get("password")
            out[str(name)] = Operator(str(name), frozenset(roles), password=str(password) if password else None,
                                      password_hash=secret.get("password_hash"))
        return cls(out)

    @classmethod
    def from_settings(cls, settings, env=None) -> "Operators":
        from bus.security import read_secrets
        env = os.environ if env is None else env
        security = settings.raw.get("security") or {}
        path = env.get("BSSBUS_SECRETS_FILE") or (security.get("secrets_file") if isinstance(security, dict) else None)
        return cls.from_config(settings.raw.get("operators"), read_secrets(path), env)

    def authenticate(self, name: str, password: str) -> Operator | None:
        """The operator ``name`` if ``password`` is theirs; else None (an unknown name, an operator
        without a password and a wrong password take the same time)."""
        operator = self.by_name.get(name)
        if operator is None or not operator.can_log_in:
            from bus.security import verify_hash
            verify_hash(_NOBODY, password)
            return None
        return operator if operator.check_password(password) else None

    def authorize(self, name: str | None, role: str) -> Operator:
        """The operator ``name`` if they hold ``role``; else AccessDenied saying what is missing."""
        if not name:
            raise AccessDenied(f"this needs an operator with the role {role}: name yourself with "
                               f"--operator NAME or ${OPERATOR_ENV}")
        operator = self.by_name.get(name)
        if operator is None:
            raise AccessDenied(f"no operator {name!r} in the configuration (operators:)"
                               f"{did_you_mean(name, self.by_name)}")
        if not operator.has(role):
            raise AccessDenied(f"operator {name!r} lacks the role {role} ({ROLES[role]}); "
                               f"operators.{name}.roles grants it")
        return operator


def audit_unmasked(journal, operator: str, rows: list[dict], what: str) -> None:
    """One journal row (direction adm, status unmasked, source the operator) for each message
    shown unmasked."""
    for row in {r["msg_id"]: r for r in rows}.values():
        journal.record(msg_id=row["msg_id"], direction="adm", service=row.get("service"),
                       operation=row.get("operation"), trans_ido=row.get("trans_ido"),
                       proc_id=row.get("proc_id"), msisdn=row.get("msisdn"), source=operator[:40],
                       status="unmasked", route=f"{what} shown unmasked to {operator}"[:200])


def named_operator(given: str | None) -> str | None:
    """The operator named on the command line, else in $BSSBUS_OPERATOR."""
    return given or os.environ.get(OPERATOR_ENV) or None
