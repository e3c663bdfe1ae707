"""The reliability suite's tally: each test records what it tried and what held, and the run ends
with one summary line per category (faults, hostile inputs, load, determinism, results lost).

A test records through the ``tally`` fixture into its report's ``user_properties``; the session
adds them up as reports arrive (``tests/conftest.py``), so the summary is whole when pytest-xdist
runs the tests in several worker processes too."""

from __future__ import annotations

from collections import defaultdict

import pytest

KEY = "reliability-tally"


class Tally:
    """The session's sums, printed at the end."""

    def __init__(self) -> None:
        self.tried: dict[str, list[str]] = defaultdict(list)
        self.held: dict[str, list[str]] = defaultdict(list)
        self.lost = 0
        self.rows: dict[str, int] = defaultdict(int)
        self.notes: list[str] = []

    def add(self, kind: str, *args) -> None:
        if kind == "trying":
            self.tried[args[0]].append(args[1])
        elif kind == "held_up":
            self.held[args[0]].append(args[1])
        elif kind == "results_lost":
            self.lost += args[0]
        elif kind == "logged":
            self.rows[args[0]] += args[1]
        elif kind == "note":
            self.notes.append(args[0])
        else:
            raise ValueError(kind)

    def add_report(self, report: pytest.TestReport) -> None:
        """A test's records, once: from its last report (teardown), which carries them all."""
        if report.when == "teardown":
            for key, event in report.user_properties:
                if key == KEY:
                    self.add(*event)

    def write(self, terminalreporter) -> None:
        if not self.tried:
            return
        write = terminalreporter.write_line
        terminalreporter.section("reliability summary")
        labels = {
            "fault": "faults survived",
            "input": "hostile inputs refused cleanly",
            "load": "load runs without a lost row",
            "determinism": "determinism checks held",
            "safe": "safe-default checks held",
        }
        for category, label in labels.items():
            tried = self.tried.get(category, [])
            if tried:
                write(f"{label}: {len(self.held.get(category, []))} of {len(tried)} tried")
        if self.rows:
            write("metric rows logged and read back: " + ", ".join(f"{k} {v}" for k, v in sorted(self.rows.items())))
        for text in self.notes:
            write(text)
        write(f"results lost: {self.lost}")


class Recorder:
    """What one test hands the ``tally`` fixture."""

    def __init__(self, item: pytest.Item) -> None:
        self._item = item

    def _record(self, *event) -> None:
        self._item.user_properties.append((KEY, event))

    def trying(self, category: str, name: str) -> None:
        self._record("trying", category, name)

    def held_up(self, category: str, name: str) -> None:
        self._record("held_up", category, name)

    def results_lost(self, count: int) -> None:
        self._record("results_lost", count)

    def logged(self, store: str, rows: int) -> None:
        self._record("logged", store, rows)

    def note(self, text: str) -> None:
        self._record("note", text)


TALLY = Tally()
