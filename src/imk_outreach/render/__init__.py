"""The render stage: edition -> email (MJML compiled once per language) with per-recipient placeholders.

Imports only ``imk_outreach.models`` and ``imk_outreach.errors``; pure functions (the clock is passed in).
"""

from __future__ import annotations

from imk_outreach.render.email import (
    PLACEHOLDERS,
    Card,
    Personalizer,
    SectionView,
    compile_mjml,
    greeting,
    personalize,
    render_email,
    wrap_text,
)
from imk_outreach.render.env import (
    language_context,
    make_env,
    render_string,
    render_template,
    shipped_templates_dir,
    translations,
)

__all__ = [
    "PLACEHOLDERS",
    "Card",
    "Personalizer",
    "SectionView",
    "compile_mjml",
    "greeting",
    "language_context",
    "make_env",
    "personalize",
    "render_email",
    "render_string",
    "render_template",
    "shipped_templates_dir",
    "translations",
    "wrap_text",
]
