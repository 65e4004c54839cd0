"""``channels:`` of config.yaml: the social accounts posts go to (part of the config leaf).

One entry per account::

    channels:
      - name: x-de
        type: x                       # x | mastodon | bluesky | linkedin | file
        language: de                  # de | en | both (one bilingual post)
        credentials: {consumer_key: "${IMK_X_CONSUMER_KEY}", ...}
        slots: ["Tue 10:00", "Thu 15:00"]   # weekly, in the configured timezone; none: at once
        daily_cap: 3
        hashtags: {fintech: FinTech, ki: KI}

Credentials are ``${ENV}`` references only; an unset variable waits until a command needs the channel,
and ``check`` fails naming it.
"""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from imk_outreach.durations import to_seconds
from imk_outreach.envrefs import Secret, has_reference

CHANNEL_TYPES = ("x", "mastodon", "bluesky", "linkedin", "file")
RULES = ("x", "mastodon", "bluesky", "linkedin")
# The credentials each type needs (all ``${ENV}`` references).
CREDENTIALS: dict[str, tuple[str, ...]] = {
    "x": ("consumer_key", "consumer_secret", "access_token", "access_token_secret"),
    "mastodon": ("access_token",),
    "bluesky": ("app_password",),
    "linkedin": ("access_token",),
    "file": (),
}
# Other keys each type needs, and what they mean (for the error).
REQUIRED: dict[str, dict[str, str]] = {
    "x": {},
    "mastodon": {"base_url": "the instance, e.g. https://social.example"},
    "bluesky": {"handle": "the account, e.g. cluster-imk.bsky.social"},
    "linkedin": {
        "author": "urn:li:organization:<id> or urn:li:person:<id>",
        "api_version": "the LinkedIn-Version, YYYYMM, e.g. 202511",
    },
    "file": {"path": "a JSON-lines file, e.g. var/posts/x-de.jsonl"},
}
# The type-specific keys each type takes (base_url also points X at another API host, e.g. a test server).
ALLOWED: dict[str, tuple[str, ...]] = {
    "x": ("base_url",),
    "mastodon": ("base_url",),
    "bluesky": ("handle", "base_url"),
    "linkedin": ("author", "api_version", "base_url"),
    "file": ("path",),
}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SLOT = re.compile(r"^\s*([A-Za-z]{2,})\.?\s+(\d{1,2}):(\d{2})\s*$")
_GERMAN = {"mo": "mon", "di": "tue", "mi": "wed", "do": "thu", "fr": "fri", "sa": "sat", "so": "sun"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_VERSION = re.compile(r"^20\d\d(0[1-9]|1[0-2])$")
_HASHTAG = re.compile(r"^\w+$")


def parse_slot(text: str) -> tuple[int, time]:
    """``"Tue 10:00"`` -> (1, 10:00); weekday 0 is Monday. German day names work too (``"Di 10:00"``)."""
    match = _SLOT.match(text)
    if match is None:
        raise ValueError(f'{text!r} is not a weekly slot such as "Tue 10:00"')
    word = match.group(1).lower()
    day = word[:3] if word[:3] in WEEKDAYS else _GERMAN.get(word[:2])
    hour, minute = int(match.group(2)), int(match.group(3))
    if day is None:
        raise ValueError(f"{text!r}: unknown weekday {match.group(1)!r}; use one of {', '.join(WEEKDAYS)}")
    if hour > 23 or minute > 59:
        raise ValueError(f"{text!r}: no such time of day")
    return WEEKDAYS.index(day), time(hour, minute)


def _slot_text(value: str) -> str:
    parse_slot(value)
    return value


def _seconds(value: Any) -> Any:
    return to_seconds(value) if isinstance(value, str) else value


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r}: lower-case letters, digits, '-', '_' and '.' only")
    return value


class ChannelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, AfterValidator(_name)]
    type: Literal["x", "mastodon", "bluesky", "linkedin", "file"]
    language: str = "both"
    credentials: dict[str, Secret] = Field(default_factory=dict)
    slots: tuple[Annotated[str, AfterValidator(_slot_text)], ...] = ()
    daily_cap: Annotated[int, Field(ge=1)] | None = None
    hashtags: dict[str, str] = Field(default_factory=dict)
    base_url: str | None = None  # mastodon: the instance; bluesky: the PDS (default https://bsky.social)
    handle: str | None = None  # bluesky
    author: str | None = None  # linkedin
    api_version: Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)] | None = None
    path: Path | None = None  # file
    rules: Literal["x", "mastodon", "bluesky", "linkedin"] = "mastodon"  # file: whose length rules
    timeout: Annotated[float, BeforeValidator(_seconds), Field(gt=0, le=300)] = 20.0

    @model_validator(mode="after")
    def _complete(self) -> ChannelSettings:
        missing = [key for key in CREDENTIALS[self.type] if key not in self.credentials]
        if missing:
            refs = ", ".join(f"{key}: ${{IMK_{_env(self.name)}_{key.upper()}}}" for key in missing)
            raise ValueError(f"channel {self.name} ({self.type}) needs credentials {{{refs}}}")
        unknown = sorted(set(self.credentials) - set(CREDENTIALS[self.type]))
        if unknown:
            known = ", ".join(CREDENTIALS[self.type]) or "none"
            raise ValueError(
                f"unknown credentials {', '.join(unknown)} for type {self.type} (known: {known})"
            )
        for key in ("base_url", "handle", "author", "api_version", "path"):
            if getattr(self, key) is not None and key not in ALLOWED[self.type]:
                allowed = ", ".join(ALLOWED[self.type]) or "none of these"
                raise ValueError(f"{key} is not a key of {self.type} channels (their own keys: {allowed})")
        if self.type != "file" and "rules" in self.model_fields_set:
            raise ValueError(
                f"rules is only for file channels ({self.type} channels follow {self.type}'s rules)"
            )
        for key, meaning in REQUIRED[self.type].items():
            if getattr(self, key) in (None, ""):
                raise ValueError(f"channel {self.name} ({self.type}) needs {key}: {meaning}")
        if self.base_url is not None and not self.base_url.startswith(("https://", "http://")):
            raise ValueError(f"base_url {self.base_url!r}: use an http(s) URL")
        if self.api_version is not None and not _VERSION.match(self.api_version):
            raise ValueError(
                f"api_version {self.api_version!r}: write the LinkedIn-Version as YYYYMM, e.g. 202511"
            )
        if self.author is not None and not re.match(r"^urn:li:(organization|person):\S+$", self.author):
            raise ValueError(f"author {self.author!r}: urn:li:organization:<id> or urn:li:person:<id>")
        for tag, hashtag in self.hashtags.items():
            if not _HASHTAG.match(hashtag.lstrip("#")):
                raise ValueError(f"hashtags.{tag}: {hashtag!r} is not a hashtag (letters, digits, _)")
        return self

    @property
    def platform(self) -> str:
        """Whose length rules and templates the posts follow (a file channel: its ``rules``)."""
        return self.rules if self.type == "file" else self.type

    def weekly_slots(self) -> list[tuple[int, time]]:
        return sorted(parse_slot(text) for text in self.slots)


def _env(name: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_")


def plain_credentials(data: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """(key path, message) for every channel credential written as a value instead of ``${ENV}``:
    loading refuses those outright (an API token in a reviewed file is a leak)."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    channels = data.get("channels") if isinstance(data, dict) else None
    if not isinstance(channels, list):
        return found
    for index, channel in enumerate(channels):
        credentials = channel.get("credentials") if isinstance(channel, dict) else None
        if not isinstance(credentials, dict):
            continue
        for key, value in credentials.items():
            if not isinstance(value, str) or not has_reference(value):
                name = channel.get("name", index)
                variable = f"IMK_{_env(str(name))}_{str(key).upper()}"
                found.append(
                    (
                        ("channels", index, "credentials", key),
                        f'credentials are ${{ENV}} references only: write "${{{variable}}}" and export '
                        f"{variable}",
                    )
                )
    return found
