"""`make bench`: prints figures and ratios, never asserts. Each benchmark measures imk-outreach and a
reference side by side in the same run, so machine noise hits both."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (  # noqa: E402
    admin_pages,
    deliver_bench,
    gather_bench,
    render_bench,
    scaleout_bench,
    signup_bench,
)

BENCHMARKS = [
    gather_bench.main,
    render_bench.main,
    deliver_bench.main,
    lambda: scaleout_bench.main([]),
    signup_bench.main,
    lambda: admin_pages.main([]),
]


def main() -> int:
    print("imk-outreach benchmarks (figures only; targets are stated beside them)\n")
    for bench in BENCHMARKS:
        bench()
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
