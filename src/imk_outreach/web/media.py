"""``GET /media/{name}``: the stored copies of item images that editions link to.

Names are content-addressed (``<sha256>.jpg``), so a name never changes its bytes: clients and proxies
may keep a copy for a year without asking again. Anything but such a name is 404, so no path can
reach a file outside ``media_dir``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse

from imk_outreach.services import media as media_store
from imk_outreach.web.public import state_of

router = APIRouter()

CACHE_CONTROL = "public, max-age=31536000, immutable"


@router.api_route("/media/{name}", methods=["GET", "HEAD"], include_in_schema=False)
def media_file(request: Request, name: str) -> Response:
    """The image, with its ETag and a long cache lifetime; 304 when the client has it; else 404."""
    found = media_store.media_file(state_of(request).settings, name)
    if found is None:
        return PlainTextResponse("not found\n", status_code=404)
    headers = {"Cache-Control": CACHE_CONTROL, "ETag": found.etag}
    if _client_has(request.headers.get("If-None-Match"), found.etag):
        return Response(status_code=304, headers=headers)
    return FileResponse(found.path, media_type=found.content_type, headers=headers)


def _client_has(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (weak comparison, RFC 9110 13.1.2) or is ``*``."""
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags
