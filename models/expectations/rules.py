"""Rules: one GX expectation each, with its severity and what it needs in order to run.

The constructors below build every kind of rule the suites use. Where GX has a fast
expectation for a rule (columns present, no nulls, ranges, uniqueness, patterns, order, row
counts) the rule is that expectation. The others (per-value types, duplicate pairs,
references, the rating mix) get a derived column or table (``models.expectations.derived``),
named after the rule in words, that GX checks instead; each says why it is derived.
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

    ``derive`` computes the boolean column that the expectation checks, named ``flag`` in
    plain words ("book_id is a known book"); ``view`` builds the aggregate table it checks
    instead of the rows. ``types`` holds the per-column checks of a type rule: rules reading
    a column that fails its check are skipped. ``needs`` names (table, key column) pairs of
    other tables the rule reads; ``complete`` means the rule's columns must have no nulls
    (keys of joins and pairs); ``typed`` means the rule reads its columns as numbers, so it
    is skipped when one fails its type check.
    """

    name: str
    severity: Severity
    expectation: gxe.Expectation
    columns: tuple[str, ...] = ()
    derive: DeriveColumn | None = None
    view: BuildView | None = None
    flag: str = ""
    needs: tuple[tuple[str, str], ...] = ()
    complete: bool = False
    quarantine: bool = False
    types: tuple[tuple[str, TypeCheck], ...] = ()
    typed: bool = True
    unit: str = "rows"
    # The rule is about an optional column: when the column is absent the rule is left out
    # of the report (a missing required column is reported by columns_present).
    optional: bool = False

    def __post_init__(self) -> None:
        if self.derive is not None and not self.flag:
            raise ValueError(f"rule {self.name}: a derived column needs its flag (its name)")
        if self.quarantine and self.derive is None:
            raise ValueError(f"rule {self.name}: only a derived rule can quarantine rows")


def _gx(expectation: type[gxe.Expectation], name: str, severity: Severity, description: str,
        **kwargs: Any) -> Any:
    """A GX expectation tagged with its rule; Data Docs show the rule in words, severity, name."""
    return expectation(meta={"rule": name}, severity=FailureSeverity(severity),
                       description=f"{description} ({severity}: {name})", **kwargs)


def _derived_check(name: str, severity: Severity, description: str, flag: str
                   ) -> gxe.Expectation:
    """The expectation every derived column gets: all its values are True.

    The column is named ``flag``, the rule in words ("book_id is a known book"), so the
    Data Docs section of the column reads as the rule.
    """
    return _gx(gxe.ExpectColumnValuesToBeInSet, name, severity, description, column=flag,
               value_set=[True])


def _listed(columns: tuple[str, ...]) -> str:
    """'a, b' (Data Docs show a description as plain text: no Markdown)."""
    return ", ".join(columns)


def _number(value: float) -> str:
    """1 rather than 1.0 (years and timestamps without thousands separators)."""
    return str(int(value)) if float(value).is_integer() else str(value)


def columns_present(
    columns: tuple[str, ...], name: str = "columns_present", severity: Severity = CRITICAL
) -> Rule:
    """The table has at least these columns."""
    return Rule(name, severity, _gx(gxe.ExpectTableColumnsToMatchSet, name, severity,
                                    f"columns include {_listed(columns)}",
                                    column_set=list(columns), exact_match=False))


def column_types(whole: tuple[str, ...], numeric: tuple[str, ...] = (),
                 severity: Severity = CRITICAL) -> Rule:
    """Non-null values are whole numbers (`whole`) or numbers (`numeric`), not text.

    Derived: GX's type expectations judge a pandas column by its dtype, so a column read as
    text because of one bad line would fail as a whole, without naming the line.
    """
    name = "column_types"
    types = tuple((c, whole_or_null) for c in whole) + tuple((c, number_or_null) for c in numeric)
    kinds = [(whole, "whole numbers")] + ([(numeric, "numbers")] if numeric else [])
    flag = "; ".join(f"{_listed(columns)} hold {kind}" for columns, kind in kinds)
    return Rule(name, severity, _derived_check(name, severity, flag, flag),
                columns=whole + numeric, types=types, typed=False, flag=flag)


def not_null(column: str, severity: Severity = CRITICAL) -> Rule:
    """The column has no nulls."""
    name = f"{column}_not_null"
    return Rule(name, severity, _gx(gxe.ExpectColumnValuesToNotBeNull, name, severity,
                                    f"{column} has no nulls", column=column),
                columns=(column,), typed=False)


def between(column: str, low: float | None, high: float | None, name: str,
            severity: Severity = CRITICAL) -> Rule:
    """Non-null values lie in low..high (None: unbounded on that side)."""
    span = (f"is between {_number(low)} and {_number(high)}"
            if low is not None and high is not None
            else f"is at least {_number(low)}" if low is not None
            else f"is at most {_number(high)}" if high is not None else "is any value")
    return Rule(name, severity, _gx(gxe.ExpectColumnValuesToBeBetween, name, severity,
                                    f"{column} {span}", column=column,
                                    min_value=low, max_value=high),
                columns=(column,))


def id_at_least(column: str, lowest: int, severity: Severity = CRITICAL) -> Rule:
    """Non-null ids are at least `lowest`: {column}_positive (1), _non_negative (0)."""
    suffix = {1: "positive", 0: "non_negative"}.get(lowest, f"at_least_{lowest}")
    return between(column, lowest, None, name=f"{column}_{suffix}", severity=severity)


def optional(rule: Rule) -> Rule:
    """The same rule, left out of the report when its column is absent."""
    return replace(rule, optional=True)


def in_order(column: str, severity: Severity = CRITICAL) -> Rule:
    """Non-null values never go back: each is at least the previous non-null value.

    A row that goes back fails; the rows after it are compared with it, so a single row out
    of place counts once (GX's own check, the previous row; not the largest before it). A
    row that jumps forward is not the one flagged: the row after it, which goes back, is
    (timestamps 1, 2, 100, 3, 4 flag the 3), so an example line may point at its neighbour.
    """
    name = f"{column}_in_order"
    return Rule(name, severity, _gx(gxe.ExpectColumnValuesToBeIncreasing, name, severity,
                                    f"{column} never decreases down the file",
                                    column=column, strictly=False),
                columns=(column,))


def unique(column: str, severity: Severity = CRITICAL) -> Rule:
    """No value of the column appears twice."""
    name = f"{column}_unique"
    return Rule(name, severity, _gx(gxe.ExpectColumnValuesToBeUnique, name, severity,
                                    f"{column} values are unique", column=column),
                columns=(column,))


def matches(column: str, pattern: str, name: str, severity: Severity = CRITICAL) -> Rule:
    """Non-null values match the regular expression."""
    return Rule(name, severity, _gx(gxe.ExpectColumnValuesToMatchRegex, name, severity,
                                    f"{column} matches {pattern}",
                                    column=column, regex=pattern),
                columns=(column,))


def row_count(bounds: tuple[int, int], severity: Severity = CRITICAL) -> Rule:
    """The table has low..high rows."""
    name = "row_count_in_bounds"
    return Rule(name, severity, _gx(gxe.ExpectTableRowCountToBeBetween, name, severity,
                                    f"between {bounds[0]:,} and {bounds[1]:,} rows",
                                    min_value=bounds[0], max_value=bounds[1]))


def pairs_unique(first: str, second: str, severity: Severity = CRITICAL,
                 quarantine: bool = False) -> Rule:
    """No (first, second) pair appears twice; repeats after the first occurrence fail.

    Derived: GX's compound-column uniqueness fails both rows of a repeat (the first must
    stay: it is the one kept) and takes 3.8 s at 6M rows; a sorted int64 key 0.25-0.5 s.
    """
    name = f"{first.removesuffix('_id')}_{second.removesuffix('_id')}_pair_unique"
    flag = f"{first}, {second} pair not on an earlier line"
    return Rule(name, severity,
                _derived_check(name, severity,
                               f"({_listed((first, second))}) pairs are unique "
                               "(the first occurrence of a repeated pair passes)", flag),
                columns=(first, second), complete=True, quarantine=quarantine, flag=flag,
                derive=lambda frame, _: ~repeated_pairs(frame[first], frame[second]))


def references(column: str, table: str, key: str, severity: Severity = CRITICAL,
               quarantine: bool = False) -> Rule:
    """Every value of the column exists in table.key.

    Derived: GX's value-set expectation with 10,000 book ids takes 2.9 s at 6M rows (it
    carries the set in its configuration and results); pandas ``isin`` 0.04 s.
    """
    name = f"{column}_in_{table}"
    flag = f"{column} is a known {table.removesuffix('s')}"
    return Rule(name, severity,
                _derived_check(name, severity, f"every {column} exists in {table}.{key}",
                               flag),
                columns=(column,), needs=((table, key),), complete=True,
                quarantine=quarantine, flag=flag,
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
    """The share of each rating value lies in its band (checked on a per-value table).

    Derived: each value has a band of its own, which one GX expectation cannot express.
    """
    name = "rating_mix_within_bands"
    flag = "share within its band"
    listed = ", ".join(f"{v}: {low:.1%}..{high:.1%}" for v, (low, high) in sorted(bands.items()))
    return Rule(name, severity,
                _derived_check(name, severity, f"share of each rating value in its band "
                                               f"({listed})", flag),
                columns=(RATING,), view=lambda frame: rating_shares(frame[RATING], bands, flag),
                flag=flag, unit="rating values")
