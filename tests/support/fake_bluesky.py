"""A Bluesky PDS for tests: the XRPC routes the atproto SDK uses to sign in, upload a blob and post.

It answers like the reference PDS (bluesky-social/atproto ``packages/pds``, checked against its handlers,
``auth-verifier.ts`` and xrpc-server's rate limiter):

* ``com.atproto.server.createSession``: handle, DID or e-mail plus the app password; wrong ones get
  401 ``AuthenticationRequired`` / ``Invalid identifier or password``. The answer carries an access and a
  refresh JWT (HS256-signed with the fake's own secret; the SDK only decodes them, for ``exp``), the
  DID, the handle and a DID document whose ``#atproto_pds`` service is this server (the SDK switches its
  base URL to it, as it does from bsky.social to the account's PDS host).
* ``com.atproto.server.refreshSession``: Bearer refresh token; rotates it (the old one is revoked).
  A revoked one gets 400 ``ExpiredToken`` / ``Token has been revoked``.
* ``com.atproto.server.getSession``: Bearer access token; the account.
* Access tokens: missing 401 ``AuthMissing``; expired (by ``exp``) or refused by
  :meth:`FakeBluesky.invalidate_access_tokens` 400 ``ExpiredToken`` / ``Token has expired``; forged or of
  the wrong kind 400 ``InvalidToken``.
* ``com.atproto.repo.uploadBlob``: the body is the blob; the answer its blob ref (CIDv1, raw, sha-256).
* ``com.atproto.repo.createRecord``: validates an ``app.bsky.feed.post`` (text at most 300 graphemes and
  3,000 bytes, ``createdAt``, at most 3 ``langs``, facets, one embed: images (1-4, each with ``alt``) or
  external (``uri``/``title``/``description``, optional ``thumb``); every blob uploaded before, an image
  at most 2,000,000 bytes, a thumb 1,000,000) and a given ``rkey`` as a TID. Errors are 400
  ``InvalidRequest``. An ``rkey`` that already exists gets what the reference PDS answers today
  (bluesky-social/atproto#3718, #4728): a 500 ``InternalServerError`` / ``Internal Server Error``.
  Stricter than the real one: facets whose byte range lies outside the text are refused (the PDS stores
  them, apps ignore them).
* ``com.atproto.repo.getRecord``: the record or 400 ``RecordNotFound``.

Answers of ``createSession`` and ``createRecord`` carry ``RateLimit-*`` headers, as the PDS's do;
:func:`rate_limited` builds a 429 as the PDS sends it, for :meth:`PlatformServer.fail`.
:meth:`FakeBluesky.lag_next_create` is the timeout that matters for posting: the record is created, the
answer comes too late.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import regex

from tests.support.platformserver import PlatformServer, Reply, Request

__all__ = ["DID", "HANDLE", "PASSWORD", "FakeBluesky", "fake_bluesky", "rate_limited"]

HANDLE = "cluster-imk.bsky.social"
PASSWORD = "abcd-efgh-ijkl-mnop"  # an app password, in Bluesky's format
DID = "did:plc:w4xbfzo7kqfes5zb7r6qv3rw"
EMAIL = "social@cluster-imk.example"
POST = "app.bsky.feed.post"
ACCESS_LIFETIME = 2 * 3600  # the reference PDS: access tokens last 2 hours
REFRESH_LIFETIME = 90 * 24 * 3600  # refresh tokens 90 days
MAX_GRAPHEMES = 300
MAX_TEXT_BYTES = 3000
MAX_IMAGE_BYTES = 2_000_000  # app.bsky.embed.images#image (1 MB before 2025)
MAX_THUMB_BYTES = 1_000_000  # app.bsky.embed.external#external thumb
_GRAPHEME = regex.compile(r"\X")
_TID = re.compile(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}")
_LANG = re.compile(r"(i|[a-z]{2,3})(-[A-Za-z0-9-]+)?")
_FEATURES = {"app.bsky.richtext.facet#link", "app.bsky.richtext.facet#tag", "app.bsky.richtext.facet#mention"}


def rate_limited(reset_in: int = 300, *, retry_after: int | None = None, limit: int = 30) -> Reply:
    """A 429 as the PDS sends it: ``RateLimit-*`` headers (reset as epoch seconds) and, from recent
    versions on, ``Retry-After``; ``retry_after=None`` leaves that header out (older servers)."""
    headers = _limit_headers(limit, 0, reset_in)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return Reply(429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}, headers)


def _limit_headers(limit: int, remaining: int, reset_in: int) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(remaining),
        "RateLimit-Reset": str(int(time.time()) + reset_in),
        "RateLimit-Policy": f"{limit};w={reset_in}",
    }


def _error(status: int, error: str, message: str) -> Reply:
    return Reply(status, {"error": error, "message": message})


def _invalid(message: str) -> Reply:
    return _error(400, "InvalidRequest", message)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cid_for(data: bytes, codec: int) -> str:
    """A CIDv1 (sha-256) in base32: codec 0x55 (raw) for blobs, 0x71 (dag-cbor) for records."""
    digest = b"\x01" + bytes([codec]) + b"\x12\x20" + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(digest).decode().lower().rstrip("=")


class FakeBluesky:
    """One account (:data:`HANDLE`) on a PDS served by ``server``; see the module docstring."""

    def __init__(self, server: PlatformServer, *, handle: str = HANDLE, password: str = PASSWORD) -> None:
        self.server = server
        self.handle = handle
        self.password = password
        self.did = DID
        self.access_lifetime = ACCESS_LIFETIME
        self.records: dict[str, dict[str, Any]] = {}  # rkey -> {"uri", "cid", "value"}, in creation order
        self.blobs: dict[str, tuple[str, bytes]] = {}  # cid -> (mime type, bytes)
        self._secret = secrets.token_bytes(32)
        self._access: set[str] = set()  # access tokens the server still accepts (before their exp)
        self._refresh: set[str] = set()  # jti of refresh tokens not yet used or revoked
        self._password_valid = True
        self._lag: list[float] = []
        self._released = threading.Event()
        self._lock = threading.Lock()
        for nsid, handler in (
            ("com.atproto.server.createSession", self._create_session),
            ("com.atproto.server.refreshSession", self._refresh_session),
            ("com.atproto.repo.uploadBlob", self._upload_blob),
            ("com.atproto.repo.createRecord", self._create_record),
        ):
            server.route("POST", rf"/xrpc/{re.escape(nsid)}", handler)
        server.route("GET", r"/xrpc/com\.atproto\.server\.getSession", self._get_session)
        server.route("GET", r"/xrpc/com\.atproto\.repo\.getRecord", self._get_record)

    # -- test controls ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def posts(self) -> list[dict[str, Any]]:
        """The post records, oldest first."""
        return [r["value"] for r in self.records.values()]

    def calls(self, nsid: str) -> int:
        """How many requests reached ``/xrpc/<nsid>`` (faulted ones included)."""
        return sum(1 for r in self.server.requests if r.path == f"/xrpc/{nsid}")

    def invalidate_access_tokens(self) -> None:
        """Every access token issued so far is refused as expired, though its ``exp`` has not come: what a
        client whose clock runs behind the server's sees."""
        with self._lock:
            self._access.clear()

    def revoke_app_password(self) -> None:
        """The app password is revoked (Settings > App passwords): it no longer signs in, and its refresh
        tokens are revoked. Access tokens already issued work until their ``exp``, as on the real PDS."""
        with self._lock:
            self._password_valid = False
            self._refresh.clear()

    def lag_next_create(self, seconds: float) -> None:
        """The next record is created, but the answer is held ``seconds``: the client times out although
        the post exists."""
        self._lag.append(seconds)

    def release(self) -> None:
        """Let every held answer go (end of test)."""
        self._released.set()

    # -- tokens -----------------------------------------------------------------------------------------

    def _jwt(self, typ: str, payload: dict[str, Any]) -> str:
        head = _b64(json.dumps({"typ": typ, "alg": "HS256"}).encode())
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        signature = hmac.new(self._secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{_b64(signature)}"

    def _issue(self) -> dict[str, Any]:
        now = int(time.time())
        host = self.server.url.split("://", 1)[1].split(":", 1)[0]
        # a jti in the access token too (the PDS allows one): two sessions of one second stay apart
        claims = {"sub": self.did, "iat": now, "jti": _b64(secrets.token_bytes(12))}
        access = self._jwt(
            "at+jwt",
            {
                **claims,
                "scope": "com.atproto.appPass",
                "aud": f"did:web:{host}",
                "exp": now + self.access_lifetime,
            },
        )
        jti = _b64(secrets.token_bytes(24))
        refresh = self._jwt(
            "refresh+jwt",
            {**claims, "scope": "com.atproto.refresh", "aud": "did:web:bsky.social", "jti": jti,
             "exp": now + REFRESH_LIFETIME},
        )  # fmt: skip
        self._access.add(access)
        self._refresh.add(jti)
        return {
            "accessJwt": access,
            "refreshJwt": refresh,
            "handle": self.handle,
            "did": self.did,
            "didDoc": self._did_doc(),
            "email": EMAIL,
            "emailConfirmed": True,
            "emailAuthFactor": False,
            "active": True,
        }

    def _did_doc(self) -> dict[str, Any]:
        return {
            "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
            "id": self.did,
            "alsoKnownAs": [f"at://{self.handle}"],
            "verificationMethod": [
                {"id": f"{self.did}#atproto", "type": "Multikey", "controller": self.did,
                 "publicKeyMultibase": "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"},
            ],
            "service": [
                {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                 "serviceEndpoint": self.server.url},
            ],
        }  # fmt: skip

    def _claims(self, request: Request, typ: str) -> dict[str, Any] | Reply:
        """The verified payload of the request's Bearer token of kind ``typ``, or the refusal."""
        auth = request.header("Authorization") or ""
        if not auth.startswith("Bearer "):
            return _error(401, "AuthMissing", "Authentication Required")
        token = auth.removeprefix("Bearer ")
        try:
            head_b64, body_b64, signature = token.split(".")
            expected = hmac.new(self._secret, f"{head_b64}.{body_b64}".encode(), hashlib.sha256).digest()
            header, payload = json.loads(_unb64(head_b64)), json.loads(_unb64(body_b64))
            verified = hmac.compare_digest(_unb64(signature), expected)
        except ValueError:
            verified = False
        if not verified:
            return _error(400, "InvalidToken", "Token could not be verified")
        if payload["exp"] <= time.time():
            return _error(400, "ExpiredToken", "Token has expired")
        if header.get("typ") != typ:
            return _error(400, "InvalidToken", "Invalid token type")
        return dict(payload)

    def _account(self, request: Request) -> Reply | None:
        """None when the request carries an access token the server accepts, else the refusal."""
        claims = self._claims(request, "at+jwt")
        if isinstance(claims, Reply):
            return claims
        token = (request.header("Authorization") or "").removeprefix("Bearer ")
        with self._lock:
            accepted = token in self._access
        return None if accepted else _error(400, "ExpiredToken", "Token has expired")

    # -- server.* ---------------------------------------------------------------------------------------

    def _create_session(self, request: Request) -> Reply:
        body = request.json() or {}
        identifier, password = str(body.get("identifier", "")), str(body.get("password", ""))
        known = identifier.lower() in (self.handle, self.did, EMAIL)
        with self._lock:
            if not (known and password == self.password and self._password_valid):
                return _error(401, "AuthenticationRequired", "Invalid identifier or password")
            session = self._issue()
        return Reply(200, session, _limit_headers(30, 29, 300))

    def _refresh_session(self, request: Request) -> Reply:
        claims = self._claims(request, "refresh+jwt")
        if isinstance(claims, Reply):
            return claims
        with self._lock:
            if claims["jti"] not in self._refresh:
                return _error(400, "ExpiredToken", "Token has been revoked")
            self._refresh.discard(claims["jti"])
            session = self._issue()
        for key in ("email", "emailAuthFactor"):
            session.pop(key)
        return Reply(200, session)

    def _get_session(self, request: Request) -> Reply:
        refused = self._account(request)
        if refused is not None:
            return refused
        account = {"handle": self.handle, "did": self.did, "didDoc": self._did_doc(), "email": EMAIL}
        return Reply(200, {**account, "emailConfirmed": True, "emailAuthFactor": False, "active": True})

    # -- repo.* -----------------------------------------------------------------------------------------

    def _upload_blob(self, request: Request) -> Reply:
        refused = self._account(request)
        if refused is not None:
            return refused
        mime_type = (request.header("Content-Type") or "application/octet-stream").split(";")[0].strip()
        if mime_type == "*/*":  # the SDK's default; the PDS sniffs the bytes
            mime_type = "image/png" if request.body.startswith(b"\x89PNG") else "application/octet-stream"
        cid = cid_for(request.body, 0x55)
        with self._lock:
            self.blobs[cid] = (mime_type, request.body)
        blob = {"$type": "blob", "ref": {"$link": cid}, "mimeType": mime_type, "size": len(request.body)}
        return Reply(200, {"blob": blob})

    def _get_record(self, request: Request) -> Reply:
        params = {k: v[-1] for k, v in request.query.items()}
        uri = f"at://{params.get('repo')}/{params.get('collection')}/{params.get('rkey')}"
        record = (
            self.records.get(str(params.get("rkey")))
            if params.get("repo") in (self.did, self.handle)
            else None
        )
        if record is None or params.get("collection") != POST:
            return _error(400, "RecordNotFound", f"Could not locate record: {uri}")
        return Reply(200, record)

    def _create_record(self, request: Request) -> Reply:
        refused = self._account(request)
        if refused is not None:
            return refused
        body = request.json() or {}
        if body.get("repo") not in (self.did, self.handle):
            return _error(401, "AuthenticationRequired", "Authentication Required")
        if body.get("collection") != POST:
            return _invalid(f"this fake only stores {POST} records, not {body.get('collection')!r}")
        record, rkey = body.get("record"), body.get("rkey")
        if rkey is not None and not (isinstance(rkey, str) and _TID.fullmatch(rkey)):
            return _invalid(f"Invalid record key for {POST}: must be a valid TID")
        problem = self._post_problem(record)
        if problem:
            return _invalid(f"Invalid {POST} record: {problem}")
        with self._lock:
            rkey = rkey or _next_tid()
            if rkey in self.records:  # the MST refuses to add an existing key; the PDS turns that into a 500
                return _error(500, "InternalServerError", "Internal Server Error")
            cid = cid_for(json.dumps(record, sort_keys=True).encode(), 0x71)
            uri = f"at://{self.did}/{POST}/{rkey}"
            self.records[rkey] = {"uri": uri, "cid": cid, "value": record}
            lag = self._lag.pop(0) if self._lag else 0.0
        if lag:
            self._released.wait(lag)
        commit = {"cid": cid_for(uri.encode(), 0x71), "rev": _next_tid()}
        answer = {"uri": uri, "cid": cid, "commit": commit, "validationStatus": "valid"}
        return Reply(200, answer, _limit_headers(5000, 4997, 3600))

    # -- record validation ------------------------------------------------------------------------------

    def _post_problem(self, record: Any) -> str | None:
        if not isinstance(record, dict) or record.get("$type") != POST:
            return f"Record/$type must be {POST}"
        text = record.get("text")
        if not isinstance(text, str):
            return "Record must have the property 'text'"
        if len(_GRAPHEME.findall(text)) > MAX_GRAPHEMES:
            return f"Record/text must not be longer than {MAX_GRAPHEMES} graphemes"
        if len(text.encode()) > MAX_TEXT_BYTES:
            return f"Record/text must not be longer than {MAX_TEXT_BYTES} characters"
        if not _is_datetime(record.get("createdAt")):
            return "Record/createdAt must be an valid atproto datetime (both RFC-3339 and ISO-8601)"
        langs = record.get("langs", [])
        if not isinstance(langs, list) or len(langs) > 3 or not all(_LANG.fullmatch(str(x)) for x in langs):
            return "Record/langs must be at most 3 language tags"
        return _facets_problem(record.get("facets", []), text.encode()) or self._embed_problem(
            record.get("embed")
        )

    def _embed_problem(self, embed: Any) -> str | None:
        if embed is None:
            return None
        kind = embed.get("$type") if isinstance(embed, dict) else None
        if kind == "app.bsky.embed.images":
            images = embed.get("images")
            if not isinstance(images, list) or not 1 <= len(images) <= 4:
                return "Record/embed/images must hold 1 to 4 images"
            for n, image in enumerate(images):
                if not isinstance(image, dict) or not isinstance(image.get("alt"), str):
                    return f"Record/embed/images/{n} must have the property 'alt'"
                problem = self._blob_problem(
                    image.get("image"), f"Record/embed/images/{n}/image", MAX_IMAGE_BYTES
                )
                if problem:
                    return problem
            return None
        if kind == "app.bsky.embed.external":
            external = embed.get("external")
            if not isinstance(external, dict):
                return "Record/embed must have the property 'external'"
            for name in ("uri", "title", "description"):
                if not isinstance(external.get(name), str):
                    return f"Record/embed/external must have the property '{name}'"
            if not re.match(r"[a-z][a-z0-9+.-]*:\S+$", external["uri"]):
                return "Record/embed/external/uri must be a uri"
            thumb = external.get("thumb")
            return (
                None
                if thumb is None
                else self._blob_problem(thumb, "Record/embed/external/thumb", MAX_THUMB_BYTES)
            )
        return f"Record/embed $type {kind!r} is not one this fake knows"

    def _blob_problem(self, blob: Any, path: str, max_bytes: int) -> str | None:
        if not isinstance(blob, dict) or blob.get("$type") != "blob" or not isinstance(blob.get("ref"), dict):
            return f"{path} should be a blob ref"
        stored = self.blobs.get(str(blob["ref"].get("$link")))
        if stored is None:
            return f"Could not find blob: {blob['ref'].get('$link')}"
        mime_type, data = stored
        if not mime_type.startswith("image/") or blob.get("mimeType") != mime_type:
            return f"{path} has the wrong mime type (expected image/*, got {blob.get('mimeType')})"
        if blob.get("size") != len(data):
            return f"{path} has the wrong size ({blob.get('size')}, the blob has {len(data)} bytes)"
        if len(data) > max_bytes:
            return f"{path} is too big (at most {max_bytes} bytes)"
        return None


def _facets_problem(facets: Any, text: bytes) -> str | None:
    if not isinstance(facets, list):
        return "Record/facets must be an array"
    for n, facet in enumerate(facets):
        index = facet.get("index") if isinstance(facet, dict) else None
        start, end = (
            (index.get("byteStart"), index.get("byteEnd")) if isinstance(index, dict) else (None, None)
        )
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
            return (
                f"Record/facets/{n}/index byte range {start}-{end} lies outside the text ({len(text)} bytes)"
            )
        try:
            text[start:end].decode()
        except UnicodeDecodeError:
            return f"Record/facets/{n}/index byte range {start}-{end} splits a character"
        features = facet.get("features")
        if not isinstance(features, list) or not features:
            return f"Record/facets/{n} must have features"
        for feature in features:
            kind = feature.get("$type") if isinstance(feature, dict) else None
            if kind not in _FEATURES:
                return f"Record/facets/{n}/features has an unknown $type {kind!r}"
            if kind.endswith("#link") and not re.match(r"https?://\S+$", str(feature.get("uri"))):
                return f"Record/facets/{n}/features/0/uri must be a uri"
            if kind.endswith("#tag") and not 0 < len(str(feature.get("tag", ""))) <= 640:
                return f"Record/facets/{n}/features/0/tag must be 1 to 640 characters"
    return None


def _is_datetime(value: Any) -> bool:
    if not isinstance(value, str) or not re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value
    ):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


_tid_lock = threading.Lock()
_last_tid = 0


def _next_tid() -> str:
    """A fresh TID from the clock, as the PDS makes one for a record without ``rkey``."""
    global _last_tid
    with _tid_lock:
        _last_tid = max(_last_tid + 1, time.time_ns() // 1000)
        value = (_last_tid << 10) | 0x155
    alphabet = "234567abcdefghijklmnopqrstuvwxyz"
    return "".join(alphabet[(value >> (5 * i)) & 31] for i in range(12, -1, -1))


@contextmanager
def fake_bluesky(**kwargs: Any) -> Iterator[FakeBluesky]:
    """A started :class:`PlatformServer` with a :class:`FakeBluesky` on it; held answers are released and
    the server stopped at the end."""
    with PlatformServer() as server:
        fake = FakeBluesky(server, **kwargs)
        try:
            yield fake
        finally:
            fake.release()
