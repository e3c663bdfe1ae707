"""The reliability suite's tally: each test records what it tried and what held, and the run ends
with one summary line per category (faults, hostile inputs, load, determinism, results lost)."""

from __future__ import annotations

from collections import defaultdict

import pytest


class Tally:
    def __init__(self) -> None:
        self.tried: dict[str, list[str]] = defaultdict(list)
        self.held: dict[str, list[str]] = defaultdict(list)
        self.lost = 0
        self.rows: dict[str, int] = defaultdict(int)
        self.notes: list[str] = []

    def trying(self, category: str, name: str) -> None:
        self.tried[category].append(name)

    def held_up(self, category: str, name: str) -> None:
        self.held[category].append(name)

    def results_lost(self, count: int) -> None:
        self.lost += count

    def logged(self, store: str, rows: int) -> None:
        self.rows[store] += rows

    def note(self, text: str) -> None:
        self.notes.append(text)


TALLY = Tally()


@pytest.fixture
def tally() -> Tally:
    return TALLY


def pytest_terminal_summary(terminalreporter) -> None:
    if not TALLY.tried:
        return
    write = terminalreporter.write_line
    terminalreporter.section("reliability summary")
    labels = {"fault": "faults survived", "input": "hostile inputs refused cleanly",
              "load": "load runs without a lost row", "determinism": "determinism checks held",
              "safe": "safe-default checks held"}
    for category, label in labels.items():
        tried = TALLY.tried.get(category, [])
        if tried:
            write(f"{label}: {len(TALLY.held.get(category, []))} of {len(tried)} tried")
    if TALLY.rows:
        write("metric rows logged and read back: " + ", ".join(f"{k} {v}" for k, v in sorted(TALLY.rows.items())))
    for text in TALLY.notes:
        write(text)
    write(f"results lost: {TALLY.lost}")
