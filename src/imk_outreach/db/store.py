"""Functions named by intent. The service opens the transaction and passes the Connection in.

The functions live in one module per aggregate (``engine``, ``items``, ``editions``, ``people``,
``outbox``, ``schedule``, ``records``); this module gathers them so services say ``store.claim_batch``.
"""

from __future__ import annotations

from imk_outreach.db.consent import *  # noqa: F403
from imk_outreach.db.editions import *  # noqa: F403
from imk_outreach.db.engine import *  # noqa: F403
from imk_outreach.db.items import *  # noqa: F403
from imk_outreach.db.outbox import *  # noqa: F403
from imk_outreach.db.people import *  # noqa: F403
from imk_outreach.db.posts import *  # noqa: F403
from imk_outreach.db.processes import *  # noqa: F403
from imk_outreach.db.records import *  # noqa: F403
from imk_outreach.db.schedule import *  # noqa: F403
from imk_outreach.db.signups import *  # noqa: F403
