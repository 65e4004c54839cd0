"""A local LinkedIn: the parts of the versioned REST API the LinkedIn publisher uses, over real HTTP.

Routes (JSON shapes, headers and error bodies as LinkedIn sends them; where LinkedIn's exact wording is
not known the fake's own is marked so):

* ``POST /rest/posts``: 201 Created, empty body, the new post's URN in ``x-restli-id``. The commentary
  is parsed as LinkedIn's "little" text: escapes, ``{hashtag|\\#|Tag}``, ``#Tag``, mentions; like LinkedIn
  it is cut at the first unescaped reserved character (``Post.truncated``). The same commentary twice
  from one author: 422 ``DUPLICATE_POST``.
* ``POST /rest/images?action=initializeUpload``: ``{"value": {"uploadUrl", "image", "uploadUrlExpiresAt"}}``;
  ``PUT`` of the bytes to that ``uploadUrl`` (on this server): 201.
* ``GET /rest/organizations/{id}``: the organisation (``localizedName`` ...); needs
  ``r_organization_admin`` and the member an admin of it (403 ``ACCESS_DENIED``).
* ``GET /v2/userinfo`` (OpenID Connect, unversioned): ``{"sub", "name", ...}``.

Every ``/rest`` call needs ``Authorization: Bearer <token>`` (401 ``INVALID_ACCESS_TOKEN``, or
``REVOKED_ACCESS_TOKEN`` after :meth:`FakeLinkedIn.revoke`), a ``LinkedIn-Version`` in
``active_versions`` (426 ``NONEXISTENT_VERSION``; none at all: 400 ``VERSION_MISSING``) and
``X-Restli-Protocol-Version: 2.0.0``. Posting as an author needs the scope and the role (403
``ACCESS_DENIED``). Faults (429, 5xx, stalls) come from :class:`PlatformServer`.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.support.platformserver import PlatformServer, Reply, Request

TOKEN = "li-access-token-1"
MEMBER_ID = "aB3dE5fG7h"
MEMBER_NAME = "Jana Beispiel"
ORGANIZATION_ID = "2414183"
ORGANIZATION_NAME = "Cluster IMK"
VERSIONS = ("202505", "202506")
SCOPES = ("openid", "profile", "email", "w_member_social", "w_organization_social", "r_organization_admin")

_RESERVED = set("\\|{}@[]()<>#*_~")
_TEMPLATE = re.compile(r"\{hashtag\|\\?[#＃]\|((?:\\.|[^\\{}|])+)\}")
_MENTION = re.compile(r"@\[((?:\\.|[^\\\]])+)\]\((urn:li:(?:person|organization):[^)\s]+)\)")
_ELEMENT_TAG = re.compile(r"#(\w+)")
_UNESCAPE = re.compile(r"\\(.)")
_HEADERS = {"x-restli-protocol-version": "2.0.0", "x-li-responseorigin": "RGW"}


@dataclass
class Post:
    urn: str
    body: dict[str, Any]
    text: str  # the commentary as LinkedIn shows it
    hashtags: list[str] = field(default_factory=list)
    mentions: list[str] = field(default_factory=list)
    truncated: bool = False  # cut at an unescaped reserved character, as LinkedIn does
    version: str = ""


@dataclass
class Image:
    urn: str
    owner: str
    data: bytes | None = None
    content_type: str | None = None


@dataclass
class Little:
    text: str
    hashtags: list[str]
    mentions: list[str]
    truncated: bool


def parse_little(commentary: str) -> Little:
    """Read ``commentary`` the way LinkedIn does (its "little" text format)."""
    out: list[str] = []
    tags: list[str] = []
    mentions: list[str] = []
    i = 0
    while i < len(commentary):
        char = commentary[i]
        if char == "\\" and i + 1 < len(commentary):
            out.append(commentary[i + 1])
            i += 2
            continue
        match = _element(commentary, i)
        if match is not None:
            kind, value, shown, i = match
            (tags if kind == "tag" else mentions).append(value)
            out.append(shown)
            continue
        if char in _RESERVED:
            return Little("".join(out), tags, mentions, truncated=True)
        out.append(char)
        i += 1
    return Little("".join(out), tags, mentions, truncated=False)


def _element(text: str, i: int) -> tuple[str, str, str, int] | None:
    if text[i] == "{" and (m := _TEMPLATE.match(text, i)):
        tag = _UNESCAPE.sub(r"\1", m.group(1))
        return "tag", tag, "#" + tag, m.end()
    if text[i] == "@" and (m := _MENTION.match(text, i)):
        name = _UNESCAPE.sub(r"\1", m.group(1))
        return "mention", m.group(2), name, m.end()
    if text[i] == "#" and (m := _ELEMENT_TAG.match(text, i)):
        return "tag", m.group(1), m.group(0), m.end()
    return None


def _error(status: int, code: str, message: str, service_code: int | None = None) -> Reply:
    body: dict[str, Any] = {"status": status}
    if service_code is not None:
        body["serviceErrorCode"] = service_code
    body.update({"code": code, "message": message})
    return Reply(status, body, _HEADERS)


def _unprocessable(path: str, description: str, code: str) -> Reply:
    """A 422 shaped like LinkedIn's validation errors."""
    return Reply(
        422,
        {
            "errorDetailType": "com.linkedin.common.error.BadRequest",
            "message": f"ERROR :: {path} :: {description}\n",
            "errorDetails": {
                "inputErrors": [
                    {"description": description, "input": {"inputPath": {"fieldPath": path}}, "code": code}
                ]
            },
            "status": 422,
        },
        _HEADERS,
    )


class FakeLinkedIn(PlatformServer):
    """LinkedIn on 127.0.0.1. ``posts`` and ``images`` hold what was published and uploaded."""

    def __init__(
        self,
        *,
        token: str = TOKEN,
        member_id: str = MEMBER_ID,
        member_name: str = MEMBER_NAME,
        organizations: dict[str, str] | None = None,
        active_versions: Iterable[str] = VERSIONS,
        scopes: Iterable[str] = SCOPES,
    ) -> None:
        super().__init__()
        self.token = token
        self.member_id = member_id
        self.member_name = member_name
        self.organizations = dict(organizations or {ORGANIZATION_ID: ORGANIZATION_NAME})
        self.admins = {org: {member_id} for org in self.organizations}  # the member administers them
        self.active_versions = set(active_versions)
        self.scopes = set(scopes)
        self.revoked = False
        self.posts: dict[str, Post] = {}
        self.images: dict[str, Image] = {}
        self._ids = itertools.count(7_201_000_000_000_000_000)
        self._assets = itertools.count(1)
        self._data_lock = threading.Lock()
        self.route("POST", r"/rest/posts", self._create_post)
        self.route("POST", r"/rest/images", self._images_action)
        self.route("PUT", r"/dms-uploads/([A-Za-z0-9]+)/uploaded-image/0", self._upload)
        self.route("GET", r"/rest/organizations/(\d+)", self._organization)
        self.route("GET", r"/v2/userinfo", self._userinfo)

    # -- test controls ----------------------------------------------------------------------------------

    def revoke(self) -> None:
        """The member revoked the app's access: every call now gets 401 ``REVOKED_ACCESS_TOKEN``."""
        self.revoked = True

    @property
    def author_urn(self) -> str:
        return f"urn:li:person:{self.member_id}"

    # -- checks -----------------------------------------------------------------------------------------

    def _auth(self, request: Request) -> Reply | None:
        header = request.header("Authorization") or ""
        if not header.startswith("Bearer ") or not header[7:]:
            return _error(401, "EMPTY_ACCESS_TOKEN", "Empty oauth2 access token", 65604)
        if header[7:] != self.token:
            return _error(401, "INVALID_ACCESS_TOKEN", "Invalid access token", 65600)
        if self.revoked:
            return _error(
                401,
                "REVOKED_ACCESS_TOKEN",
                "The token used in the request has been revoked by the user",
                65601,
            )
        return None

    def _versioned(self, request: Request) -> Reply | None:
        refused = self._auth(request)
        if refused is not None:
            return refused
        version = request.header("LinkedIn-Version")
        if not version:
            return _error(
                400,
                "VERSION_MISSING",
                "A version must be present. Please specify a version by adding the LinkedIn-Version header.",
            )
        if version not in self.active_versions:
            return _error(426, "NONEXISTENT_VERSION", f"Requested version {_long(version)} is not active")
        if request.header("X-Restli-Protocol-Version") != "2.0.0":  # the fake's wording
            return _error(400, "INVALID_PROTOCOL_VERSION", "X-Restli-Protocol-Version must be 2.0.0")
        return None

    def _may_post_as(self, author: str, request: Request, resource: str) -> Reply | None:
        kind, _, ident = author.removeprefix("urn:li:").partition(":")
        if kind == "person":
            allowed = ident == self.member_id and "w_member_social" in self.scopes
        elif kind == "organization":
            admins = self.admins.get(ident, set())
            allowed = self.member_id in admins and "w_organization_social" in self.scopes
        else:
            allowed = False
        if allowed:
            return None
        version = _long(request.header("LinkedIn-Version") or "")
        return _error(403, "ACCESS_DENIED", f"Not enough permissions to access: {resource}.{version}", 100)

    # -- routes -----------------------------------------------------------------------------------------

    def _create_post(self, request: Request) -> Reply:
        refused = self._versioned(request)
        if refused is not None:
            return refused
        body = request.json()
        for key in ("author", "commentary", "visibility", "distribution", "lifecycleState"):
            if key not in body:
                return _unprocessable(
                    f"/{key}", "field is required but not found and has no default value", "FIELD_REQUIRED"
                )
        refused = self._may_post_as(body["author"], request, "partnerApiPostsExternal.CREATE")
        if refused is not None:
            return refused
        refused = self._check_content(body.get("content"))
        if refused is not None:
            return refused
        little = parse_little(body["commentary"])
        if len(little.text) > 3000:
            return _unprocessable(
                "/commentary", "length of commentary exceeds 3000 characters", "INVALID_VALUE"
            )
        with self._data_lock:
            for post in self.posts.values():
                if post.body["author"] == body["author"] and post.body["commentary"] == body["commentary"]:
                    return self._duplicate(post.urn)
            urn = f"urn:li:share:{next(self._ids)}"
            self.posts[urn] = Post(
                urn, body, little.text, little.hashtags, little.mentions, little.truncated,
                request.header("LinkedIn-Version") or "",
            )  # fmt: skip
        return Reply(201, None, {**_HEADERS, "x-restli-id": urn, "x-linkedin-id": urn})

    def _check_content(self, content: Any) -> Reply | None:
        if content is None:
            return None
        article = content.get("article")
        media = content.get("media")
        if article is not None:
            if not article.get("source"):
                return _unprocessable("/content/article/source", "field is required", "FIELD_REQUIRED")
            return self._check_image("/content/article/thumbnail", article.get("thumbnail"), optional=True)
        if media is not None:
            return self._check_image("/content/media/id", media.get("id"), optional=False)
        return _unprocessable("/content", "unsupported content type", "INVALID_VALUE")

    def _check_image(self, path: str, urn: Any, *, optional: bool) -> Reply | None:
        if urn is None and optional:
            return None
        image = self.images.get(urn) if isinstance(urn, str) else None
        if image is None or image.data is None:  # the fake's wording
            return _unprocessable(path, f"{urn} is not an uploaded image", "INVALID_VALUE")
        return None

    def _duplicate(self, urn: str) -> Reply:
        body = {
            "errorDetailType": "com.linkedin.common.error.BadRequest",
            "message": "com.linkedin.content.common.exception.BadRequestResponseException: "
            f"Content is a duplicate of {urn}",
            "errorDetails": {
                "inputErrors": [
                    {"description": "Duplicate post is detected", "input": {}, "code": "DUPLICATE_POST"}
                ]
            },
            "status": 422,
        }
        return Reply(422, body, _HEADERS)

    def _images_action(self, request: Request) -> Reply:
        refused = self._versioned(request)
        if refused is not None:
            return refused
        if request.query.get("action") != ["initializeUpload"]:
            return _error(400, "ILLEGAL_ARGUMENT", "unknown action")  # the fake's wording
        owner = (request.json() or {}).get("initializeUploadRequest", {}).get("owner")
        if not isinstance(owner, str):
            return _unprocessable("/initializeUploadRequest/owner", "field is required", "FIELD_REQUIRED")
        refused = self._may_post_as(owner, request, "images.ACTION")
        if refused is not None:
            return refused
        asset = f"D4E10AQF{next(self._assets):08d}"
        urn = f"urn:li:image:{asset}"
        with self._data_lock:
            self.images[urn] = Image(urn, owner)
        upload = (
            f"{self.url}/dms-uploads/{asset}/uploaded-image/0?ca=vector_ads&cn=uploads&sync=0&v=beta&ut=x"
        )
        expires = int((time.time() + 3600) * 1000)
        value = {"uploadUrlExpiresAt": expires, "uploadUrl": upload, "image": urn}
        return Reply(200, {"value": value}, _HEADERS)

    def _upload(self, request: Request) -> Reply:
        refused = self._auth(request)
        if refused is not None:
            return refused
        asset = request.path.split("/")[2]
        image = self.images.get(f"urn:li:image:{asset}")
        if image is None:
            return Reply(404, b"", {})
        with self._data_lock:
            image.data = request.body
            image.content_type = request.header("Content-Type")
        return Reply(201, b"", {})

    def _organization(self, request: Request) -> Reply:
        refused = self._versioned(request)
        if refused is not None:
            return refused
        ident = request.path.rsplit("/", 1)[1]
        if "r_organization_admin" not in self.scopes or self.member_id not in self.admins.get(ident, set()):
            return self._may_post_as("urn:li:none:0", request, "organizations.GET")  # the 403 body
        name = self.organizations.get(ident)
        if name is None:
            return _error(404, "NOT_FOUND", f"Organization {ident} not found")  # the fake's wording
        return Reply(200, _organization_body(ident, name), _HEADERS)

    def _userinfo(self, request: Request) -> Reply:
        refused = self._auth(request)
        if refused is not None:
            return refused
        first, _, last = self.member_name.partition(" ")
        body = {
            "sub": self.member_id,
            "email_verified": True,
            "name": self.member_name,
            "locale": {"country": "DE", "language": "de"},
            "given_name": first,
            "family_name": last,
            "email": "jana.beispiel@example.org",
        }
        return Reply(200, body, {})


def _long(version: str) -> str:
    """LinkedIn quotes a version as YYYYMMDD: ``202301`` -> ``20230101``."""
    return version + "01" if len(version) == 6 else version


def _organization_body(ident: str, name: str) -> dict[str, Any]:
    return {
        "vanityName": name.lower().replace(" ", "-"),
        "localizedName": name,
        "website": {
            "localized": {"de_DE": "https://example.org"},
            "preferredLocale": {"country": "DE", "language": "de"},
        },
        "groups": [],
        "description": {
            "localized": {"de_DE": "Cluster"},
            "preferredLocale": {"country": "DE", "language": "de"},
        },
        "versionTag": "2",
        "defaultLocale": {"country": "DE", "language": "de"},
        "organizationType": "PUBLIC_COMPANY",
        "alternativeNames": [],
        "specialties": [],
        "staffCountRange": "SIZE_11_TO_50",
        "localizedSpecialties": [],
        "primaryOrganizationType": "NONE",
        "locations": [],
        "id": int(ident),
        "$URN": f"urn:li:organization:{ident}",
        "name": {"localized": {"de_DE": name}, "preferredLocale": {"country": "DE", "language": "de"}},
    }
