"""The campaigns a long-running process works with, re-read when their files change.

A file that breaks keeps its last good version running; its problems are logged as
``file:line:col: key.path: message`` each time it changes, until it is fixed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from imk_outreach.config import Settings
from imk_outreach.errors import ConfigError
from imk_outreach.models import Campaign
from imk_outreach.services.compose import campaigns_dir, load_campaigns

log = logging.getLogger(__name__)

Snapshot = tuple[tuple[str, int, int], ...]  # (file, mtime_ns, size) of every campaign file


def snapshot(folder: Path) -> Snapshot:
    if not folder.is_dir():
        return ()
    entries = []
    for path in sorted(folder.iterdir()):
        if path.suffix in (".yaml", ".yml") and not path.name.startswith(".") and path.is_file():
            stat = path.stat()
            entries.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


@dataclass
class CampaignBook:
    """The current campaigns by name; :meth:`refresh` re-reads the folder when something changed."""

    settings: Settings
    campaigns: dict[str, Campaign] = field(default_factory=dict)
    errors: list[ConfigError] = field(default_factory=list)
    _seen: Snapshot | None = None

    def refresh(self, force: bool = False) -> bool:
        """Re-read the campaign files if any changed (or ``force``); True when the campaigns changed."""
        now_seen = snapshot(campaigns_dir(self.settings))
        if now_seen == self._seen and not force:
            return False
        first = self._seen is None
        self._seen = now_seen
        loaded, errors = load_campaigns(self.settings)
        fresh = {c.name: c for c in loaded}
        broken_files = {str(e.location.path) for e in errors}
        for name, old in self.campaigns.items():  # keep the last good version of a broken file
            if name not in fresh and _same_file(old.path, broken_files):
                fresh[name] = old
                log.warning("campaign %s: its file is broken; the last good version keeps running", name)
        for error in errors:
            log.error("%s", error)
        changed = fresh != self.campaigns
        names = ", ".join(sorted(fresh)) or "none"
        if first:
            log.info("campaigns: %s", names)
        elif changed:
            log.info("campaign files reloaded; campaigns now: %s", names)
        self.campaigns, self.errors = fresh, errors
        return changed

    def all(self) -> list[Campaign]:
        return [self.campaigns[name] for name in sorted(self.campaigns)]


def _same_file(path: str, files: set[str]) -> bool:
    resolved = Path(path).resolve()
    return any(Path(f).resolve() == resolved for f in files)
