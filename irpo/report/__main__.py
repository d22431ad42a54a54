"""`python -m irpo.report <run or sweep dir>`."""

from __future__ import annotations

import sys

from irpo.report.build import build_report

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m irpo.report <run or sweep dir>")
    build_report(sys.argv[1])
