"""Social campaigns and file channels for tests of the social posts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def file_channel(folder: Path, name: str = "x-de", **extra: Any) -> dict[str, Any]:
    """A ``file`` channel with X's rules in German, writing ``folder/<name>.jsonl``."""
    return {
        "name": name,
        "type": "file",
        "rules": "x",
        "language": "de",
        "path": str(folder / f"{name}.jsonl"),
        **extra,
    }


def write_social_campaign(root: Path, channels: list[str], name: str = "posts", **extra: Any) -> Path:
    """``root/campaigns/<name>.yaml``: a post per new item of source ``manual`` on ``channels``, approved
    automatically (``extra`` overrides or adds keys; a key given as None is left out)."""
    data: dict[str, Any] = {
        "name": name,
        "kind": "social",
        "channels": channels,
        "trigger": "new_items",
        "select": {"sources": ["manual"]},
        "approval": "auto",
        **extra,
    }
    folder = root / "campaigns"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps({k: v for k, v in data.items() if v is not None}), encoding="utf-8")
    return path
