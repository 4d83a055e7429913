"""The suite's end: every test that skipped, by name, with its reason, so that a skip
that should not happen is seen in CI's log (tests/README.md lists them all, with how
to run each and when it must be run)."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    terminalreporter.section(f"{len(skipped)} skipped (see tests/README.md)", sep="-")
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        reason = str(reason).removeprefix("Skipped: ")
        terminalreporter.write_line(f"{report.nodeid}: {reason}")
