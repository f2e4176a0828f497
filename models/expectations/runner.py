"""Running the suites with Great Expectations and turning the results into a report.

For each given table, in ``TABLES`` order: decide which rules can run on the data (a column
absent, of the wrong type or with holes skips the rules that read it), derive the columns
and tables the rules need, validate them with GX in one pass per table (one more per
aggregate table), and read each GX result back as a ``CheckResult``. Row-level critical
rules marked ``quarantine`` drop their failing rows instead of failing, as long as those
rows are at most ``ValidationConfig.quarantine_max_ratio`` of the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.core.batch_definition import BatchDefinition
from great_expectations.data_context import AbstractDataContext
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.validator.v1_validator import Validator

from models.expectations.config import CRITICAL, TABLES, WARNING, ValidationConfig
from models.expectations.derived import whole_or_null
from models.expectations.report import (
    EXAMPLES,
    CheckResult,
    ExampleRow,
    Status,
    ValidationOutcome,
    ValidationReport,
    example_rows,
)
from models.expectations.rules import Rule
from models.expectations.suites import SUITES, TITLE
from models.schema import (
    BOOK_ID,
    BOOK_TAGS_COLUMNS,
    RATINGS_COLUMNS,
    TAGS_COLUMNS,
    TO_READ_COLUMNS,
)

DOCS_SITE = "goodbooks"  # an ephemeral context already owns "local_site"

# Columns shown in example rows for context, besides the rule's own columns.
KEY_COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "ratings": RATINGS_COLUMNS,
    "books": (BOOK_ID, TITLE),
    "tags": TAGS_COLUMNS,
    "book_tags": BOOK_TAGS_COLUMNS,
    "to_read": TO_READ_COLUMNS,
})


def validate_tables(
    tables: Mapping[str, pd.DataFrame | None],
    config: ValidationConfig,
    reference_tables: Mapping[str, pd.DataFrame] | None = None,
) -> ValidationOutcome:
    """Run each given table's suite (ratings, books, tags, book_tags, to_read; None = absent).

    ``reference_tables`` are what references point at instead of the given table of that
    name (the catalogue a snapshot already holds plus a file's new books, when the file's
    ratings are judged); they are not validated here.
    """
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown table(s) {sorted(unknown)}; expected some of {TABLES}")
    given = {name: frame for name, frame in tables.items() if frame is not None}
    present = {**given, **(reference_tables or {})}
    context = _context(config.data_docs_dir)
    # One asset serves every frame (each run passes its own): adding assets re-saves the
    # context's configuration each time, a cost per run that buys nothing here.
    batch = (context.data_sources.add_pandas("goodbooks").add_dataframe_asset("goodbooks")
             .add_batch_definition_whole_dataframe("whole table"))
    checks: list[CheckResult] = []
    cleaned: dict[str, pd.DataFrame] = {}
    quarantine: dict[str, pd.DataFrame] = {}
    for name in TABLES:
        if name not in given:
            if name in config.required_tables or reference_tables is None:
                checks.append(_absent(name, required=name in config.required_tables))
            continue
        run = _TableRun(name, given[name], present, SUITES[name](config), config)
        table_checks = run.execute(context, batch)
        checks += table_checks
        cleaned[name], dropped = run.cleaned(table_checks)
        if dropped is not None:
            quarantine[name] = dropped
    index = None
    if config.data_docs_dir is not None:
        context.build_data_docs(site_names=[DOCS_SITE])
        index = Path(config.data_docs_dir).resolve() / "index.html"
    report = ValidationReport(checks=tuple(checks), data_docs_index=index)
    return ValidationOutcome(report=report, tables=cleaned if report.passed else {},
                             quarantine=quarantine)


def _context(docs_dir: Path | None) -> AbstractDataContext:
    """A fresh in-memory GX context, writing Data Docs only under docs_dir."""
    context = gx.get_context(mode="ephemeral")
    # Progress bars would flood the flow's logs with one line per metric.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is not None:
        context.add_data_docs_site(DOCS_SITE, {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(Path(docs_dir).resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            # Validation pages show every expectation with its result; the suite pages would
            # repeat them and take half the build time.
            "site_section_builders": {"expectations": "0", "profiling": "0"},
        })
    return context


def _absent(table: str, required: bool) -> CheckResult:
    """The report row of a file that was not given."""
    if required:
        return CheckResult(table, "file_present", "", (), CRITICAL, "failed",
                           detail="required file is missing")
    return CheckResult(table, "file_present", "", (), WARNING, "absent",
                       detail="file not given; rules needing it are skipped")


class _TableRun:
    """One table's suite: decide what can run, derive columns, run GX, read the results."""

    def __init__(self, name: str, frame: pd.DataFrame, tables: Mapping[str, pd.DataFrame],
                 rules: list[Rule], config: ValidationConfig) -> None:
        """The table `name`, its frame, every given table (for references) and its rules."""
        self.name = name
        self.frame = frame
        self.tables = tables
        self.rules = rules
        self.config = config
        self.derived: dict[str, pd.Series] = {}
        self.keep = config.data_docs_dir is not None

    def execute(self, context: AbstractDataContext, batch: BatchDefinition) -> list[CheckResult]:
        """Run the suite; returns one CheckResult per rule, in suite order."""
        bad_types = self._type_failures()
        typed = self._typed_frame(bad_types)
        skipped: dict[str, str] = {}
        for rule in self.rules:
            reason = self._skip_reason(rule, bad_types)
            if reason:
                skipped[rule.name] = reason
            elif rule.derive is not None and rule.name not in self.derived:
                self.derived[rule.name] = rule.derive(typed, self.tables)
        results: dict[str, tuple[Any, pd.DataFrame]] = {}
        row_rules = [r for r in self.rules if r.name not in skipped and r.view is None]
        if row_rules:
            checked = typed.assign(**{r.flag: self.derived[r.name] for r in row_rules
                                      if r.name in self.derived})
            outcome = _run_gx(context, batch, self.name, row_rules, checked, self.keep)
            results.update({rule: (result, self.frame) for rule, result in outcome.items()})
        for rule in self.rules:
            if rule.name not in skipped and rule.view is not None:
                view = rule.view(typed)
                outcome = _run_gx(context, batch, f"{self.name}.{rule.name}", [rule], view,
                                  self.keep)
                results[rule.name] = (outcome[rule.name], view)
        return [self._check(rule, skipped.get(rule.name), results.get(rule.name))
                for rule in self.rules if not self._left_out(rule)]

    def _left_out(self, rule: Rule) -> bool:
        """An optional rule whose column the table does not have."""
        return rule.optional and any(c not in self.frame.columns for c in rule.columns)

    def _type_failures(self) -> set[str]:
        """Columns failing their type check; stores each type rule's derived column."""
        failed = set()
        for rule in self.rules:
            if not rule.types:
                continue
            ok = pd.Series(True, index=self.frame.index)
            for column, check in rule.types:
                if column in self.frame.columns:
                    column_ok = check(self.frame[column])
                    if not bool(column_ok.all()):
                        failed.add(column)
                        ok &= column_ok
            self.derived[rule.name] = ok
        return failed

    def _typed_frame(self, bad_types: set[str]) -> pd.DataFrame:
        """The frame with well-typed text columns of numbers converted to numbers."""
        converted = {
            column: pd.to_numeric(self.frame[column])
            for rule in self.rules for column, _ in rule.types
            if column in self.frame.columns and column not in bad_types
            and not pd.api.types.is_numeric_dtype(self.frame[column].dtype)
        }
        return self.frame.assign(**converted) if converted else self.frame

    def _skip_reason(self, rule: Rule, bad_types: set[str]) -> str | None:
        """Why the rule cannot run on this data, or None when it can."""
        missing = [c for c in rule.columns if c not in self.frame.columns]
        if missing and not rule.types:
            return f"column(s) absent: {', '.join(missing)}"
        if rule.typed:
            wrong = [c for c in rule.columns if c in bad_types]
            if wrong:
                return f"column(s) hold values of the wrong type: {', '.join(wrong)}"
        if rule.complete:
            holed = [c for c in rule.columns if bool(self.frame[c].isna().any())]
            if holed:
                return f"column(s) have nulls: {', '.join(holed)}"
        for table, column in rule.needs:
            if table not in self.tables:
                return f"{table}.csv absent"
            problem = _key_problem(self.tables[table], column)
            if problem:
                return f"{table}.{column} {problem}"
        return None

    def _check(self, rule: Rule, skipped: str | None,
               run: tuple[Any, pd.DataFrame] | None) -> CheckResult:
        """The CheckResult of one rule from its GX result (or its skip reason)."""
        base = {"table": self.name, "rule": rule.name, "severity": rule.severity,
                "expectation": rule.expectation.expectation_type, "columns": rule.columns,
                "unit": rule.unit}
        if skipped is not None or run is None:
            return CheckResult(**base, status="skipped", detail=skipped or "not run")
        result, source = run
        error = _gx_error(result.exception_info)
        if error:
            return CheckResult(**base, status="failed", success=False, detail=f"GX raised: {error}")
        details = result.result or {}
        unexpected = details.get("unexpected_count")
        elements = details.get("element_count")
        examples = _examples(source, details.get("partial_unexpected_index_list") or [],
                             rule, self.name, aggregate=rule.view is not None)
        detail = _observed(rule, details, self.frame)
        if result.success:
            status: Status = "passed"
        elif rule.quarantine and self._within_quarantine(unexpected):
            status = "quarantined"
            detail = f"rows dropped (at most {self.config.quarantine_max_ratio:.2%} allowed)"
        else:
            status = "failed"
        return CheckResult(**base, status=status, success=bool(result.success),
                           unexpected_count=unexpected, element_count=elements,
                           examples=examples, detail=detail)

    def _within_quarantine(self, unexpected: int | None) -> bool:
        """Whether that many failing rows may be dropped instead of failing the table."""
        rows = len(self.frame)
        return unexpected is not None and rows > 0 and (
            unexpected / rows <= self.config.quarantine_max_ratio)

    def cleaned(self, checks: list[CheckResult]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """The table without quarantined rows (whole numbers as int64), and those rows."""
        frame, dropped = self.frame, None
        failing = {c.rule: ~self.derived[c.rule].to_numpy(dtype=bool)
                   for c in checks if c.status == "quarantined"}
        if failing:
            mask = np.logical_or.reduce(list(failing.values()))
            rows = np.flatnonzero(mask)
            dropped = frame.iloc[rows].copy()
            dropped.insert(0, "line", dropped.index.to_numpy() + 2)
            dropped["rule"] = [",".join(r for r, bad in failing.items() if bad[i]) for i in rows]
            frame = frame[~mask].reset_index(drop=True)
        whole = [column for rule in self.rules for column, check in rule.types
                 if check is whole_or_null and column in frame.columns]
        casts = {c: frame[c].astype(np.int64) for c in whole
                 if frame[c].dtype != np.int64 and bool(frame[c].notna().all())
                 and bool(whole_or_null(frame[c]).all())}
        return (frame.assign(**casts) if casts else frame), dropped


def _key_problem(frame: pd.DataFrame, column: str) -> str | None:
    """Why a referenced key column cannot be used, or None."""
    if column not in frame.columns:
        return "is absent"
    if not bool(whole_or_null(frame[column]).all()):
        return "holds values that are not whole numbers"
    if bool(frame[column].isna().any()):
        return "has nulls"
    return None


def _run_gx(context: AbstractDataContext, batch: BatchDefinition, name: str,
            rules: list[Rule], frame: pd.DataFrame, keep: bool) -> dict[str, Any]:
    """Validate one frame against the rules' expectations; results by rule name."""
    suite = gx.ExpectationSuite(name=name, expectations=[rule.expectation for rule in rules])
    # SUMMARY with 5 examples: counts and a few indices, never the full unexpected lists
    # (nor the query text GX would otherwise build from them).
    result_format = {"result_format": "SUMMARY", "partial_unexpected_count": EXAMPLES,
                     "return_unexpected_index_query": False}
    parameters = {"dataframe": frame}
    run: ExpectationSuiteValidationResult
    # Data Docs render what the stores hold; without them, skip serialising into the stores.
    if keep:
        definition = context.validation_definitions.add(gx.ValidationDefinition(
            name=name, data=batch, suite=context.suites.add(suite)))
        run = definition.run(batch_parameters=parameters, result_format=result_format)
    else:
        run = Validator(batch_definition=batch, batch_parameters=parameters,
                        result_format=result_format).validate_expectation_suite(suite)
    return {result.expectation_config.meta["rule"]: result for result in run.results}


def _gx_error(info: Mapping[str, Any] | None) -> str:
    """The message of an exception GX caught ('' when none); it nests one dict per metric."""
    if not info:
        return ""
    if "raised_exception" in info:
        return str(info["exception_message"]) if info["raised_exception"] else ""
    return "; ".join(_gx_error(nested) for nested in info.values()
                     if isinstance(nested, Mapping) and _gx_error(nested))


def _examples(frame: pd.DataFrame, index: list[Any], rule: Rule, table: str,
              aggregate: bool) -> tuple[ExampleRow, ...]:
    """Up to EXAMPLES offending rows: the table's key columns and the rule's own."""
    if not index:
        return ()
    if aggregate:
        # The rule's own flag column says nothing the failure has not said already.
        return example_rows(frame, index, [c for c in frame.columns if c != rule.flag],
                            lines=False)
    columns = [c for c in dict.fromkeys(KEY_COLUMNS[table] + rule.columns) if c in frame.columns]
    return example_rows(frame, index, columns)


def _observed(rule: Rule, details: Mapping[str, Any], frame: pd.DataFrame) -> str:
    """A short text of what a table-level expectation saw."""
    if "observed_value" not in details:
        return ""
    observed = details["observed_value"]
    if rule.expectation.expectation_type == "expect_table_columns_to_match_set":
        wanted = rule.expectation.column_set or []
        missing = [c for c in wanted if c not in frame.columns]
        return f"missing column(s): {', '.join(missing)}" if missing else ""
    return f"observed {observed:,}" if isinstance(observed, int) else f"observed {observed}"
