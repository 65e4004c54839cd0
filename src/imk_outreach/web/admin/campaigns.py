"""``/admin/campaigns``: every campaign with its kind, schedule, next run, list or channels and approval
rule, the problems of campaign files that do not load, and "Compose a draft now" (a POST that composes
the campaign's draft, even below ``min_items``, and goes to its edition page)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from imk_outreach.config import Settings
from imk_outreach.errors import ConfigErrors, TemplateError
from imk_outreach.services import compose, schedule
from imk_outreach.services.staff import StaffSession
from imk_outreach.web.admin import i18n
from imk_outreach.web.admin.common import clock_of, form_with_csrf, redirect_done, render, settings_of, staff

router = APIRouter()

Staff = Annotated[StaffSession, Depends(staff)]

TEXTS: dict[str, dict[str, str]] = {
    "campaigns.title": {"de": "Kampagnen", "en": "Campaigns"},
    "campaigns.none": {
        "de": "Noch keine Kampagne. Legen Sie eine YAML-Datei im Kampagnenordner an.",
        "en": "No campaign yet. Add a YAML file to the campaigns folder.",
    },
    "campaigns.problems": {
        "de": "Diese Kampagnendateien lassen sich nicht laden:",
        "en": "These campaign files do not load:",
    },
    "campaigns.col_name": {"de": "Name", "en": "Name"},
    "campaigns.col_kind": {"de": "Art", "en": "Kind"},
    "campaigns.col_schedule": {"de": "Zeitplan", "en": "Schedule"},
    "campaigns.col_next": {"de": "Nächster Lauf", "en": "Next run"},
    "campaigns.col_audience": {"de": "Liste / Kanäle", "en": "List / channels"},
    "campaigns.col_approval": {"de": "Freigabe", "en": "Approval"},
    "campaigns.kind_newsletter": {"de": "Newsletter", "en": "Newsletter"},
    "campaigns.kind_social": {"de": "Social Media", "en": "Social media"},
    "campaigns.approval_required": {"de": "durch eine Person", "en": "by a person"},
    "campaigns.approval_auto": {"de": "automatisch", "en": "automatic"},
    "campaigns.manual": {"de": "nur von Hand", "en": "manual only"},
    "campaigns.each_new_item": {"de": "bei jedem neuen Beitrag", "en": "each new item"},
    "campaigns.compose": {"de": "Entwurf jetzt erstellen", "en": "Compose a draft now"},
    "campaigns.compose_failed": {
        "de": "Der Entwurf von {name} konnte nicht erstellt werden: {message}",
        "en": "The draft of {name} could not be composed: {message}",
    },
    "campaigns.unknown": {"de": "Es gibt keine Kampagne {name}.", "en": "There is no campaign {name}."},
    "done.composed": {"de": "Entwurf erstellt.", "en": "Draft composed."},
    "done.composed_short": {
        "de": "Entwurf erstellt. Er hat weniger neue Beiträge, als die Kampagne verlangt (min_items).",
        "en": "Draft composed. It has fewer new items than the campaign needs (min_items).",
    },
    "done.compose_frozen": {
        "de": "Diese Ausgabe ist freigegeben oder angehalten; sie bleibt unverändert.",
        "en": "This edition is approved or held; it stays as it is.",
    },
}
for _key, _texts in TEXTS.items():  # this page's texts join the others (a test checks none clashes)
    i18n.STRINGS.setdefault(_key, _texts)


def _rows(settings: Settings, now: datetime) -> dict[str, Any]:
    campaigns, problems = compose.load_campaigns(settings)
    runs = {run.job: run for run in schedule.next_runs(settings, campaigns, now)}
    rows = []
    for campaign in sorted(campaigns, key=lambda c: c.name):
        run = runs.get(f"campaign {campaign.name}")
        rows.append(
            {
                "campaign": campaign,
                "next_run": run.at if run else None,
                "schedule": run.detail if run else "",
                "audience": ", ".join(campaign.channels) if campaign.kind == "social" else campaign.list,
            }
        )
    return {"rows": rows, "problems": [str(problem) for problem in problems]}


@router.get("/campaigns", response_class=HTMLResponse)
def campaigns_page(request: Request, session: Staff) -> HTMLResponse:
    context = _rows(settings_of(request), clock_of(request))
    return render(request, session, "campaigns.html.j2", {**context, "error": None})


@router.post("/campaigns/{name}/compose", response_model=None)
async def compose_now(request: Request, name: str, session: Staff) -> Response:
    await form_with_csrf(request, session)
    settings, now = settings_of(request), clock_of(request)
    try:
        result = await run_in_threadpool(compose.compose, settings, name, now, True)
    except compose.UnknownCampaignError:
        return await _refused(request, session, ("campaigns.unknown", {"name": name}), 404)
    except (ConfigErrors, TemplateError) as exc:
        message = ("campaigns.compose_failed", {"name": name, "message": str(exc)})
        return await _refused(request, session, message, 400)
    assert result.edition is not None  # keep_short: always an edition
    done = "compose_frozen" if result.reused else "composed_short" if result.skipped else "composed"
    return redirect_done(f"/admin/editions/{result.edition.id}", done)


async def _refused(
    request: Request, session: StaffSession, error: tuple[str, dict[str, str]], status: int
) -> HTMLResponse:
    """The campaigns page again, with what went wrong."""
    context = await run_in_threadpool(_rows, settings_of(request), clock_of(request))
    return render(request, session, "campaigns.html.j2", {**context, "error": error}, status=status)
