"""Staff-written YAML read with positions, so errors can name the file, key path and line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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
