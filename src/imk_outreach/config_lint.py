"""What ``check`` refuses in config.yaml although loading accepts it.

Loading stays lenient here so that a running deployment does not stop on an upgrade and commands that
never touch a credential keep working; ``check`` (run after every change, and in CI) fails naming the key:

* a secret written in plain text where a ``${ENV}`` reference belongs: a key named like a credential
  (``smtp.password``, ``secret_key``, and any later ``*password``, ``*secret``, ``*token``, ``api_key``),
  and a password inside any URL (``database_url: postgresql://imk:hunter2@db/imk``). User names are not
  secrets, so ``smtp.username`` may be written out;
* ``$NAME`` without braces, which is taken literally (only ``${NAME}`` is looked up);
* a variable that is set but empty (``export IMK_SMTP_PASSWORD=``), which counts as unset;
* a credential that breaks its rule (``secret_key`` shorter than 32 characters).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from imk_outreach.config import GENERATE_SECRET, SecretRef, Settings, has_reference, not_set
from imk_outreach.errors import ConfigError, Location
from imk_outreach.yamlfile import KeyPath, YamlDocument, format_key_path, load_yaml

# The last part of a key that holds a credential; ``username`` and ``key_file`` are not secrets.
_CREDENTIAL = re.compile(r"(password|passwd|secret|secret_key|token|api_key|apikey)$")
# ``$NAME`` as a shell would read it; environment variables are written in capitals by convention, so
# ``5$`` or ``Cost$aver`` in a text are left alone. ``${NAME}`` never matches (``{`` is not in the class).
_BARE = re.compile(r"\$([A-Z_][A-Z0-9_]*)\b")


def config_problems(settings: Settings) -> list[ConfigError]:
    """Every problem of this kind in ``settings.config_path``, in file order.

    :param settings: the loaded settings (for the credentials whose use was deferred).
    """
    try:
        doc = load_yaml(settings.config_path)
    except ConfigError as exc:  # changed since it was loaded
        return [exc]
    problems = list(_written(doc))
    problems += [p for ref in settings.deferred() if (p := _deferred(ref, doc)) is not None]
    return sorted(problems, key=lambda e: (e.location.line or 0, e.location.col or 0, e.key_path))


def _deferred(ref: SecretRef, doc: YamlDocument) -> ConfigError | None:
    """A credential whose variable is set but empty, or whose value breaks its rule (named like the
    other problems, by the file's full path)."""
    fault = ref.fault()
    if ref.empty():
        message = not_set(ref.missing())
        hint = "give it a value, or unset it if the command you run does not need it"
    elif fault is not None:
        message, hint = fault.message, fault.hint
    else:
        return None
    where = Location(doc.path, ref.location.line, ref.location.col)
    return ConfigError(where, ref.key, message, hint)


def _written(doc: YamlDocument) -> Iterator[ConfigError]:
    for key_path, text in _strings(doc.data, ()):
        key = format_key_path(key_path)
        where = doc.locate(key_path)
        bare = list(dict.fromkeys(_BARE.findall(text)))
        for name in bare:
            message = f"${name} is taken literally; only ${{{name}}} is looked up in the environment"
            yield ConfigError(where, key, message, f"write ${{{name}}}")
        if bare:
            continue  # with the braces added it is a reference, not a plain secret
        if _is_credential(key_path) and text.strip() and not has_reference(text):
            yield ConfigError(where, key, "a secret written in plain text", _plain_hint(key))
        elif _has_plain_password(text):
            variable = "IMK_DB_PASSWORD" if key == "database_url" else _variable(key) + "_PASSWORD"
            message = "the password in this URL is written in plain text"
            hint = f"write scheme://user:${{{variable}}}@host/... and export {variable}"
            yield ConfigError(where, key, message, hint)


def _strings(data: Any, key_path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    """(key path, text) of every string value."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(value, (*key_path, str(key)))
    elif isinstance(data, list):
        for position, value in enumerate(data):
            yield from _strings(value, (*key_path, position))
    elif isinstance(data, str):
        yield key_path, data


def _is_credential(key_path: KeyPath) -> bool:
    names = [key for key in key_path if isinstance(key, str)]
    return bool(names) and _CREDENTIAL.search(names[-1].lower()) is not None


def _has_plain_password(text: str) -> bool:
    if "://" not in text or "@" not in text:
        return False
    try:
        password = urlsplit(text.strip()).password
    except ValueError:
        return False
    return bool(password) and not has_reference(password or "")


def _variable(key: str) -> str:
    """``smtp.password`` -> ``IMK_SMTP_PASSWORD``."""
    return "IMK_" + re.sub(r"[^A-Z0-9]+", "_", key.upper()).strip("_")


def _plain_hint(key: str) -> str:
    variable = _variable(key)
    hint = f"write ${{{variable}}} here and export {variable}; config.yaml must not hold secrets"
    if key == "secret_key":
        hint += f"; generate one with {GENERATE_SECRET}"
    return hint
