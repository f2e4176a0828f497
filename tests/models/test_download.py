"""The downloader against a local HTTP server: checksums, cache, resume, drops, offline."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from models.download import GIT_BLOB_SHA1, PART_SUFFIX, download_goodbooks, git_blob_sha1
from models.schema import ALL_FILES, BOOKS_FILE, RATINGS_FILE, TAGS_FILE, DownloadError


def _blob_sha1(data: bytes) -> str:
    """Reference implementation: what `git hash-object` prints for these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _fixture_files() -> dict[str, bytes]:
    """Small goodbooks-like files; ratings.csv is ~300 kB so that a transfer can be cut."""
    ratings = "user_id,book_id,rating\n" + "".join(
        f"{u},{(u * 7919 + i) % 10000 + 1},{(u + i) % 5 + 1}\n"
        for u in range(1, 3001) for i in range(3)
    )
    return {
        RATINGS_FILE: ratings.encode(),
        BOOKS_FILE: b"book_id,goodreads_book_id,title\n1,2767052,The Hunger Games\n",
        TAGS_FILE: b"tag_id,tag_name\r\n0,-\r\n1,--1-\r\n",
        "book_tags.csv": b"goodreads_book_id,tag_id,count\n1,30574,167697\n",
        "to_read.csv": b"user_id,book_id\n9,8\n15,398\n",
    }


@dataclass
class FileServer:
    """A tiny HTTP server for the fixture files, supporting Range, with knobs for failures."""

    files: dict[str, bytes]
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    ignore_range: bool = False
    drop_after: int | None = None  # cut the connection after this many body bytes...
    drops_left: int = 0  # ...this many times
    url: str = ""

    @property
    def checksums(self) -> dict[str, str]:
        return {name: _blob_sha1(data) for name, data in self.files.items()}


@pytest.fixture
def server() -> Iterator[FileServer]:
    """Serve the fixture files on 127.0.0.1 (a free port) from a background thread."""
    state = FileServer(files=_fixture_files())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            name = self.path.rsplit("/", 1)[-1]
            range_header = self.headers.get("Range")
            state.requests.append((name, range_header))
            data = state.files.get(name)
            if data is None:
                self.send_error(404)
                return
            start = 0
            if range_header and not state.ignore_range:
                start = int(range_header.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.drop_after is not None and state.drops_left > 0:
                state.drops_left -= 1
                self.wfile.write(body[: state.drop_after])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Keep the test output quiet."""

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/goodbooks"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _download(server: FileServer, dest: Path, **kwargs: object) -> dict[str, Path]:
    options: dict[str, object] = {"checksums": server.checksums, "timeout_s": 5, "backoff_s": 0}
    options.update(kwargs)
    return download_goodbooks(dest, server.url, **options)  # type: ignore[arg-type]


def test_blob_sha1_is_what_git_prints(tmp_path: Path) -> None:
    empty, hello = tmp_path / "empty", tmp_path / "hello"
    empty.write_bytes(b"")
    hello.write_bytes(b"hello\n")
    # `git hash-object` of an empty file and of "hello\n".
    assert git_blob_sha1(empty) == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert git_blob_sha1(hello) == "ce013625030ba8dba906f756967f9e9ca394464a"


@pytest.mark.real_data
@pytest.mark.parametrize("name", [BOOKS_FILE, TAGS_FILE])
def test_real_files_match_the_pinned_checksums(name: str, shared_goodbooks) -> None:  # noqa: ANN001
    path = shared_goodbooks(name) / name
    assert git_blob_sha1(path) == GIT_BLOB_SHA1[name]


def test_every_file_is_downloaded_and_verified(server: FileServer, tmp_path: Path) -> None:
    reports: list[tuple[str, float]] = []
    paths = _download(server, tmp_path, progress=lambda s, f: reports.append((s, f)))
    assert list(paths) == list(ALL_FILES)
    for name, path in paths.items():
        assert path == tmp_path / name
        assert path.read_bytes() == server.files[name]
    assert not list(tmp_path.glob(f"*{PART_SUFFIX}"))
    assert [name for name, _ in server.requests] == list(ALL_FILES)
    ratings_reports = [f for s, f in reports if s == RATINGS_FILE]
    assert ratings_reports == sorted(ratings_reports) and ratings_reports[-1] == 1.0


def test_verified_copies_are_not_fetched_again(server: FileServer, tmp_path: Path) -> None:
    _download(server, tmp_path)
    server.requests.clear()
    reports: list[tuple[str, float]] = []
    paths = _download(server, tmp_path, progress=lambda s, f: reports.append((s, f)))
    assert server.requests == []
    assert set(paths) == set(ALL_FILES)
    assert reports == [(f"{name} cached", 1.0) for name in ALL_FILES]


def test_a_wrong_copy_in_place_is_replaced(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / BOOKS_FILE).write_bytes(b"book_id\n1\n")
    _download(server, tmp_path, files=[BOOKS_FILE])
    assert (tmp_path / BOOKS_FILE).read_bytes() == server.files[BOOKS_FILE]


def test_a_partial_file_is_resumed_with_a_range_request(
    server: FileServer, tmp_path: Path
) -> None:
    data = server.files[RATINGS_FILE]
    (tmp_path / f"{RATINGS_FILE}{PART_SUFFIX}").write_bytes(data[:1000])
    _download(server, tmp_path, files=[RATINGS_FILE])
    assert server.requests == [(RATINGS_FILE, "bytes=1000-")]
    assert (tmp_path / RATINGS_FILE).read_bytes() == data


def test_a_complete_part_left_behind_is_verified_and_kept(
    server: FileServer, tmp_path: Path
) -> None:
    # As after a crash between the last byte and the rename: the server has nothing more.
    (tmp_path / f"{BOOKS_FILE}{PART_SUFFIX}").write_bytes(server.files[BOOKS_FILE])
    _download(server, tmp_path, files=[BOOKS_FILE])
    assert server.requests == [(BOOKS_FILE, f"bytes={len(server.files[BOOKS_FILE])}-")]
    assert (tmp_path / BOOKS_FILE).read_bytes() == server.files[BOOKS_FILE]


def test_a_server_ignoring_range_restarts_the_file(server: FileServer, tmp_path: Path) -> None:
    server.ignore_range = True
    (tmp_path / f"{RATINGS_FILE}{PART_SUFFIX}").write_bytes(b"stale bytes from elsewhere")
    _download(server, tmp_path, files=[RATINGS_FILE])
    assert (tmp_path / RATINGS_FILE).read_bytes() == server.files[RATINGS_FILE]


def test_a_dropped_connection_is_resumed(server: FileServer, tmp_path: Path) -> None:
    server.drop_after, server.drops_left = 50_000, 1
    _download(server, tmp_path, files=[RATINGS_FILE])
    assert server.requests == [(RATINGS_FILE, None), (RATINGS_FILE, "bytes=50000-")]
    assert (tmp_path / RATINGS_FILE).read_bytes() == server.files[RATINGS_FILE]


def test_repeated_drops_give_up_after_the_retries_and_keep_the_part(
    server: FileServer, tmp_path: Path
) -> None:
    server.drop_after, server.drops_left = 20_000, 10
    with pytest.raises(DownloadError, match="failed 3 times") as failure:
        _download(server, tmp_path, files=[RATINGS_FILE], retries=2)
    assert "resumes" in str(failure.value)
    assert len(server.requests) == 3
    part = tmp_path / f"{RATINGS_FILE}{PART_SUFFIX}"
    assert part.stat().st_size == 60_000  # three cuts of 20,000 bytes, each one resumed


def test_a_corrupted_file_is_removed_and_named(server: FileServer, tmp_path: Path) -> None:
    expected = server.checksums[BOOKS_FILE]
    server.files[BOOKS_FILE] = server.files[BOOKS_FILE].replace(b"Hunger", b"Hungry")
    with pytest.raises(DownloadError) as failure:
        _download(server, tmp_path, files=[BOOKS_FILE], checksums={BOOKS_FILE: expected})
    message = str(failure.value)
    assert BOOKS_FILE in message
    assert expected in message and _blob_sha1(server.files[BOOKS_FILE]) in message
    assert not (tmp_path / BOOKS_FILE).exists()
    assert not (tmp_path / f"{BOOKS_FILE}{PART_SUFFIX}").exists()


def test_a_missing_file_is_an_http_error_without_retries(
    server: FileServer, tmp_path: Path
) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        _download(server, tmp_path, files=["nowhere.csv"], checksums={"nowhere.csv": "0" * 40})
    assert len(server.requests) == 1


def test_an_unreachable_server_says_how_to_work_offline(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more: the connection is refused.
    url = f"http://127.0.0.1:{port}/goodbooks"
    with pytest.raises(DownloadError) as failure:
        download_goodbooks(tmp_path, url, timeout_s=2, backoff_s=0)
    message = str(failure.value)
    assert message.startswith(f"cannot reach {url}/{RATINGS_FILE} (")
    assert "GOODBOOKS_DATASET_SOURCE=local" in message
    assert "GOODBOOKS_LOCAL_DATASET_DIR=" in message
    assert "GOODBOOKS_DATASET_SOURCE=generate" in message


def test_files_without_a_checksum_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no checksum"):
        download_goodbooks(tmp_path, "http://127.0.0.1:9", files=["extra.csv"])
