"""Staff-written YAML read with positions, so errors can name the file, key path and line.

Every YAML file the product reads (config.yaml, campaign files, manual items) goes through
:func:`load_yaml`, which refuses what could hurt before any data is built: a file over
:data:`MAX_BYTES`, nesting deeper than :data:`MAX_DEPTH`, and aliases that would expand to more than
:data:`MAX_ALIAS_NODES` nodes (an alias bomb, "billion laughs": nine levels of nine aliases are a few
hundred bytes that expand to 387 million values). Keys written twice in one mapping are recorded in
:attr:`YamlDocument.duplicates` for the caller to report with its other problems.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from imk_outreach.errors import ConfigError, Location

KeyPath = tuple[str | int, ...]

# A staff-written file is a few kilobytes; a megabyte is far beyond any real config, campaign or manual
# items file, and small enough that parsing it takes well under a second.
MAX_BYTES = 1_000_000
# Nodes that aliases may add on top of those written out: generous for ``<<: *defaults`` and repeated
# ``select: *common``, tiny next to what an alias bomb asks for.
MAX_ALIAS_NODES = 10_000
# Mappings and lists inside each other; staff files nest a handful of levels (composing is recursive, so
# without a limit a file of 100 000 ``[`` would end in a RecursionError).
MAX_DEPTH = 100
_DUPLICATE_HINT = "YAML keeps only the last"


@dataclass(frozen=True)
class YamlDocument:
    """Parsed data plus the node tree it came from."""

    path: Path
    data: Any
    root: yaml.Node | None
    duplicates: tuple[DuplicateKey, ...] = ()

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

    def duplicate_errors(self, under: KeyPath = ()) -> list[ConfigError]:
        """A ConfigError for each key written twice (inside ``under``, e.g. ``(3,)`` for one item)."""
        return [d.error(self.path) for d in self.duplicates if d.key_path[: len(under)] == under]


@dataclass(frozen=True)
class DuplicateKey:
    """A key written a second time in the same mapping; YAML would silently keep only the last value."""

    key_path: KeyPath
    line: int
    col: int
    first_line: int

    def error(self, path: Path) -> ConfigError:
        """``file:5:1: min_items: key 'min_items' is written twice (first in line 2); ...``."""
        key, first = self.key_path[-1], self.first_line
        message = f"key {key!r} is written twice (first in line {first}); {_DUPLICATE_HINT}"
        return ConfigError(Location(path, self.line, self.col), format_key_path(self.key_path), message)


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
    """Read and parse ``path`` (or ``text``, named as ``path``) within the limits of this module.

    :raises ConfigError: unreadable file, too large, bad encoding, YAML syntax error, nesting too deep or
        aliases that expand too far (an alias bomb); each names the file and, where known, the line.
    """
    if text is None:
        text = _read_limited(path)
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise _too_large(path, size)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(Location(path), "", f"not UTF-8 text (byte {exc.start})") from exc
    try:
        loader = _GuardedLoader(text, path)
    except yaml.reader.ReaderError as exc:  # a control character; the reader checks the whole text first
        line = text.count("\n", 0, exc.position) + 1
        message = f"character #x{exc.character:04x} is not allowed in YAML (a control character)"
        raise ConfigError(Location(path, line), "", message) from exc
    try:
        root = loader.get_single_node()
        duplicates = tuple(_duplicates(root))
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        raise ConfigError(loc, "", f"YAML syntax error: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(Location(path), "", f"YAML error: {exc}") from exc
    finally:
        loader.dispose()
    return YamlDocument(path, data, root, duplicates)


def _read_limited(path: Path) -> bytes:
    """The file's bytes, reading at most one byte past the limit (a huge file is never read whole)."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
            size = max(path.stat().st_size, len(data)) if len(data) > MAX_BYTES else len(data)
    except OSError as exc:
        raise ConfigError(Location(path), "", f"cannot read file: {exc.strerror or exc}") from exc
    if size > MAX_BYTES:
        raise _too_large(path, size)
    return data


def _too_large(path: Path, size: int) -> ConfigError:
    message = f"the file is {size:,} bytes; YAML files over {MAX_BYTES:,} bytes are refused"
    return ConfigError(Location(path), "", message, "split it into smaller files or shorten it")


class _GuardedLoader(yaml.SafeLoader):
    """SafeLoader that counts while it composes: how deep the nesting is and how many nodes the
    aliases would add once expanded. Each node's expanded size is known when it is complete, so an
    alias bomb is refused at the alias that crosses the limit, long before anything is built."""

    def __init__(self, text: str, path: Path) -> None:
        super().__init__(text)
        self._path = path
        self._sizes: dict[int, int] = {}  # id(node) -> nodes it stands for, aliases expanded
        self._borrowed = 0  # nodes added by aliases so far
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            self._borrow(node, event)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            self._refuse(event, f"mappings and lists are nested more than {MAX_DEPTH} levels deep")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None:
            self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in _children(node))
        return node

    def _borrow(self, node: yaml.Node | None, event: yaml.AliasEvent) -> None:
        size = self._sizes.get(id(node)) if node is not None else None
        if size is None:  # the anchored node is still being composed: it would contain itself
            self._refuse(event, f"alias *{event.anchor} is used inside the node it refers to")
        self._borrowed += size
        if self._borrowed > MAX_ALIAS_NODES:
            self._refuse(
                event,
                f"the aliases expand to more than {MAX_ALIAS_NODES:,} values (here *{event.anchor}); "
                "refused as a possible alias bomb",
                "write the values out or use fewer aliases",
            )

    def _refuse(self, event: yaml.Event, message: str, hint: str = "") -> NoReturn:
        mark = event.start_mark
        where = Location(self._path, mark.line + 1, mark.column + 1) if mark else Location(self._path)
        raise ConfigError(where, "", message, hint)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _duplicates(
    node: yaml.Node | None, key_path: KeyPath = (), seen: set[int] | None = None
) -> list[DuplicateKey]:
    """Keys written twice in one mapping, in file order. A node reached again through an alias is not
    walked again (its duplicates are reported once, where it is written)."""
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:
        return []
    seen.add(id(node))
    found: list[DuplicateKey] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if isinstance(key, str) and key_node.tag != "tag:yaml.org,2002:merge":
                mark = key_node.start_mark
                if (key_node.tag, key) in first:
                    found.append(
                        DuplicateKey(
                            (*key_path, key), mark.line + 1, mark.column + 1, first[key_node.tag, key]
                        )
                    )
                else:
                    first[key_node.tag, key] = mark.line + 1
            found += _duplicates(value_node, (*key_path, key if isinstance(key, str) else "?"), seen)
    elif isinstance(node, yaml.SequenceNode):
        for position, child in enumerate(node.value):
            found += _duplicates(child, (*key_path, position), seen)
    return found


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
