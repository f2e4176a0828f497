"""Download the real goodbooks-10k files: checksummed, cached, resumable, clear when offline."""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from models.schema import (
    ALL_FILES,
    BOOK_TAGS_FILE,
    BOOKS_FILE,
    RATINGS_FILE,
    TAGS_FILE,
    TO_READ_FILE,
    DownloadError,
)

logger = logging.getLogger(__name__)

Progress = Callable[[str, float], None]

# The dataset's repository pinned at one commit, so the bytes (and checksums) never move.
CANONICAL_BASE_URL = (
    "https://raw.githubusercontent.com/zygmuntz/goodbooks-10k/"
    "6dd165b555a7b47b2dd36743a425776e641ff50c"
)
# What `git hash-object <file>` prints for each file at that commit.
GIT_BLOB_SHA1: dict[str, str] = {
    RATINGS_FILE: "0d245a10acfe3c89b2e4004cdbc805b99771ac5d",
    BOOKS_FILE: "d694afdf5f555b51c1128c6ff562b6e54a7f75e3",
    TAGS_FILE: "65b5424eeec23554e9b034933e438cd12017a985",
    BOOK_TAGS_FILE: "f82218f199850f533568eaf22529b5df1c545412",
    TO_READ_FILE: "bd19bb1ed6b9fb20f15c42e0af23e413aeaf1c04",
}
PART_SUFFIX = ".part"
CHUNK_BYTES = 1 << 20
MAX_BACKOFF_S = 30.0


def git_blob_sha1(path: Path) -> str:
    """The git blob SHA-1 of a file: sha1(b"blob <size>\\0" + bytes), as git hash-object."""
    size = Path(path).stat().st_size
    digest = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def download_goodbooks(
    dest_dir: Path,
    base_url: str = CANONICAL_BASE_URL,
    files: Sequence[str] = ALL_FILES,
    checksums: Mapping[str, str] = GIT_BLOB_SHA1,
    timeout_s: float = 30,
    retries: int = 3,
    progress: Progress | None = None,
    backoff_s: float = 1.0,
) -> dict[str, Path]:
    """Fetch each file from base_url/<name> into dest_dir unless a verified copy is there.

    A file is written as <name>.part and renamed once its checksum matches; an interrupted
    transfer resumes from the .part file with an HTTP Range request, up to retries times
    (waiting backoff_s, then twice as long each time). progress(stage, fraction) receives the
    file name and the share of its bytes done; byte counts go to the log.
    """
    unknown = [name for name in files if name not in checksums]
    if unknown:
        raise ValueError(f"no checksum known for {unknown}; pass checksums for every file")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda stage, fraction: None)
    paths: dict[str, Path] = {}
    for name in files:
        target = dest_dir / name
        expected = checksums[name]
        if target.is_file():
            if git_blob_sha1(target) == expected:
                logger.info("%s: cached at %s (checksum ok)", name, target)
                report(f"{name} cached", 1.0)
                paths[name] = target
                continue
            logger.warning("%s: the copy at %s has a wrong checksum; fetching again", name, target)
            target.unlink()
        url = f"{base_url.rstrip('/')}/{name}"
        part = dest_dir / f"{name}{PART_SUFFIX}"
        _fetch(url, part, expected, timeout_s, retries, backoff_s, lambda f, n=name: report(n, f))
        part.replace(target)
        paths[name] = target
    return paths


def _fetch(
    url: str,
    part: Path,
    expected: str,
    timeout_s: float,
    retries: int,
    backoff_s: float,
    report: Callable[[float], None],
) -> None:
    """Download url into part (resuming what is there) and verify its checksum."""
    failures: list[str] = []
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S))
        failure = _transfer(url, part, timeout_s, report)
        if failure is None:
            break
        failures.append(failure)
        logger.warning("%s: attempt %d failed (%s); %d retries left", url, attempt + 1,
                       failure, retries - attempt)
    else:
        raise DownloadError(
            f"downloading {url} failed {retries + 1} times ({'; '.join(failures)}); "
            f"{part} keeps the bytes received, and the next run resumes from it"
        )
    actual = git_blob_sha1(part)
    if actual != expected:
        part.unlink()
        raise DownloadError(
            f"{part.name.removesuffix(PART_SUFFIX)} from {url} is corrupted: expected git "
            f"blob SHA-1 {expected}, got {actual}; the download was removed, run again to "
            "fetch it afresh"
        )
    logger.info("%s: %d bytes, checksum ok", url, part.stat().st_size)
    report(1.0)


def _transfer(
    url: str, part: Path, timeout_s: float, report: Callable[[float], None]
) -> str | None:
    """One attempt: append to part from where it stops; None when complete, else why not."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "goodbooks-recommender"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout_s
        )
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # The server has no bytes past the .part: it is complete, or longer than the file
            # (then the checksum fails and the next run starts afresh).
            return None
        if exc.code >= 500 or exc.code == 429:
            return f"HTTP {exc.code} {exc.reason}"
        raise DownloadError(f"{url} answered HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(_unreachable(url, exc.reason)) from exc
    except (OSError, http.client.HTTPException) as exc:
        # Connected, but the answer never came (reset, timeout): worth another try.
        return f"{type(exc).__name__}: {exc}"

    with response:
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                part.unlink(missing_ok=True)
                return f"server resumed at byte {start} instead of {offset}"
            mode = "ab"
            logger.info("%s: resuming at byte %d of %s", url, offset, total)
        else:
            # A server that ignores Range sends the whole file: start over.
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            logger.info("%s: downloading %s bytes", url, total)
        done = offset
        with open(part, mode) as f:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as exc:
                    return f"connection lost after {done} bytes ({type(exc).__name__})"
                if not chunk:
                    break
                f.write(chunk)
                done += len(chunk)
                report(done / total if total else 0.0)
    if total is not None and done < total:
        return f"connection closed after {done} of {total} bytes"
    return None


def _content_range(value: str) -> tuple[int, int | None]:
    """(first byte, total size) of a 'bytes first-last/total' Content-Range header."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value)
    if match is None:
        return -1, None
    total = match.group(2)
    return int(match.group(1)), None if total == "*" else int(total)


def _unreachable(url: str, reason: object) -> str:
    """The offline message: what failed, and the settings that avoid the network."""
    return (
        f"cannot reach {url} ({reason}). To use a local copy set "
        "GOODBOOKS_DATASET_SOURCE=local and GOODBOOKS_LOCAL_DATASET_DIR=<dir with ratings.csv "
        "and books.csv>; or use the generator (GOODBOOKS_DATASET_SOURCE=generate)"
    )
