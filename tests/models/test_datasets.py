"""locate_dataset: finds the goodbooks files of a directory and names what is missing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from models.datasets import (
    DatasetFiles,
    SourceLayout,
    locate_dataset,
    read_dataset_table,
    read_header,
)
from models.schema import (
    ALL_FILES,
    BOOK_TAGS_FILE,
    BOOKS_FILE,
    OPTIONAL_FILES,
    RATINGS_FILE,
    TAGS_FILE,
    TO_READ_FILE,
    DatasetError,
)

HEADERS = {
    RATINGS_FILE: "user_id,book_id,rating\n1,258,5\n",
    BOOKS_FILE: "book_id,goodreads_book_id,authors,title\n258,1,Someone,Something\n",
    TAGS_FILE: "tag_id,tag_name\r\n0,-\r\n",
    BOOK_TAGS_FILE: "goodreads_book_id,tag_id,count\n1,0,3\n",
    TO_READ_FILE: "user_id,book_id\n1,258\n",
}


def _write(directory: Path, names: tuple[str, ...]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_text(HEADERS[name], encoding="utf-8", newline="")
    return directory


def test_a_complete_directory_lists_every_file(tmp_path: Path) -> None:
    files = locate_dataset(_write(tmp_path, ALL_FILES))
    assert isinstance(files, DatasetFiles)
    assert files.directory == tmp_path
    assert files.present == {name: tmp_path / name for name in ALL_FILES}
    assert files.absent == ()
    assert files.ratings == tmp_path / RATINGS_FILE and files.to_read == tmp_path / TO_READ_FILE


def test_ratings_and_books_alone_are_enough(tmp_path: Path) -> None:
    files = locate_dataset(_write(tmp_path, (RATINGS_FILE, BOOKS_FILE)))
    assert set(files.present) == {RATINGS_FILE, BOOKS_FILE}
    assert files.absent == OPTIONAL_FILES
    assert files.tags is None and files.book_tags is None and files.to_read is None


@pytest.mark.parametrize("missing", [RATINGS_FILE, BOOKS_FILE])
def test_a_missing_required_file_is_named_with_the_directory(
    tmp_path: Path, missing: str
) -> None:
    present = tuple(name for name in ALL_FILES if name != missing)
    with pytest.raises(DatasetError) as failure:
        locate_dataset(_write(tmp_path, present))
    message = str(failure.value)
    assert str(tmp_path) in message and f"has no {missing}" in message


def test_a_directory_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        locate_dataset(tmp_path / "nowhere")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(DatasetError, match="not a directory"):
        locate_dataset(tmp_path / "a-file")


def test_a_header_without_the_key_columns_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, ALL_FILES)
    (tmp_path / TO_READ_FILE).write_text("reader,book\n1,2\n")
    with pytest.raises(DatasetError) as failure:
        locate_dataset(tmp_path)
    message = str(failure.value)
    assert TO_READ_FILE in message and "user_id" in message and "book_id" in message


def test_an_empty_required_file_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, (BOOKS_FILE,))
    (tmp_path / RATINGS_FILE).write_text("")
    with pytest.raises(DatasetError, match="empty"):
        locate_dataset(tmp_path)


def test_headers_with_bom_quotes_and_crlf_are_read(tmp_path: Path) -> None:
    path = tmp_path / RATINGS_FILE
    path.write_bytes(b'\xef\xbb\xbf"user_id","book_id","rating"\r\n1,2,3\r\n')
    assert read_header(path) == ["user_id", "book_id", "rating"]


@pytest.mark.real_data
def test_the_real_samples_directory_is_a_complete_dataset(shared_goodbooks) -> None:  # noqa: ANN001
    samples = shared_goodbooks("samples") / "samples"
    files = locate_dataset(samples)
    assert files.absent == ()


# --- another dataset's layout: MovieLens names, half stars, a catalogue of another name ---

MOVIELENS = {
    "ratings.csv": "userId,movieId,rating,timestamp\n1,193609,0.5,964982703\n"
                   "1,3,3.5,964981247\n2,3,4.0,964982224\n",
    "movies.csv": "movieId,title,genres\n3,Grumpier Old Men (1995),Comedy|Romance\n"
                  "193609,Andrew Dice Clay: Dice Rules (1991),Comedy\n",
    "tags.csv": "userId,movieId,tag,timestamp\n2,3,funny,1445714994\n",
}
LAYOUT = SourceLayout(columns={"userId": "user_id", "movieId": "book_id"},
                      books_file="movies.csv", half_stars=True)


def _movielens(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in MOVIELENS.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def test_a_mapped_source_reads_as_goodbooks(tmp_path: Path) -> None:
    files = locate_dataset(_movielens(tmp_path), LAYOUT)
    assert files.present == {RATINGS_FILE: tmp_path / "ratings.csv",
                             BOOKS_FILE: tmp_path / "movies.csv"}
    # Its tags.csv is readers' tags, not goodbooks tag names: left out, and said why.
    assert "tag_id" in files.ignored[TAGS_FILE]

    ratings = read_dataset_table(files, RATINGS_FILE)
    # Half stars round up (0.5 -> 1, 3.5 -> 4); ids stay as they are (not dense).
    assert ratings.values.tolist() == [[1, 193609, 1, 964982703], [1, 3, 4, 964981247],
                                       [2, 3, 4, 964982224]]
    assert read_dataset_table(files, BOOKS_FILE)["book_id"].tolist() == [3, 193609]
    assert read_dataset_table(files, TAGS_FILE) is None


def test_a_mapped_source_without_the_mapping_says_how_to_map(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"lacks the column\(s\) \['user_id', 'book_id'\].*"
                                           "GOODBOOKS_LOCAL_COLUMNS"):
        locate_dataset(_movielens(tmp_path))
    with pytest.raises(DatasetError, match="has no books.csv"):
        locate_dataset(tmp_path, SourceLayout(columns=dict(LAYOUT.columns)))


def test_a_layout_cannot_give_two_columns_one_name() -> None:
    with pytest.raises(DatasetError, match="several source columns"):
        SourceLayout(columns={"userId": "user_id", "uid": "user_id"})


def test_half_stars_leave_text_for_validation_to_name() -> None:
    frame = pd.DataFrame({"rating": ["4.5", "five"]})
    assert LAYOUT.ratings(frame)["rating"].tolist() == ["4.5", "five"]
