"""``${ENV}`` references in config values, and the credentials that wait for them until a command
needs them (:class:`SecretRef`, :func:`reveal`). Only :mod:`imk_outreach.config` builds SecretRefs; the
names are re-exported there.

A variable that is set but empty counts as unset, with its own message. A credential key can have a rule
(``secret_key``: at least :data:`MIN_SECRET_KEY` characters); a value that breaks it waits as a SecretRef
too, so only the commands that use it fail, with :class:`SecretValueError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, overload

from pydantic import GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema

from imk_outreach.errors import ConfigError, ImkError, Location

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MIN_SECRET_KEY = 32
GENERATE_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


class MissingVariableError(ImkError):
    """A command needs a config value whose ``${ENV}`` variable is not set."""

    def __init__(self, key: str, variables: tuple[str, ...], location: Location) -> None:
        self.key = key
        self.variables = variables
        self.location = location
        where = f"{location.path} line {location.line}" if location.line is not None else str(location.path)
        super().__init__(f"{key}: {not_set(variables)} ({where}); export it before running")


def not_set(variables: tuple[str, ...]) -> str:
    """``environment variable X is not set`` (``variables X, Y are``), and for a variable that is set
    to nothing ``environment variable X is set but empty``; both parts when both kinds occur."""
    empty = tuple(name for name in variables if os.environ.get(name) == "")
    unset = tuple(name for name in variables if name not in empty)
    parts = [
        _variables(unset, "is not set", "are not set"),
        _variables(empty, "is set but empty", "are set but empty"),
    ]
    return "; ".join(part for part in parts if part)


def _variables(names: tuple[str, ...], one: str, many: str) -> str:
    if not names:
        return ""
    if len(names) == 1:
        return f"environment variable {names[0]} {one}"
    return f"environment variables {', '.join(names)} {many}"


class SecretValueError(ConfigError):
    """A command needs a credential whose value breaks its rule (``secret_key`` too short)."""


def _long_enough(value: str) -> str | None:
    if len(value) >= MIN_SECRET_KEY:
        return None
    return f"is {len(value)} characters long; use a random text of at least {MIN_SECRET_KEY}"


# Rules for credential values, judged when the value is known (at load, or at use for a SecretRef).
_SECRET_RULES: dict[str, Callable[[str], str | None]] = {"secret_key": _long_enough}
_SECRET_HINTS = {"secret_key": f"generate one with {GENERATE_SECRET}"}


def has_rule(key: str) -> bool:
    """Whether the value of ``key`` (a key path such as ``secret_key``) is judged by a rule."""
    return key in _SECRET_RULES


@dataclass(frozen=True)
class SecretRef:
    """A credential that could not be used when config.yaml was read: its ``${ENV}`` variables were
    not all set (or set but empty), or its value broke the key's rule. The text as written, its key
    path and where it stands; :func:`reveal` resolves it."""

    text: str
    key: str
    location: Location

    def missing(self) -> tuple[str, ...]:
        """The variables of the text that are not set now, or set but empty (treated the same)."""
        return tuple(dict.fromkeys(n for n in ENV_REF.findall(self.text) if not os.environ.get(n)))

    def empty(self) -> tuple[str, ...]:
        """The variables of the text that are set but empty now (``export X=``: most likely a slip)."""
        return tuple(n for n in self.missing() if n in os.environ)

    def fault(self) -> SecretValueError | None:
        """What is wrong with the value now (``secret_key: is 12 characters long; ...``); None when it
        is usable or its variables are missing."""
        rule = _SECRET_RULES.get(self.key)
        message = rule(expand(self.text)) if rule is not None and not self.missing() else None
        if message is None:
            return None
        return SecretValueError(self.location, self.key, message, _SECRET_HINTS.get(self.key, ""))

    def resolve(self) -> str:
        """The text with every reference expanded from the environment as it is now.

        :raises MissingVariableError: a variable is still not set (or empty).
        :raises SecretValueError: the value breaks the key's rule.
        """
        missing = self.missing()
        if missing:
            raise MissingVariableError(self.key, missing, self.location)
        fault = self.fault()
        if fault is not None:
            raise fault
        return expand(self.text)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.is_instance_schema(cls)


Secret = str | SecretRef


@overload
def reveal(value: Secret) -> str: ...
@overload
def reveal(value: Secret | None) -> str | None: ...
def reveal(value: Secret | None) -> str | None:
    """The value of a ``Secret`` key, its variables looked up now (the one accessor for them).

    :raises MissingVariableError: a variable it names is not set.
    :raises SecretValueError: the value breaks its rule (``secret_key`` too short).
    """
    return value.resolve() if isinstance(value, SecretRef) else value


def expand(text: str) -> str:
    """``text`` with every ``${NAME}`` replaced by the variable's value (all must be set)."""
    return ENV_REF.sub(lambda match: os.environ[match.group(1)], text)


def has_reference(text: str) -> bool:
    """Whether ``text`` holds a ``${NAME}`` reference."""
    return ENV_REF.search(text) is not None
