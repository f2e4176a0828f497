"""The report of a validation run: one result per rule, example rows, Markdown, the verdict.

Example rows carry their line in the CSV: tables come in as pandas read them (default
RangeIndex), so a row's line is its index + 2 (one header line, one-based numbering).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from models.expectations.config import CRITICAL, WARNING, Severity
from models.schema import DataValidationError

Status = Literal["passed", "failed", "quarantined", "skipped", "absent"]

# Offending rows kept per rule (GX's partial unexpected list has as many).
EXAMPLES = 5


@dataclass(frozen=True)
class ExampleRow:
    """One offending row: its line in the CSV (None for aggregate tables) and its values."""

    line: int | None
    values: Mapping[str, object]

    def __str__(self) -> str:
        """'line 7: user_id=1, rating=9' (values only for aggregate tables)."""
        values = ", ".join(f"{k}={_plain(v)!r}" for k, v in self.values.items())
        return f"line {self.line}: {values}" if self.line is not None else values


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one rule on one table.

    ``success`` is what GX said; ``status`` is the verdict after quarantine, skips and
    absent files: passed, failed, quarantined (rows dropped), skipped or absent.
    """

    table: str
    rule: str
    expectation: str
    columns: tuple[str, ...]
    severity: Severity
    status: Status
    success: bool | None = None
    unexpected_count: int | None = None
    element_count: int | None = None
    examples: tuple[ExampleRow, ...] = ()
    detail: str = ""
    unit: str = "rows"

    @property
    def file(self) -> str:
        """The CSV file the rule checked."""
        return f"{self.table}.csv"

    def describe(self) -> str:
        """One line: file, rule, expectation, columns, count and detail."""
        on = f" on {', '.join(self.columns)}" if self.columns else ""
        what = f"{self.file}: {self.rule} ({self.expectation or 'file check'}{on})"
        if self.unexpected_count is not None and self.element_count:
            what += f": {self.unexpected_count:,} of {self.element_count:,} {self.unit}"
        return f"{what}: {self.detail}" if self.detail else what


@dataclass(frozen=True)
class ValidationReport:
    """Every check of one validation run and where its Data Docs are."""

    checks: tuple[CheckResult, ...]
    data_docs_index: Path | None = None

    @property
    def failures(self) -> list[CheckResult]:
        """Failed critical checks: any of them fails the validation."""
        return [c for c in self.checks if c.status == "failed" and c.severity == CRITICAL]

    @property
    def warnings(self) -> list[CheckResult]:
        """Failed warning checks: reported, not blocking."""
        return [c for c in self.checks if c.status == "failed" and c.severity == WARNING]

    @property
    def passed(self) -> bool:
        """True when no critical check failed."""
        return not self.failures

    @property
    def absent(self) -> list[str]:
        """Tables whose file was not given."""
        return [c.table for c in self.checks if c.status == "absent"]

    @property
    def quarantined(self) -> dict[str, int]:
        """Rows dropped per table, counted per rule (the quarantine frames hold each row once)."""
        counts: dict[str, int] = {}
        for check in self.checks:
            if check.status == "quarantined":
                counts[check.table] = counts.get(check.table, 0) + int(check.unexpected_count or 0)
        return counts

    def summary(self) -> dict[str, object]:
        """A JSON-ready digest for a snapshot manifest."""
        return {
            "passed": self.passed,
            "checks": len(self.checks),
            "failures": [c.describe() for c in self.failures],
            "warnings": [c.describe() for c in self.warnings],
            "quarantined_rows": self.quarantined,
            "absent_tables": self.absent,
            "skipped": [c.describe() for c in self.checks if c.status == "skipped"],
            "data_docs": str(self.data_docs_index) if self.data_docs_index else None,
        }

    def to_markdown(self) -> str:
        """The report as Markdown: a verdict line, then one table row per check, problems first."""
        verdict = "passed" if self.passed else "FAILED"
        quarantined = sum(self.quarantined.values())
        lines = [
            f"## Data validation {verdict}",
            "",
            f"{len(self.failures)} critical failure(s), {len(self.warnings)} warning(s), "
            f"{quarantined:,} row(s) quarantined, {len(self.checks)} check(s).",
        ]
        if self.absent:
            lines.append(f"Absent files: {', '.join(f'{t}.csv' for t in self.absent)}.")
        if self.data_docs_index is not None:
            lines.append(f"Data Docs: [{self.data_docs_index}]({self.data_docs_index.as_uri()})")
        lines += [
            "",
            "| file | rule | expectation | column(s) | severity | status | unexpected | "
            "examples / detail |",
            "|---|---|---|---|---|---|---|---|",
        ]
        order = {"failed": 0, "quarantined": 1, "skipped": 2, "absent": 3, "passed": 4}
        ranked = sorted(self.checks, key=lambda c: (order[c.status], c.severity != CRITICAL))
        for c in ranked:
            count = (f"{c.unexpected_count:,} / {c.element_count:,}"
                     if c.unexpected_count is not None and c.element_count is not None else "")
            notes = [c.detail] if c.detail else []
            notes += [str(e) for e in c.examples]
            status = f"**{c.status}**" if c.status == "failed" else c.status
            cells = [c.file, c.rule, c.expectation, ", ".join(c.columns), c.severity, status,
                     count]
            lines.append("| " + " | ".join(_cell(x) for x in cells) + " | "
                         + "<br>".join(_cell(n) for n in notes) + " |")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ValidationOutcome:
    """The report, the cleaned tables and the quarantined rows of each table.

    ``tables`` is empty when a critical check failed, so nothing can be written by mistake.
    Cleaned tables have quarantined rows dropped, a fresh index and whole-number columns as
    int64. Quarantine frames hold the dropped rows with their CSV ``line`` and failed ``rule``.
    """

    report: ValidationReport
    tables: dict[str, pd.DataFrame]
    quarantine: dict[str, pd.DataFrame]


def raise_for_critical(report: ValidationReport) -> None:
    """Raise DataValidationError naming every failed critical rule, its file and example rows."""
    if report.passed:
        return
    lines = [f"data validation failed: {len(report.failures)} critical rule(s) broken"]
    for check in report.failures:
        lines.append(check.describe())
        lines += [f"    {example}" for example in check.examples]
    if report.data_docs_index is not None:
        lines.append(f"Data Docs: {report.data_docs_index}")
    raise DataValidationError("\n".join(lines))


def example_rows(frame: pd.DataFrame, index: Sequence[Any], columns: Sequence[str],
                 lines: bool = True) -> tuple[ExampleRow, ...]:
    """Up to EXAMPLES rows of frame at index, with their CSV line (index + 2) when `lines`."""
    rows = frame.loc[list(index)[:EXAMPLES], list(columns)]
    if not lines:
        return tuple(ExampleRow(None, row) for row in rows.to_dict("records"))
    return tuple(ExampleRow(int(i) + 2, row)
                 for i, row in zip(rows.index, rows.to_dict("records"), strict=True))


def _plain(value: object) -> object:
    """numpy scalars as Python ones, so examples print as 1 rather than np.int64(1)."""
    return value.item() if isinstance(value, np.generic) else value


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")
