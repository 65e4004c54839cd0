"""Staff-written YAML read with positions, so errors can name the file, key path and line."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from imk_outreach.errors import ConfigError, Location


@dataclass(frozen=True)
class YamlDocument:
    """Parsed data plus the node tree it came from."""

    path: Path
    data: Any
    root: yaml.Node | None

    def locate(self, key_path: Sequence[str | int]) -> Location:
        """The position of the deepest node along ``key_path`` that exists (1-based line)."""
        node = self.root
        mark = node.start_mark if node is not None else None
        for key in key_path:
            if isinstance(node, yaml.MappingNode):
                found = _mapping_child(node, key)
                if found is None:
                    break
                key_node, node = found
                mark = key_node.start_mark
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                node = node.value[key]
                mark = node.start_mark
            else:
                break
        if mark is None:
            return Location(self.path)
        return Location(self.path, mark.line + 1, mark.column + 1)


def _mapping_child(node: yaml.MappingNode, key: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(key):
            return key_node, value_node
    return None


def format_key_path(key_path: Sequence[str | int]) -> str:
    """``("sources", 2, "url")`` -> ``sources[2].url``."""
    text = ""
    for key in key_path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


def load_yaml(path: Path, text: str | bytes | None = None) -> YamlDocument:
    """Read and parse ``path``; a syntax error becomes a ConfigError with its line.

    :raises ConfigError: unreadable file, bad encoding or YAML syntax error.
    """
    if text is None:
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise ConfigError(Location(path), "", f"cannot read file: {exc.strerror or exc}") from exc
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(Location(path), "", f"not UTF-8 text (byte {exc.start})") from exc
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        raise ConfigError(loc, "", f"YAML syntax error: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(Location(path), "", f"YAML error: {exc}") from exc
    finally:
        loader.dispose()
    return YamlDocument(path, data, root)


# -- pydantic validation errors -> ConfigErrors --------------------------------------------------------

_FRIENDLY = {
    "tuple_type": "expected a list (e.g. [a, b])",
    "list_type": "expected a list (e.g. [a, b])",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
}


def validation_errors(
    exc: ValidationError, doc: YamlDocument, model: type[BaseModel], hidden: Collection[str] = ()
) -> list[ConfigError]:
    """One ConfigError per pydantic error, each with the file, line, key path and a plain message.

    An unknown key lists the allowed keys of its mapping (``hidden`` ones left out) and, when one is
    close, says which was probably meant.
    """
    errors = []
    for error in exc.errors():
        # pydantic adds the union member, validator name or "[key]" to some locations; keep real keys.
        loc = [k for k in error["loc"] if isinstance(k, int) or not _is_marker(k)]
        message, hint = _message(error, model, loc, hidden)
        errors.append(ConfigError(doc.locate(loc), format_key_path(loc) or "(top level)", message, hint))
    return errors


def _is_marker(key: str) -> bool:
    return key.startswith(("function-", "tagged-union", "[")) or key.endswith("]")


def _message(
    error: ErrorDetails, model: type[BaseModel], loc: Sequence[str | int], hidden: Collection[str]
) -> tuple[str, str]:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = [k for k in _allowed_keys(model, loc[:-1]) if k not in hidden]
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1) if loc else []
        hint = f"did you mean {close[0]!r}?" if close else ""
        return "unknown key" + (f" (allowed: {', '.join(allowed)})" if allowed else ""), hint
    if kind == "missing":
        return "required key is missing", ""
    if kind in _FRIENDLY:
        return f"{_FRIENDLY[kind]}, got {_describe(error.get('input'))}", ""
    return str(error["msg"]).removeprefix("Value error, "), ""


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f"text {value!r}"
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _allowed_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    current = model
    for key in loc:
        if isinstance(key, int):
            continue
        field = current.model_fields.get(key)
        inner = _model_of(field.annotation) if field is not None else None
        if inner is None:
            return []
        current = inner
    return list(current.model_fields)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None
