"""The fault suite's report: each fault test adds what it injected, what survived, what was
lost, and the peak memory and time of the pipeline's processes; the lines are printed at
the end of the run (`make faults`)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

HEADER = f"{'fault':<34} {'injected':<34} {'survived':<30} {'lost':<8} {'peak MiB':>8} {'s':>6}"


@dataclass(frozen=True)
class FaultLine:
    fault: str
    injected: str
    survived: str
    lost: str
    peak_mib: float
    seconds: float

    def render(self) -> str:
        return (
            f"{self.fault[:34]:<34} {self.injected[:34]:<34} {self.survived[:30]:<30} "
            f"{self.lost[:8]:<8} {self.peak_mib:>8.0f} {self.seconds:>6.1f}"
        )


LINES: list[FaultLine] = []


@pytest.fixture
def fault_report() -> list[FaultLine]:
    """Append `FaultLine`s here; they are printed at the end of the session."""
    return LINES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not LINES:
        return
    terminalreporter.section("faults: injected, survived, lost")
    terminalreporter.write_line(HEADER)
    for line in LINES:
        terminalreporter.write_line(line.render())
