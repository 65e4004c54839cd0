"""Campaigns: campaign files -> validated Campaign models (loader), and which items an edition takes
(selection, pure)."""

from __future__ import annotations

from imk_outreach.campaigns.cron_syntax import check_cron
from imk_outreach.campaigns.loader import CampaignContext, load_all, load_campaign
from imk_outreach.campaigns.selection import count_new, select_sections
from imk_outreach.durations import parse_duration

__all__ = [
    "CampaignContext",
    "check_cron",
    "count_new",
    "load_all",
    "load_campaign",
    "parse_duration",
    "select_sections",
]
