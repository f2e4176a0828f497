"""Rules: one GX expectation each, with its severity and what it needs in order to run.

The constructors below build every kind of rule the suites use. Column rules (columns
present, ranges, uniqueness, patterns, row counts) are plain GX expectations; rules that span
columns, rows or tables get a derived column or table (``models.expectations.derived``)
that GX checks instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.expectations.metadata_types import FailureSeverity

from models.expectations.config import CRITICAL, Severity
from models.expectations.derived import (
    at_least,
    not_before_previous,
    number_or_null,
    rating_shares,
    ratings_per_reader,
    repeated_pairs,
    whole_or_null,
)
from models.schema import RATING, USER_ID

DeriveColumn = Callable[[pd.DataFrame, Mapping[str, pd.DataFrame]], pd.Series]
BuildView = Callable[[pd.DataFrame], pd.DataFrame]
TypeCheck = Callable[[pd.Series], pd.Series]


@dataclass(frozen=True)
class Rule:
    """One expectation of a suite, its severity and what it needs in order to run.

    ``derive`` computes the boolean column (named after the rule) that the expectation checks;
    ``view`` builds the aggregate table it checks instead of the rows. ``types`` holds the
    per-column checks of a type rule: rules reading a column that fails its check are skipped.
    ``needs`` names (table, key column) pairs of other tables the rule reads; ``complete``
    means the rule's columns must have no nulls (keys of joins and pairs); ``typed`` means
    the rule reads its columns as numbers, so it is skipped when one fails its type check.
    """

    name: str
    severity: Severity
    expectation: gxe.Expectation
    columns: tuple[str, ...] = ()
    derive: DeriveColumn | None = None
    view: BuildView | None = None
    needs: tuple[tuple[str, str], ...] = ()
    complete: bool = False
    quarantine: bool = False
    types: tuple[tuple[str, TypeCheck], ...] = ()
    typed: bool = True
    unit: str = "rows"
    # The rule is about an optional column: when the column is absent the rule is left out
    # of the report (a missing required column is reported by columns_present).
    optional: bool = False


def _gx(expectation: type[gxe.Expectation], name: str, severity: Severity, description: str,
        **kwargs: Any) -> Any:
    """A GX expectation tagged with its rule; Data Docs show severity, rule and description."""
    return expectation(meta={"rule": name}, severity=FailureSeverity(severity),
                       description=f"{severity} · {name}: {description}", **kwargs)


def _derived_check(name: str, severity: Severity, description: str) -> gxe.Expectation:
    """The expectation every derived column gets: all its values are True."""
    return _gx(gxe.ExpectColumnValuesToBeInSet, name, severity, description, column=name,
               value_set=[True])


def _listed(columns: tuple[str, ...]) -> str:
    """'**a**, **b**' (Data Docs render Markdown)."""
    return ", ".join(f"**{c}**" for c in columns)


def columns_present(
    columns: tuple[str, ...], name: str = "columns_present", severity: Severity = CRITICAL
) -> Rule:
    """The table has at least these columns."""
    return Rule(name, severity, _gx(gxe.ExpectTableColumnsToMatchSet, name, severity,
                                    f"columns include {_listed(columns)}",
                                    column_set=list(columns), exact_match=False))


def column_types(whole: tuple[str, ...], numeric: tuple[str, ...] = (),
                 severity: Severity = CRITICAL) -> Rule:
    """Non-null values are whole numbers (`whole`) or numbers (`numeric`), not text."""
    name = "column_types"
    types = tuple((c, whole_or_null) for c in whole) + tuple((c, number_or_null) for c in numeric)
    kinds = [f"{_listed(whole)} hold whole numbers"] + (
        [f"{_listed(numeric)} hold numbers"] if numeric else [])
    return Rule(name, severity, _derived_check(name, severity, "; ".join(kinds)),
                columns=whole + numeric, types=types, typed=False)


def values_present(columns: tuple[str, ...], severity: Severity = CRITICAL) -> Rule:
    """None of these columns has a null."""
    name = "required_values_present"
    return Rule(name, severity, _derived_check(name, severity, f"{_listed(columns)}: no nulls"),
                columns=columns, typed=False,
                derive=lambda frame, _: frame[list(columns)].notna().all(axis=1))


def ids_in_range(lowest: Mapping[str, int], severity: Severity = CRITICAL,
                 name: str = "ids_in_range") -> Rule:
    """Non-null ids are at least their column's lowest id."""
    listed = ", ".join(f"**{c}** ≥ {low}" for c, low in lowest.items())
    return Rule(name, severity, _derived_check(name, severity, listed),
                columns=tuple(lowest), derive=lambda frame, _: at_least(frame, lowest))


def not_null(column: str, severity: Severity = CRITICAL) -> Rule:
    """The column has no nulls."""
    name = f"{column}_not_null"
    return Rule(name, severity, _gx(gxe.ExpectColumnValuesToNotBeNull, name, severity,
                                    f"**{column}**: no nulls", column=column),
                columns=(column,), typed=False)


def between(column: str, low: float | None, high: float | None, name: str,
            severity: Severity = CRITICAL) -> Rule:
    """Non-null values lie in low..high (None: unbounded on that side)."""
    span = (f"{low}..{high}" if low is not None and high is not None
            else f"≥ {low}" if low is not None else f"≤ {high}")
    return Rule(name, severity, _gx(gxe.ExpectColumnValuesToBeBetween, name, severity,
                                    f"**{column}** {span}", column=column,
                                    min_value=low, max_value=high),
                columns=(column,))


def optional(rule: Rule) -> Rule:
    """The same rule, left out of the report when its column is absent."""
    return replace(rule, optional=True)


def in_order(column: str, severity: Severity = CRITICAL) -> Rule:
    """Non-null values never go back: each is at least every value on the lines before it."""
    name = f"{column}_in_order"
    return Rule(name, severity,
                _derived_check(name, severity, f"**{column}** never decreases down the file"),
                columns=(column,),
                derive=lambda frame, _: not_before_previous(frame[column]))


def unique(column: str, severity: Severity = CRITICAL) -> Rule:
    """No value of the column appears twice."""
    name = f"{column}_unique"
    return Rule(name, severity, _gx(gxe.ExpectColumnValuesToBeUnique, name, severity,
                                    f"**{column}** values are unique", column=column),
                columns=(column,))


def matches(column: str, pattern: str, name: str, severity: Severity = CRITICAL) -> Rule:
    """Non-null values match the regular expression."""
    return Rule(name, severity, _gx(gxe.ExpectColumnValuesToMatchRegex, name, severity,
                                    f"**{column}** matches `{pattern}`",
                                    column=column, regex=pattern),
                columns=(column,))


def row_count(bounds: tuple[int, int], severity: Severity = CRITICAL) -> Rule:
    """The table has low..high rows."""
    name = "row_count_in_bounds"
    return Rule(name, severity, _gx(gxe.ExpectTableRowCountToBeBetween, name, severity,
                                    f"{bounds[0]:,}..{bounds[1]:,} rows",
                                    min_value=bounds[0], max_value=bounds[1]))


def pairs_unique(first: str, second: str, severity: Severity = CRITICAL,
                 quarantine: bool = False) -> Rule:
    """No (first, second) pair appears twice; repeats after the first occurrence fail."""
    name = f"{first.removesuffix('_id')}_{second.removesuffix('_id')}_pair_unique"
    return Rule(name, severity,
                _derived_check(name, severity,
                               f"({_listed((first, second))}) pairs are unique "
                               "(the first occurrence of a repeated pair passes)"),
                columns=(first, second), complete=True, quarantine=quarantine,
                derive=lambda frame, _: ~repeated_pairs(frame[first], frame[second]))


def references(column: str, table: str, key: str, severity: Severity = CRITICAL,
               quarantine: bool = False) -> Rule:
    """Every value of the column exists in table.key."""
    name = f"{column}_in_{table}"
    return Rule(name, severity,
                _derived_check(name, severity, f"every **{column}** exists in {table}.{key}"),
                columns=(column,), needs=((table, key),), complete=True,
                quarantine=quarantine,
                derive=lambda frame, tables: frame[column].isin(
                    pd.to_numeric(tables[table][key])))


def ratings_per_user(minimum: int, severity: Severity = CRITICAL) -> Rule:
    """Every reader has at least `minimum` ratings (checked on a per-reader table)."""
    name = "ratings_per_user_at_least_min"
    return Rule(name, severity, _gx(gxe.ExpectColumnValuesToBeBetween, name, severity,
                                    f"every reader has at least {minimum} ratings",
                                    column="ratings", min_value=minimum),
                columns=(USER_ID,), complete=True, view=ratings_per_reader, unit="readers")


def rating_mix(bands: Mapping[int, tuple[float, float]], severity: Severity = CRITICAL) -> Rule:
    """The share of each rating value lies in its band (checked on a per-value table)."""
    name = "rating_mix_within_bands"
    listed = ", ".join(f"{v}: {low:.1%}..{high:.1%}" for v, (low, high) in sorted(bands.items()))
    return Rule(name, severity,
                _derived_check(name, severity, f"share of each **rating** value in its band "
                                               f"({listed})"),
                columns=(RATING,), view=lambda frame: rating_shares(frame[RATING], bands, name),
                unit="rating values")
