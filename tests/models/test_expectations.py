"""The goodbooks expectation suites: each critical rule catches its corruption, clean and real
data pass, quarantine drops rows under the ratio, absent files are reported, Data Docs appear."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.expectations import (
    CRITICAL,
    SUITES,
    TABLES,
    ValidationConfig,
    ValidationOutcome,
    raise_for_critical,
    validate_tables,
)
from models.generator import generate_goodbooks
from models.schema import BOOKS_COLUMNS, DataValidationError

N_USERS, N_BOOKS, N_TAGS = 200, 60, 40
PER_USER, TO_READ_PER_USER, TAGS_PER_BOOK = 20, 3, 5
MIX = [0.02, 0.06, 0.23, 0.36, 0.33]  # the real rating mix, 1..5 stars

# Bounds around the clean fixture, so that volume corruptions have something to break.
CONFIG = ValidationConfig(
    row_bounds={
        "ratings": (3_000, 5_000),
        "books": (10, 1_000),
        "tags": (10, 1_000),
        "book_tags": (100, 1_000),
        "to_read": (100, 1_000),
    },
    min_ratings_per_user=10,
    quarantine_max_ratio=0.01,
    required_tables=(),
)


# --- a small clean goodbooks-shaped dataset, read back from CSV like the flow reads it ----


def build_clean_tables(seed: int = 0) -> dict[str, pd.DataFrame]:
    """200 readers, 60 books, 40 tags: every rule holds."""
    rng = np.random.default_rng(seed)
    book_ids = np.arange(1, N_BOOKS + 1)
    goodreads = book_ids * 7 + 1000
    books = pd.DataFrame({column: [f"{column}-{i}" for i in book_ids] for column in BOOKS_COLUMNS})
    books["book_id"] = book_ids
    books["goodreads_book_id"] = goodreads
    books["authors"] = [f"Author {i % 17}" for i in book_ids]
    books["title"] = [f"Title {i}" for i in book_ids]
    books["original_publication_year"] = rng.choice([1997.0, 2008.0, -720.0, np.nan], N_BOOKS)
    books["language_code"] = rng.choice(np.array(["eng", "en-US", "en-GB", "fre", None]), N_BOOKS)
    tags = pd.DataFrame({"tag_id": np.arange(N_TAGS), "tag_name": [f"tag-{i}" for i in
                                                                    range(N_TAGS)]})
    book_tags = pd.DataFrame({
        "goodreads_book_id": np.repeat(goodreads, TAGS_PER_BOOK),
        "tag_id": np.concatenate([rng.choice(N_TAGS, TAGS_PER_BOOK, replace=False)
                                  for _ in book_ids]),
        "count": rng.integers(1, 500, N_BOOKS * TAGS_PER_BOOK),
    })
    users = np.arange(1, N_USERS + 1)
    picks = [rng.choice(book_ids, PER_USER + TO_READ_PER_USER, replace=False) for _ in users]
    ratings = pd.DataFrame({
        "user_id": np.repeat(users, PER_USER),
        "book_id": np.concatenate([p[:PER_USER] for p in picks]),
        "rating": rng.choice(np.arange(1, 6), N_USERS * PER_USER, p=MIX),
        # One rating a minute from 2017-01-01, in file order.
        "timestamp": 1_483_228_800 + 60 * np.arange(N_USERS * PER_USER),
    })
    to_read = pd.DataFrame({
        "user_id": np.repeat(users, TO_READ_PER_USER),
        "book_id": np.concatenate([p[PER_USER:] for p in picks]),
    })
    return {"ratings": ratings, "books": books, "tags": tags, "book_tags": book_tags,
            "to_read": to_read}


def through_csv(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Write and read back as the ingest flow reads files, so dtypes are what it would see."""
    frame.to_csv(path, index=False)
    return pd.read_csv(path, engine="pyarrow")


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("goodbooks")
    for name, frame in build_clean_tables().items():
        frame.to_csv(directory / f"{name}.csv", index=False)
    return directory


def read_tables(directory: Path, names: tuple[str, ...] = TABLES) -> dict[str, pd.DataFrame]:
    return {name: pd.read_csv(directory / f"{name}.csv", engine="pyarrow") for name in names}


# --- one corruption per critical rule -----------------------------------------------------


def set_cell(row: int, column: str, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Put one value into one cell (text or None into a numeric column included)."""
    def corrupt(frame: pd.DataFrame) -> pd.DataFrame:
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame
    return corrupt


def drop_column(column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda frame: frame.drop(columns=[column])


def keep_rows(n: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda frame: frame.head(n)


def copy_cell(source_row: int, row: int, column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Give a row another row's value (a duplicated key)."""
    def corrupt(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = frame.loc[source_row, column]
        return frame
    return corrupt


def every_tenth(column: str, value: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Corrupt 10% of the rows: far above the quarantine ratio."""
    def corrupt(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[frame.index % 10 == 3, column] = value
        return frame
    return corrupt


def repeat_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """Every tenth row repeats the previous row's book (same reader): a duplicated pair."""
    rows = np.flatnonzero(frame.index % 10 == 3)
    frame.loc[rows, "book_id"] = frame["book_id"].to_numpy()[rows - 1]
    return frame


def one_reader_keeps_three(frame: pd.DataFrame) -> pd.DataFrame:
    extra = frame.index[frame["user_id"] == 7][3:]
    return frame.drop(index=extra)


def reverse_scale(frame: pd.DataFrame) -> pd.DataFrame:
    frame["rating"] = 6 - frame["rating"]
    return frame


def first_fifty_readers(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["user_id"] <= 50]


@dataclass(frozen=True)
class Corruption:
    """One way to break one critical rule of one table."""

    table: str
    rule: str
    corrupt: Callable[[pd.DataFrame], pd.DataFrame]
    needs: tuple[str, ...] = ()  # clean tables the rule reads besides its own
    rows: bool = True  # whether the rule can point at offending rows


CORRUPTIONS = [
    Corruption("ratings", "columns_present", drop_column("rating"), rows=False),
    Corruption("ratings", "column_types", set_cell(9, "rating", 4.5)),
    Corruption("ratings", "column_types", set_cell(9, "timestamp", "yesterday")),
    Corruption("ratings", "user_id_not_null", set_cell(4, "user_id", None)),
    Corruption("ratings", "book_id_not_null", set_cell(4, "book_id", None)),
    Corruption("ratings", "rating_not_null", set_cell(4, "rating", None)),
    Corruption("ratings", "timestamp_not_null", set_cell(5, "timestamp", None)),
    Corruption("ratings", "timestamp_not_in_future", set_cell(5, "timestamp", 4_102_444_800)),
    Corruption("ratings", "user_id_positive", set_cell(0, "user_id", 0)),
    Corruption("ratings", "book_id_positive", set_cell(0, "book_id", -3)),
    Corruption("ratings", "rating_1_to_5", set_cell(6, "rating", 7)),
    Corruption("ratings", "user_book_pair_unique", repeat_pairs),
    Corruption("ratings", "book_id_in_books", every_tenth("book_id", 999), needs=("books",)),
    Corruption("ratings", "row_count_in_bounds", first_fifty_readers, rows=False),
    Corruption("ratings", "ratings_per_user_at_least_min", one_reader_keeps_three),
    Corruption("ratings", "rating_mix_within_bands", reverse_scale),
    Corruption("books", "columns_present", drop_column("title"), rows=False),
    Corruption("books", "column_types", set_cell(3, "original_publication_year", "MCMXC")),
    Corruption("books", "book_id_not_null", set_cell(3, "book_id", None)),
    Corruption("books", "title_not_null", set_cell(3, "title", None)),
    Corruption("books", "authors_not_null", set_cell(3, "authors", None)),
    Corruption("books", "goodreads_book_id_not_null", set_cell(3, "goodreads_book_id", None)),
    Corruption("books", "book_id_positive", set_cell(3, "book_id", -5)),
    Corruption("books", "goodreads_book_id_positive", set_cell(3, "goodreads_book_id", -5)),
    Corruption("books", "book_id_unique", copy_cell(3, 4, "book_id")),
    Corruption("books", "goodreads_book_id_unique", copy_cell(3, 4, "goodreads_book_id")),
    Corruption("books", "row_count_in_bounds", keep_rows(5), rows=False),
    Corruption("tags", "columns_present", drop_column("tag_name"), rows=False),
    Corruption("tags", "column_types", set_cell(2, "tag_id", "t2")),
    Corruption("tags", "tag_id_not_null", set_cell(2, "tag_id", None)),
    Corruption("tags", "tag_id_non_negative", set_cell(2, "tag_id", -1)),
    Corruption("tags", "tag_id_unique", copy_cell(2, 3, "tag_id")),
    Corruption("tags", "row_count_in_bounds", keep_rows(5), rows=False),
    Corruption("book_tags", "columns_present", drop_column("count"), rows=False),
    Corruption("book_tags", "column_types", set_cell(8, "count", 2.5)),
    Corruption("book_tags", "goodreads_book_id_not_null",
               set_cell(8, "goodreads_book_id", None)),
    Corruption("book_tags", "tag_id_not_null", set_cell(8, "tag_id", None)),
    Corruption("book_tags", "count_not_null", set_cell(8, "count", None)),
    Corruption("book_tags", "goodreads_book_id_positive", set_cell(8, "goodreads_book_id", 0)),
    Corruption("book_tags", "tag_id_non_negative", set_cell(8, "tag_id", -1)),
    Corruption("book_tags", "goodreads_book_id_in_books", every_tenth("goodreads_book_id", 5),
               needs=("books",)),
    Corruption("book_tags", "tag_id_in_tags", every_tenth("tag_id", 999), needs=("tags",)),
    Corruption("book_tags", "row_count_in_bounds", keep_rows(50), rows=False),
    Corruption("to_read", "columns_present", drop_column("book_id"), rows=False),
    Corruption("to_read", "column_types", set_cell(1, "book_id", "b")),
    Corruption("to_read", "user_id_not_null", set_cell(1, "user_id", None)),
    Corruption("to_read", "book_id_not_null", set_cell(1, "book_id", None)),
    Corruption("to_read", "user_id_positive", set_cell(1, "user_id", 0)),
    Corruption("to_read", "book_id_positive", set_cell(1, "book_id", 0)),
    Corruption("to_read", "user_book_pair_unique", repeat_pairs),
    Corruption("to_read", "book_id_in_books", every_tenth("book_id", 999), needs=("books",)),
    Corruption("to_read", "row_count_in_bounds", keep_rows(50), rows=False),
]


def test_every_critical_rule_has_a_corruption() -> None:
    critical = {(table, rule.name) for table in TABLES for rule in SUITES[table](CONFIG)
                if rule.severity == CRITICAL}
    assert critical == {(c.table, c.rule) for c in CORRUPTIONS}


@pytest.mark.parametrize("case", CORRUPTIONS, ids=lambda c: f"{c.table}.{c.rule}")
def test_corruption_fails_naming_rule_and_rows(case: Corruption, csv_dir: Path,
                                               tmp_path: Path) -> None:
    tables = read_tables(csv_dir, (case.table, *case.needs))
    tables[case.table] = through_csv(case.corrupt(tables[case.table]),
                                     tmp_path / f"{case.table}.csv")
    outcome = validate_tables(tables, CONFIG)

    failed = {(c.table, c.rule) for c in outcome.report.failures}
    assert (case.table, case.rule) in failed
    assert outcome.tables == {}  # nothing to write
    with pytest.raises(DataValidationError) as raised:
        raise_for_critical(outcome.report)
    message = str(raised.value)
    check = next(c for c in outcome.report.failures if c.rule == case.rule)
    assert f"{case.table}.csv: {case.rule} (" in message
    if case.rows:
        assert check.examples, check.describe()
        assert f"    {check.examples[0]}" in message


def test_example_rows_carry_their_csv_line(csv_dir: Path, tmp_path: Path) -> None:
    tables = read_tables(csv_dir, ("ratings",))
    path = tmp_path / "ratings.csv"
    tables["ratings"] = through_csv(set_cell(41, "user_id", "abc")(tables["ratings"]), path)
    report = validate_tables(tables, CONFIG).report
    (check,) = [c for c in report.failures if c.rule == "column_types"]
    assert [e.line for e in check.examples] == [43]
    assert path.read_text().splitlines()[43 - 1].startswith("abc,")
    assert check.examples[0].values["user_id"] == "abc"
    # Rules reading a column of the wrong type are skipped, not crashed.
    skipped = {c.rule: c.detail for c in report.checks if c.status == "skipped"}
    assert "user_id" in skipped["user_id_positive"]
    assert "user_id" in skipped["user_book_pair_unique"]


# --- clean data, quarantine, absent files, Data Docs --------------------------------------


@pytest.fixture(scope="module")
def clean_outcome(csv_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ValidationOutcome:
    docs = tmp_path_factory.mktemp("docs")
    config = replace(CONFIG, data_docs_dir=docs, required_tables=("ratings", "books"))
    return validate_tables(read_tables(csv_dir), config)


def test_clean_dataset_passes_without_warnings(clean_outcome: ValidationOutcome) -> None:
    report = clean_outcome.report
    assert report.passed, report.to_markdown()
    assert report.warnings == [] and report.absent == [] and report.quarantined == {}
    assert {c.status for c in report.checks} == {"passed"}
    assert set(clean_outcome.tables) == set(TABLES) and clean_outcome.quarantine == {}
    assert len(clean_outcome.tables["ratings"]) == N_USERS * PER_USER
    raise_for_critical(report)


def test_data_docs_index_is_written_under_the_given_directory(
        clean_outcome: ValidationOutcome) -> None:
    index = clean_outcome.report.data_docs_index
    assert index is not None and index.name == "index.html" and index.is_file()
    pages = list(index.parent.glob("validations/**/*.html"))
    assert {p.parts[len(index.parent.parts) + 1] for p in pages} >= set(TABLES)
    assert str(index) in clean_outcome.report.to_markdown()


def page_text(path: Path) -> str:
    """The words of a Data Docs page: tags stripped, entities decoded, spaces collapsed."""
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", path.read_text(), flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def test_data_docs_name_each_rule_in_words(clean_outcome: ValidationOutcome) -> None:
    index = clean_outcome.report.data_docs_index
    assert index is not None
    # The row rules of ratings.csv are one suite; the aggregates have pages of their own.
    (page,) = index.parent.glob("validations/ratings/__none__/*/*.html")
    words = page_text(page)
    # GX's own expectation where it has one: the rating rule is a between-1-and-5 check.
    (rating,) = [c for c in clean_outcome.report.checks if c.rule == "rating_1_to_5"]
    assert (rating.expectation, rating.columns) == ("expect_column_values_to_be_between",
                                                    ("rating",))
    assert "rating is between 1 and 5 (critical: rating_1_to_5)" in words
    assert "user_id is at least 1 (critical: user_id_positive)" in words
    assert "timestamp never decreases down the file (warning: timestamp_in_order)" in words
    # A derived column is named after its rule in words, and so is its expectation.
    assert "book_id is a known book" in words
    assert "every book_id exists in books.book_id (critical: book_id_in_books)" in words
    assert "**" not in words  # descriptions are shown as plain text, not Markdown


def test_only_rules_gx_has_no_fast_expectation_for_are_derived() -> None:
    derived = {(table, rule.name) for table in TABLES for rule in SUITES[table](CONFIG)
               if rule.derive is not None or rule.types or rule.view is not None}
    assert derived == {
        ("ratings", "column_types"), ("books", "column_types"), ("tags", "column_types"),
        ("book_tags", "column_types"), ("to_read", "column_types"),
        ("ratings", "user_book_pair_unique"), ("to_read", "user_book_pair_unique"),
        ("book_tags", "goodreads_book_tag_pair_unique"),
        ("ratings", "book_id_in_books"), ("to_read", "book_id_in_books"),
        ("book_tags", "goodreads_book_id_in_books"), ("book_tags", "tag_id_in_tags"),
        ("ratings", "ratings_per_user_at_least_min"), ("ratings", "rating_mix_within_bands"),
    }


def test_markdown_lists_every_check(clean_outcome: ValidationOutcome) -> None:
    markdown = clean_outcome.report.to_markdown()
    assert markdown.startswith("## Data validation passed")
    assert markdown.count("\n| ") == len(clean_outcome.report.checks) + 1  # + header row
    assert "| ratings.csv | rating_1_to_5 | expect_column_values_to_be_between |" in markdown


def test_quarantine_below_the_ratio_drops_and_counts(csv_dir: Path, tmp_path: Path) -> None:
    tables = read_tables(csv_dir, ("ratings", "books", "to_read"))
    ratings = tables["ratings"]
    ratings.loc[31, "book_id"] = ratings.loc[30, "book_id"]  # repeated pair of reader 2
    tables["ratings"] = through_csv(ratings, tmp_path / "ratings.csv")
    to_read = tables["to_read"]
    to_read.loc[[10, 20], "book_id"] = 999  # unknown book on a to-read shelf
    tables["to_read"] = through_csv(to_read, tmp_path / "to_read.csv")
    outcome = validate_tables(tables, CONFIG)

    report = outcome.report
    assert report.passed, report.to_markdown()
    assert report.quarantined == {"ratings": 1, "to_read": 2}
    statuses = {(c.table, c.rule): c.status for c in report.checks}
    assert statuses[("ratings", "user_book_pair_unique")] == "quarantined"
    assert statuses[("to_read", "book_id_in_books")] == "quarantined"
    assert outcome.quarantine["ratings"]["line"].tolist() == [33]
    assert outcome.quarantine["ratings"]["rule"].tolist() == ["user_book_pair_unique"]
    assert outcome.quarantine["to_read"]["line"].tolist() == [12, 22]
    cleaned = outcome.tables["ratings"]
    assert len(cleaned) == N_USERS * PER_USER - 1
    assert not cleaned.duplicated(["user_id", "book_id"]).any()
    assert cleaned.index.equals(pd.RangeIndex(len(cleaned)))
    assert outcome.tables["to_read"]["book_id"].isin(tables["books"]["book_id"]).all()
    assert "3 row(s) quarantined" in report.to_markdown()


def test_a_rating_of_an_unknown_book_is_never_quarantined(csv_dir: Path, tmp_path: Path
                                                         ) -> None:
    tables = read_tables(csv_dir, ("ratings", "books"))
    ratings = tables["ratings"]
    ratings.loc[10, "book_id"] = 999  # one row: well under the quarantine ratio
    tables["ratings"] = through_csv(ratings, tmp_path / "ratings.csv")
    outcome = validate_tables(tables, CONFIG)
    (failure,) = outcome.report.failures
    assert (failure.rule, failure.unexpected_count) == ("book_id_in_books", 1)
    assert outcome.tables == {}
    # The setting's description says what happens (it once said unknown books were dropped).
    from settings import Settings

    described = Settings.model_fields["quarantine_max_ratio"].description or ""
    assert "rating of a book missing from books.csv is not quarantined" in described


def test_quarantine_above_the_ratio_fails(csv_dir: Path, tmp_path: Path) -> None:
    tables = read_tables(csv_dir, ("ratings", "books"))
    ratings = tables["ratings"]
    ratings.loc[1:100:2, "book_id"] = ratings.loc[0:99:2, "book_id"].to_numpy()  # 50 repeats
    tables["ratings"] = through_csv(ratings, tmp_path / "ratings.csv")
    outcome = validate_tables(tables, CONFIG)
    assert not outcome.report.passed
    (failure,) = outcome.report.failures
    assert (failure.rule, failure.unexpected_count) == ("user_book_pair_unique", 50)
    assert outcome.tables == {}


@pytest.mark.parametrize("id_scale", [1, 2**40], ids=["dense ids", "sparse ids"])
def test_repeated_pairs_match_pandas_duplicated(id_scale: int) -> None:
    rng = np.random.default_rng(3)
    pairs = pd.DataFrame({"user_id": rng.integers(1, 30, 2_000) * id_scale,
                          "book_id": rng.integers(1, 40, 2_000) * id_scale})
    expected = pairs.duplicated(keep="first")
    outcome = validate_tables({"to_read": pairs},
                              replace(ValidationConfig.per_file(), quarantine_max_ratio=1.0))
    (check,) = [c for c in outcome.report.checks if c.rule == "user_book_pair_unique"]
    assert (check.status, check.unexpected_count) == ("quarantined", int(expected.sum()))
    assert outcome.quarantine["to_read"]["line"].tolist() == (np.flatnonzero(expected) + 2).tolist()
    assert len(outcome.tables["to_read"]) == int((~expected).sum())


def test_cleaned_tables_get_int64_ids(csv_dir: Path, tmp_path: Path) -> None:
    tables = read_tables(csv_dir, ("ratings", "books"))
    # "5.0" is read as a float column; its values are still whole numbers.
    tables["ratings"] = through_csv(tables["ratings"].astype({"rating": float}),
                                    tmp_path / "ratings.csv")
    assert tables["ratings"]["rating"].dtype == np.float64
    outcome = validate_tables(tables, CONFIG)
    assert outcome.report.passed
    assert outcome.tables["ratings"]["rating"].dtype == np.int64


def test_absent_optional_files_are_reported_not_failed(csv_dir: Path) -> None:
    tables: dict[str, pd.DataFrame | None] = dict(read_tables(csv_dir, ("ratings", "books")))
    tables["tags"] = None
    report = validate_tables(tables, replace(CONFIG, required_tables=("ratings", "books"))).report
    assert report.passed
    assert report.absent == ["tags", "to_read", "book_tags"]
    assert all(c.severity != CRITICAL for c in report.checks if c.status == "absent")
    assert "Absent files: tags.csv, to_read.csv, book_tags.csv." in report.to_markdown()


def test_cross_table_rule_needing_an_absent_file_is_skipped(csv_dir: Path) -> None:
    report = validate_tables(read_tables(csv_dir, ("book_tags", "books")), CONFIG).report
    assert report.passed
    (skipped,) = [c for c in report.checks if c.status == "skipped"]
    assert (skipped.rule, skipped.detail) == ("tag_id_in_tags", "tags.csv absent")


def test_required_file_missing_fails(csv_dir: Path) -> None:
    report = validate_tables({"books": read_tables(csv_dir, ("books",))["books"]},
                             ValidationConfig()).report
    assert [(c.table, c.rule) for c in report.failures] == [("ratings", "file_present")]
    with pytest.raises(DataValidationError, match="ratings.csv: file_present"):
        raise_for_critical(report)


def test_warnings_are_reported_and_do_not_fail(csv_dir: Path) -> None:
    tables = read_tables(csv_dir, ("books",))
    tables["books"].loc[2, "language_code"] = "English"
    tables["books"].loc[5, "original_publication_year"] = 20170.0
    report = validate_tables(tables, CONFIG).report
    assert report.passed
    assert {c.rule for c in report.warnings} == {"language_code_well_formed",
                                                 "publication_year_plausible"}
    raise_for_critical(report)


def test_unknown_table_names_are_refused() -> None:
    with pytest.raises(ValueError, match="ratingz"):
        validate_tables({"ratingz": pd.DataFrame()}, CONFIG)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="quarantine_max_ratio"):
        ValidationConfig(quarantine_max_ratio=2.0)
    with pytest.raises(ValueError, match="row_bounds"):
        ValidationConfig(row_bounds={"ratings": (10, 1)})


def test_generated_dataset_passes_the_default_config(tmp_path: Path) -> None:
    generate_goodbooks(tmp_path, n_users=100, n_books=60, seed=1)
    report = validate_tables(read_tables(tmp_path), ValidationConfig()).report
    bad = [c.describe() for c in report.checks if c.status != "passed"]
    assert bad == []


# --- the real goodbooks files -------------------------------------------------------------


@pytest.mark.real_data
def test_real_samples_pass_per_file(shared_goodbooks) -> None:  # noqa: ANN001
    samples = shared_goodbooks("samples") / "samples"
    tables = read_tables(samples, tuple(n for n in TABLES if (samples / f"{n}.csv").exists()))
    report = validate_tables(tables, ValidationConfig.per_file()).report
    bad = [c.describe() for c in report.checks if c.status not in ("passed", "absent")]
    assert bad == []


@pytest.mark.real_data
def test_real_books_and_tags_pass(shared_goodbooks) -> None:  # noqa: ANN001
    tables = read_tables(shared_goodbooks("books.csv", "tags.csv"), ("books", "tags"))
    # The full files, so the default volume bounds apply; ratings etc. are not shared.
    report = validate_tables(tables, ValidationConfig(required_tables=())).report
    bad = [c.describe() for c in report.checks if c.status not in ("passed", "absent")]
    assert bad == []
    assert report.absent == ["ratings", "to_read", "book_tags"]


def test_timestamps_out_of_order_are_a_warning_naming_the_rows(csv_dir: Path) -> None:
    tables = read_tables(csv_dir)
    stamps = tables["ratings"]["timestamp"].to_numpy().copy()
    stamps[[10, 11]] = stamps[[11, 10]]  # row 11 (line 13: after the header) goes back
    tables["ratings"]["timestamp"] = stamps
    outcome = validate_tables(tables, CONFIG)
    assert outcome.report.passed
    [warning] = [c for c in outcome.report.warnings if c.rule == "timestamp_in_order"]
    assert warning.unexpected_count == 1
    assert [e.line for e in warning.examples] == [13]


def test_a_timestamp_is_compared_with_the_previous_one_nulls_passed_over() -> None:
    stamps = [10.0, 20.0, 90.0, 30.0, 40.0, None, 35.0, 50.0]
    ratings = pd.DataFrame({"user_id": 1, "book_id": range(1, 9), "rating": 4,
                            "timestamp": stamps})
    report = validate_tables({"ratings": ratings}, ValidationConfig.per_file()).report
    (check,) = [c for c in report.checks if c.rule == "timestamp_in_order"]
    # 30 goes back from 90 and 35 from 40 (the null between is passed over); 40 and 50 are
    # at least the value before them.
    assert (check.status, check.unexpected_count) == ("failed", 2)
    assert [e.line for e in check.examples] == [5, 8]
    assert check.severity == "warning"
    assert [c.rule for c in report.failures] == ["timestamp_not_null"]  # the null is critical


def test_a_rule_that_cannot_run_is_refused_when_written() -> None:
    from models.expectations.rules import Rule, between

    rule = between("rating", 1, 5, name="rating_1_to_5")
    with pytest.raises(ValueError, match="needs its flag"):
        Rule("no_flag", rule.severity, rule.expectation, derive=lambda frame, _: frame["x"] > 0)
    with pytest.raises(ValueError, match="only a derived rule"):
        Rule("no_column", rule.severity, rule.expectation, quarantine=True)
