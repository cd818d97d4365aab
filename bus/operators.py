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
with it the key of an encrypted journal); a console serving these views over HTTP must
authenticate the operator first and then ask :meth:`Operators.authorize` the same question.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from config.settings import ConfigError, did_you_mean

RAW_READER = "raw-reader"
ROLES = {RAW_READER: "may see messages unmasked, personal data included"}
OPERATOR_ENV = "BSSBUS_OPERATOR"


class AccessDenied(Exception):
    """An operator (or nobody) asked for what their roles do not allow; the message says why."""


@dataclass(frozen=True)
class Operator:
    name: str
    roles: frozenset[str]

    def has(self, role: str) -> bool:
        return role in self.roles


class Operators:
    """The configured operators, by name."""

    def __init__(self, operators: dict[str, Operator]):
        self.by_name = dict(operators)

    @classmethod
    def from_config(cls, section: dict | None) -> "Operators":
        section = section or {}
        if not isinstance(section, dict):
            raise ConfigError("operators must map each operator's name to {roles: [...]}")
        out = {}
        for name, spec in section.items():
            spec = spec or {}
            roles = spec.get("roles", []) if isinstance(spec, dict) else None
            if not isinstance(roles, list) or set(spec) - {"roles"}:
                raise ConfigError(f"operators.{name}: give the operator's roles as {{roles: [...]}}; "
                                  f"roles are {', '.join(ROLES)}")
            for role in roles:
                if role not in ROLES:
                    raise ConfigError(f"operators.{name}: unknown role {role!r}{did_you_mean(role, ROLES)}; "
                                      f"roles are {', '.join(ROLES)}")
            out[str(name)] = Operator(str(name), frozenset(roles))
        return cls(out)

    @classmethod
    def from_settings(cls, settings) -> "Operators":
        return cls.from_config(settings.raw.get("operators"))

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


def named_operator(given: str | None) -> str | None:
    """The operator named on the command line, else in $BSSBUS_OPERATOR."""
    return given or os.environ.get(OPERATOR_ENV) or None
