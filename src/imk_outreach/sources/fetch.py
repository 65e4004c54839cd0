"""Fetching a source's bytes: HTTP with httpx (conditional GET, timeout, bounded redirects, size cap)
or a local file or folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import httpx

from imk_outreach.errors import SourceError
from imk_outreach.models import Document, SourceSpec, Validators

log = logging.getLogger(__name__)
MANUAL_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class FetchLimits:
    timeout: float = 20.0
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    user_agent: str = "imk-outreach"


class NotModified(Exception):
    """The server answered 304: nothing changed since the validators were stored."""


def make_client(limits: FetchLimits, concurrency: int) -> httpx.AsyncClient:
    """One client for a whole gather, so connections to the same host are reused."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(limits.timeout),
        follow_redirects=True,
        max_redirects=limits.max_redirects,
        headers={"User-Agent": limits.user_agent, "Accept": _ACCEPT},
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    )


_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, text/html;q=0.8, */*;q=0.5"
)


async def fetch(
    client: httpx.AsyncClient, spec: SourceSpec, validators: Validators, limits: FetchLimits
) -> Document:
    """The document of ``spec``.

    :raises NotModified: a conditional GET found nothing new.
    :raises SourceError: unreachable, an HTTP error status, too large, too many redirects, missing file.
    """
    if spec.is_remote:
        return await _fetch_http(client, spec, validators, limits)
    return _read_local(spec, validators, limits)


def _conditional_headers(validators: Validators) -> dict[str, str]:
    headers = {}
    if validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified
    return headers


async def _fetch_http(
    client: httpx.AsyncClient, spec: SourceSpec, validators: Validators, limits: FetchLimits
) -> Document:
    try:
        async with client.stream("GET", spec.url, headers=_conditional_headers(validators)) as response:
            if response.status_code == 304:
                raise NotModified()
            if response.status_code >= 400:
                reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
                raise SourceError(spec.name, spec.url, f"the server answered {reason}")
            body = await _read_capped(response, spec, limits.max_bytes)
    except httpx.TooManyRedirects:
        raise SourceError(spec.name, spec.url, f"more than {limits.max_redirects} redirects") from None
    except httpx.TimeoutException:
        raise SourceError(spec.name, spec.url, f"no answer within {limits.timeout:g} s (timeout)") from None
    except httpx.HTTPError as exc:
        raise SourceError(spec.name, spec.url, f"cannot fetch: {_describe(exc)}") from None
    new_validators = Validators(response.headers.get("ETag"), response.headers.get("Last-Modified"))
    return Document(spec.name, str(response.url), body, response.headers.get("Content-Type"), new_validators)


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed ({text})"
    return text


async def _read_capped(response: httpx.Response, spec: SourceSpec, max_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise SourceError(spec.name, spec.url, _too_large(max_bytes))
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise SourceError(spec.name, spec.url, _too_large(max_bytes))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(max_bytes: int) -> str:
    return f"response larger than the {max_bytes / 1_000_000:g} MB limit (gather.max_bytes)"


def _file_stamp(paths: list[Path]) -> str:
    """A local stand-in for an ETag: names, sizes and modification times of the files read."""
    return "local:" + ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths)


def _read_local(spec: SourceSpec, validators: Validators, limits: FetchLimits) -> Document:
    path = Path(spec.url)
    try:
        if path.is_dir():
            return _read_folder(spec, path, validators, limits)
        if path.stat().st_size > limits.max_bytes:
            raise SourceError(spec.name, spec.url, _too_large(limits.max_bytes))
        stamp = _file_stamp([path])
        if validators.etag == stamp:
            raise NotModified()
        return Document(spec.name, path.resolve().as_uri(), path.read_bytes(), None, Validators(stamp))
    except FileNotFoundError:
        raise SourceError(spec.name, spec.url, "file not found (paths are relative to config.yaml)") from None
    except OSError as exc:
        raise SourceError(spec.name, spec.url, f"cannot read: {exc.strerror or exc}") from None


def _read_folder(spec: SourceSpec, path: Path, validators: Validators, limits: FetchLimits) -> Document:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in MANUAL_SUFFIXES and p.is_file())
    if not files:
        raise SourceError(spec.name, spec.url, "the folder holds no .yaml files")
    total = sum(p.stat().st_size for p in files)
    if total > limits.max_bytes:
        raise SourceError(spec.name, spec.url, _too_large(limits.max_bytes))
    stamp = _file_stamp(files)
    if validators.etag == stamp:
        raise NotModified()
    parts = tuple((str(p), p.read_bytes()) for p in files)
    return Document(spec.name, path.resolve().as_uri() + "/", b"", None, Validators(stamp), parts)
