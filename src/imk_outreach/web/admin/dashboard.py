"""``/admin``: the dashboard. Editions waiting for a person (each linked to its page), held runs, the
next scheduled runs, the sending queue, the sources' health with their last errors, and the upcoming
social posts per channel with the paused channels (all from :func:`services.desk.overview`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from imk_outreach.services import desk
from imk_outreach.services.staff import StaffSession
from imk_outreach.web.admin.common import clock_of, render, settings_of, staff

router = APIRouter()  # "/admin/"; "/admin" itself is added to the prefixed router by ``install``

Staff = Annotated[StaffSession, Depends(staff)]


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def dashboard(request: Request, session: Staff) -> HTMLResponse:
    overview = desk.overview(settings_of(request), clock_of(request))
    return render(request, session, "dashboard.html.j2", {"o": overview})
