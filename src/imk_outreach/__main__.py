from __future__ import annotations

from imk_outreach.cli import main

raise SystemExit(main())
