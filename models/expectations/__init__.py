"""The goodbooks expectation suites and the engine that runs them with Great Expectations.

Every file has a suite of rules; a rule is one GX expectation with a severity:

- ``critical``: validation fails and the caller writes nothing (``raise_for_critical``);
- ``warning``: reported, ingestion continues.

Where GX has an expectation for a rule, the rule is that expectation: columns present, no
nulls, ranges (ids, ratings 1..5, timestamps), uniqueness, patterns, order, row counts.
Where GX has none, or its own is too slow at 6M rows (types per value, duplicate pairs,
references to another table), vectorised pandas computes a derived boolean column named
after the rule in words ("book_id is a known book"), and aggregates (ratings per reader,
rating mix) go into small derived tables; GX then checks those, so every result is a GX
validation result and shows in Data Docs as its rule. Row-level
critical rules marked ``quarantine`` drop their failing rows instead of failing, as long as
those rows are at most ``ValidationConfig.quarantine_max_ratio`` of the table.

One module per idea, everything importable from ``models.expectations``:

- ``config``: the tables, severities, default bounds and ``ValidationConfig``;
- ``rules``: ``Rule`` and the constructors of every kind of rule;
- ``suites``: the rules of each goodbooks file (``SUITES``);
- ``derived``: the derived columns and tables, in pandas;
- ``runner``: ``validate_tables``, which runs the suites with GX and reads the results;
- ``report``: ``CheckResult``, ``ValidationReport`` (Markdown, summary), example rows and
  ``raise_for_critical``.
"""

from __future__ import annotations

from models.expectations.config import (
    CRITICAL,
    DEFAULT_RATING_SHARE_BANDS,
    DEFAULT_ROW_BOUNDS,
    REQUIRED_TABLES,
    TABLES,
    WARNING,
    Severity,
    ValidationConfig,
)
from models.expectations.report import (
    EXAMPLES,
    CheckResult,
    ExampleRow,
    Status,
    ValidationOutcome,
    ValidationReport,
    example_rows,
    raise_for_critical,
)
from models.expectations.rules import (
    BuildView,
    DeriveColumn,
    Rule,
    TypeCheck,
    between,
    column_types,
    columns_present,
    id_at_least,
    in_order,
    matches,
    not_null,
    optional,
    pairs_unique,
    rating_mix,
    ratings_per_user,
    references,
    row_count,
    unique,
)
from models.expectations.runner import DOCS_SITE, KEY_COLUMNS, validate_tables
from models.expectations.suites import (
    AUTHORS,
    BOOKS_FEATURES,
    BOOKS_REQUIRED,
    FUTURE_SLACK_S,
    LANGUAGE,
    LANGUAGE_CODE_PATTERN,
    MIN_PUBLICATION_YEAR,
    SUITES,
    TITLE,
    YEAR,
    book_tags_suite,
    books_suite,
    ratings_suite,
    tags_suite,
    to_read_suite,
)

__all__ = [
    "AUTHORS",
    "BOOKS_FEATURES",
    "BOOKS_REQUIRED",
    "CRITICAL",
    "DEFAULT_RATING_SHARE_BANDS",
    "DEFAULT_ROW_BOUNDS",
    "DOCS_SITE",
    "EXAMPLES",
    "FUTURE_SLACK_S",
    "KEY_COLUMNS",
    "LANGUAGE",
    "LANGUAGE_CODE_PATTERN",
    "MIN_PUBLICATION_YEAR",
    "REQUIRED_TABLES",
    "SUITES",
    "TABLES",
    "TITLE",
    "WARNING",
    "YEAR",
    "BuildView",
    "CheckResult",
    "DeriveColumn",
    "ExampleRow",
    "Rule",
    "Severity",
    "Status",
    "TypeCheck",
    "ValidationConfig",
    "ValidationOutcome",
    "ValidationReport",
    "between",
    "book_tags_suite",
    "books_suite",
    "column_types",
    "columns_present",
    "example_rows",
    "id_at_least",
    "in_order",
    "matches",
    "not_null",
    "optional",
    "pairs_unique",
    "raise_for_critical",
    "rating_mix",
    "ratings_per_user",
    "ratings_suite",
    "references",
    "row_count",
    "tags_suite",
    "to_read_suite",
    "unique",
    "validate_tables",
]
