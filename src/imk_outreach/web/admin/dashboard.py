"""``/admin``: the dashboard. Editions waiting for a person (each linked to its page), held runs, the
next scheduled runs, the sending queue, the sources' health with their last errors, and the upcoming
social posts per channel with the paused channels (all from :func:`services.desk.overview`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from imk_outreach.services import desk
from imk_outreach.services.staff import StaffSession
from imk_outreach.web.admin.common import clock_of, language_for, render, settings_of, staff, t

router = APIRouter()  # "/admin/"; "/admin" itself is added to the prefixed router by ``install``

Staff = Annotated[StaffSession, Depends(staff)]


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def dashboard(request: Request, session: Staff) -> HTMLResponse:
    overview = desk.overview(settings_of(request), clock_of(request))
    language = language_for(request, session)
    labels = [(_job(language, run.job), _detail(language, run.detail)) for run in overview.next_runs]
    return render(request, session, "dashboard.html.j2", {"o": overview, "run_labels": labels})


def _job(language: str, job: str) -> str:
    """``campaign monthly`` -> ``Kampagne monthly``; the names stay as config.yaml writes them."""
    kind, _, name = job.partition(" ")
    key = {"campaign": "dash.job_campaign", "gather": "dash.job_gather"}.get(kind)
    return t(language, key, name=name) if key else job


def _detail(language: str, detail: str) -> str:
    if detail.startswith("every "):
        return t(language, "dash.every", span=detail.removeprefix("every "))
    key = {"manual": "dash.by_hand", "each new item": "dash.each_new_item"}.get(detail)
    return t(language, key) if key else detail  # cron: / at: as the campaign file writes them
