"""locate_dataset: finds the goodbooks files of a directory and names what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.datasets import DatasetFiles, locate_dataset, read_header
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

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "goodbooks-10k"

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
def test_the_real_samples_directory_is_a_complete_dataset() -> None:
    samples = SHARED / "samples"
    if not samples.is_dir():
        pytest.skip(f"real goodbooks samples not found under {SHARED}")
    files = locate_dataset(samples)
    assert files.absent == ()
