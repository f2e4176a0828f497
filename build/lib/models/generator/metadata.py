"""The books table (real or synthetic titles, authors, years), tags and book tags."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr

from models.generator.catalogue import _Catalogue, _normalised, _RealBooks
from models.generator.constants import (
    _STREAM_METADATA,
    FULL_USERS,
    GENERIC_TAGS,
    GENRES,
    N_TAGS,
    NON_FICTION,
    TAGS_PER_BOOK,
)
from models.generator.streams import _rng
from models.schema import (
    GOODREADS_BOOK_ID,
    TAG_ID,
    TAG_NAME,
    TAGS_COLUMNS,
    DatasetError,
)

# --- metadata ----------------------------------------------------------------------------

_FIRST_NAMES = (
    "Anna Ben Clara David Elena Frank Grace Henry Iris Jack Karen Leo Maria Nathan Olivia "
    "Peter Quinn Rosa Samuel Tara Umar Vera William Xenia Yusuf Zoe Alice Brian Chloe Daniel "
    "Emma Felix Hannah Isaac Julia Kevin Laura Martin Nora Oscar Paula Ruth Simon Teresa "
    "Victor Wendy Adam Bella Carlos Diana Ethan Fiona George Helen Ivan Jane Louis Mary Neil"
).split()
_LAST_NAMES = (
    "Abbott Baker Carter Dalton Ellis Foster Garcia Hughes Ingram Jensen Keller Lawson "
    "Moreno Nolan Owens Parker Quincy Reyes Sawyer Turner Underwood Vaughn Walsh Young "
    "Zimmer Archer Blake Cole Duncan Everett Fletcher Gibson Harper Irving Jordan Kline "
    "Lambert Mercer Norris Oliver Pierce Ramsey Shelton Thornton Upton Vance Whitaker Yates "
    "Adler Bishop Crane Doyle Emerson Finch Grant Hale Ives Joyce Knox Lowell Marsh Nash "
    "Orwell Price Reed Stone Tate Vale Wilde Wren Brooks Chase Dunn Frost Grey Hart Lane"
).split()
_ADJECTIVES = (
    "Silent Lost Hidden Broken Golden Last Burning Secret Forgotten Wild Dark Bright Quiet "
    "Distant Crimson Winter Summer Endless Fallen Glass Iron Paper Hollow Midnight Little "
    "Stolen Shining Empty Sacred Drowned"
).split()
_NOUNS = (
    "House Garden River Sea Crown Road Night Girl Boy City Light Storm Fire Shadow Star "
    "Heart Mountain Island Letter Song Queen King Forest Door Mirror Bridge Clock Raven "
    "Daughter Promise Kingdom Memory Harbor Orchard Lantern Winter Journey Empire Station"
).split()
_PLACES = (
    "Paris", "Venice", "the North", "the Valley", "Avalon", "Brooklyn", "Kyoto", "Cairo",
    "the Dark", "Ashford", "Meridian", "Eden", "Salem", "Lisbon",
)
_LANGUAGES = (
    ("eng", 0.634), ("en-US", 0.207), ("", 0.108), ("en-GB", 0.026), ("ara", 0.0064),
    ("en-CA", 0.0058), ("fre", 0.0025), ("ind", 0.0021), ("spa", 0.002), ("ger", 0.0013),
    ("jpn", 0.0007), ("per", 0.0007), ("por", 0.0006), ("pol", 0.0006), ("en", 0.0004),
    ("nor", 0.0003), ("dan", 0.0003), ("ita", 0.0002),
)
_NO_PHOTO = "https://s.gr-assets.com/assets/nophoto/book/111x148-bcc042a9c91a29c1d680899eff700a03.png"
_NO_PHOTO_SMALL = "https://s.gr-assets.com/assets/nophoto/book/50x75-a91bf249278a81aabab721ef782c4a74.png"


@dataclass(frozen=True)
class _Books:
    """books.csv as text rows, and each book's goodreads id and audience size."""

    rows: list[list[str]]
    goodreads_id: np.ndarray  # int64 [n_books]
    ratings_count: np.ndarray  # float64 [n_books], goodreads-level audience


def _books_table(
    catalogue: _Catalogue,
    real: _RealBooks | None,
    targets: np.ndarray,
    thresholds: np.ndarray,
    n_users: int,
    root: np.random.SeedSequence,
) -> _Books:
    """The books.csv rows: the real ones verbatim, or plausible synthetic metadata."""
    if real is not None:
        table = real.table
        return _Books(
            rows=table.to_numpy().tolist(),
            goodreads_id=table[GOODREADS_BOOK_ID].astype(np.int64).to_numpy(),
            ratings_count=table["ratings_count"].astype(np.float64).to_numpy(),
        )
    rng = _rng(root, _STREAM_METADATA)
    n = catalogue.n_books
    # Goodreads-level audience: about 90 goodreads ratings per goodbooks rating at full
    # size, sorted so that book_id order is popularity order as in the real file.
    full_targets = targets * (FULL_USERS / n_users)
    work_ratings = np.sort(full_targets * 90 * rng.lognormal(0.0, 0.3, n))[::-1]
    work_ratings = np.maximum(np.rint(work_ratings), 2500)
    mix = np.diff(ndtr(np.column_stack([np.full(n, -np.inf), thresholds, np.full(n, np.inf)])))
    stars = np.rint(work_ratings[:, None] * mix).astype(np.int64)
    work_total = stars.sum(axis=1)
    ratings_count = np.rint(work_total * rng.uniform(0.85, 1.0, n)).astype(np.int64)
    reviews = np.rint(work_total * 0.03 * rng.lognormal(0.0, 0.4, n)).astype(np.int64)
    average = stars @ np.arange(1, 6) / work_total

    goodreads_id = rng.choice(33_288_638, size=n, replace=False) + 1
    work_id = rng.choice(56_399_597, size=n, replace=False) + 87
    books_count = np.maximum(1, np.rint(rng.lognormal(np.log(40), 0.9, n))).astype(np.int64)
    isbn_digits = rng.integers(10_000_000, 9_999_999_999, n)
    has_isbn = rng.random(n) > 0.07
    isbn_x = rng.random(n) < 0.05
    photo_stamp = rng.integers(1_100_000_000, 1_500_000_000, n)
    has_photo = rng.random(n) > 0.033

    names = _author_names(catalogue.n_authors, rng)
    co_author = rng.integers(0, catalogue.n_authors, n)
    has_co_author = rng.random(n) < 0.15
    primary = catalogue.genre_mix.argmax(axis=1)
    years = _years(primary, rng)
    languages = rng.choice(
        [c for c, _ in _LANGUAGES], size=n, p=_normalised([p for _, p in _LANGUAGES])
    )
    titles = _titles(catalogue.author, rng)

    rows: list[list[str]] = []
    for b in range(n):
        gid = int(goodreads_id[b])
        authors = names[catalogue.author[b]]
        if has_co_author[b] and co_author[b] != catalogue.author[b]:
            authors = f"{authors}, {names[co_author[b]]}"
        isbn = ""
        isbn13 = ""
        if has_isbn[b]:
            isbn = str(int(isbn_digits[b]))
            isbn = isbn[:-1] + "X" if isbn_x[b] else isbn
            isbn13 = f"{9_780_000_000_000 + int(isbn_digits[b]) % 1_000_000_000 * 10:.12g}"
        if has_photo[b]:
            image = f"https://images.gr-assets.com/books/{photo_stamp[b]}m/{gid}.jpg"
            small = f"https://images.gr-assets.com/books/{photo_stamp[b]}s/{gid}.jpg"
        else:
            image, small = _NO_PHOTO, _NO_PHOTO_SMALL
        title, original_title = titles[b]
        rows.append([
            str(b + 1),
            str(gid),
            str(gid),
            str(int(work_id[b])),
            str(int(books_count[b])),
            isbn,
            isbn13,
            authors,
            years[b],
            original_title,
            title,
            str(languages[b]),
            f"{average[b]:.2f}",
            str(int(ratings_count[b])),
            str(int(work_total[b])),
            str(int(reviews[b])),
            *(str(int(s)) for s in stars[b]),
            image,
            small,
        ])
    return _Books(rows=rows, goodreads_id=goodreads_id.astype(np.int64),
                  ratings_count=ratings_count.astype(np.float64))


def _author_names(n_authors: int, rng: np.random.Generator) -> list[str]:
    """Distinct author names; about a third carry a middle initial (more when names run out)."""
    n_pairs = len(_FIRST_NAMES) * len(_LAST_NAMES)
    initials = [f" {c}." for c in "ABCDEFGHJKLMNPRSTW"]
    n_plain = min(int(0.7 * n_authors), n_pairs)
    plain = rng.choice(n_pairs, size=n_plain, replace=False)
    # Names with an initial are numbered after the plain ones: pair * len(initials) + initial.
    n_initialled = n_pairs * len(initials)
    initialled = rng.choice(
        n_initialled, size=n_authors - n_plain, replace=n_authors - n_plain > n_initialled
    )
    names = []
    for code in rng.permutation(np.concatenate([plain, n_pairs + initialled])):
        code = int(code)
        pair, initial = (code, None) if code < n_pairs else divmod(code - n_pairs, len(initials))
        first, last = divmod(pair, len(_LAST_NAMES))
        middle = "" if initial is None else initials[initial]
        names.append(f"{_FIRST_NAMES[first]}{middle} {_LAST_NAMES[last]}")
    return names


def _years(primary_genre: np.ndarray, rng: np.random.Generator) -> list[str]:
    """Original publication years as the real file prints them ('2008.0', rarely empty)."""
    n = len(primary_genre)
    recent = 2017 - np.floor(rng.exponential(14.0, n))
    old = rng.integers(1800, 1960, n)
    is_old = np.isin(primary_genre, [GENRES.index("classics"), GENRES.index("poetry"),
                                     GENRES.index("philosophy")])
    year = np.where(is_old & (rng.random(n) < 0.8), old, np.maximum(recent, 1900))
    missing = rng.random(n) < 0.002
    return ["" if m else f"{float(y):.1f}" for y, m in zip(year, missing, strict=True)]


def _titles(author: np.ndarray, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(title, original_title) per book; a third of the authors write series of up to six."""
    n = len(author)
    adjective = rng.integers(0, len(_ADJECTIVES), n)
    noun = rng.integers(0, len(_NOUNS), n)
    noun2 = rng.integers(0, len(_NOUNS), n)
    place = rng.integers(0, len(_PLACES), n)
    pattern = rng.integers(0, 4, n)
    writes_series = rng.random(int(author.max()) + 1) < 0.33
    # Series names for the b-th book of an author: one name per run of six books.
    series_adjective = rng.integers(0, len(_ADJECTIVES), n)
    series_noun = rng.integers(0, len(_NOUNS), n)
    written: dict[int, int] = {}
    series_name: dict[tuple[int, int], str] = {}
    out = []
    for b in range(n):
        first, second = _NOUNS[noun[b]], _NOUNS[noun2[b]]
        if pattern[b] == 0:
            base = f"The {_ADJECTIVES[adjective[b]]} {first}"
        elif pattern[b] == 1:
            base = f"The {first} of {_plural(second)}"
        elif pattern[b] == 2:
            article = "An" if first[0] in "AEIOU" else "A"
            base = f"{article} {first} in {_PLACES[place[b]]}"
        else:
            base = f"{_ADJECTIVES[adjective[b]]} {_plural(first)}"
        a = int(author[b])
        if not writes_series[a]:
            out.append((base, base))
            continue
        count = written.get(a, 0)
        written[a] = count + 1
        series, number = divmod(count, 6)
        name = series_name.setdefault(
            (a, series), f"{_ADJECTIVES[series_adjective[b]]} {_NOUNS[series_noun[b]]}"
        )
        out.append((f"{base} ({name}, #{number + 1})", base))
    return out


def _plural(noun: str) -> str:
    """English plural of the title nouns ('City' -> 'Cities', 'Boy' -> 'Boys')."""
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    return noun + "s"


# --- tags --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tags:
    """The tag vocabulary and which ids stand for the genres and the generic shelves."""

    ids: np.ndarray  # int64 [n_tags]
    names: list[str]
    genre_ids: np.ndarray  # int64 [n_genres]
    generic_ids: dict[str, int]
    tail_ids: np.ndarray  # every other tag id
    source: str

    def rows(self) -> Iterator[list[str]]:
        """tags.csv rows as text."""
        for tag_id, name in zip(self.ids.tolist(), self.names, strict=True):
            yield [str(tag_id), name]


def _read_real_tags(path: Path) -> pd.DataFrame:
    """Read a real tags.csv (tag_id, tag_name)."""
    try:
        table = pd.read_csv(path, dtype={TAG_ID: np.int64, TAG_NAME: str}, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read tags file {path}: {exc}") from exc
    if list(table.columns) != list(TAGS_COLUMNS):
        raise DatasetError(f"{path} must have the columns {list(TAGS_COLUMNS)}")
    return table


def _build_tags(real: pd.DataFrame | None) -> _Tags:
    """Tag vocabulary: the real one when every genre has a tag of its name, else synthetic."""
    if real is not None:
        by_name = dict(zip(real[TAG_NAME], real[TAG_ID].astype(int), strict=True))
        if all(g in by_name for g in GENRES):
            genre_ids = np.array([by_name[g] for g in GENRES], dtype=np.int64)
            generic = {g: by_name[g] for g in GENERIC_TAGS if g in by_name}
            ids = real[TAG_ID].to_numpy(dtype=np.int64)
            special = np.concatenate([genre_ids, list(generic.values())])
            return _Tags(
                ids=ids,
                names=real[TAG_NAME].tolist(),
                genre_ids=genre_ids,
                generic_ids=generic,
                tail_ids=ids[~np.isin(ids, special)],
                source="tags.csv",
            )
    names = list(GENRES) + list(GENERIC_TAGS) + _synthetic_tag_names(
        N_TAGS - len(GENRES) - len(GENERIC_TAGS)
    )
    ids = np.arange(len(names), dtype=np.int64)
    n_special = len(GENRES) + len(GENERIC_TAGS)
    return _Tags(
        ids=ids,
        names=names,
        genre_ids=ids[: len(GENRES)],
        generic_ids={g: len(GENRES) + i for i, g in enumerate(GENERIC_TAGS)},
        tail_ids=ids[n_special:],
        source="synthetic",
    )


def _synthetic_tag_names(n: int) -> list[str]:
    """n distinct shelf-like names ('read-2014', 'summer-reading', 'owned-kindle', ...)."""
    heads = (
        "read owned my to favorite summer winter book-club school kindle audio library "
        "borrowed gift wish series reread adult teen kids classic modern dark cozy epic "
        "short long funny sad beach travel"
    ).split()
    tails = [w.lower() for w in _NOUNS + _ADJECTIVES] + list(GENRES) + [
        "reading", "books", "list", "shelf", "tbr", "faves", "stars", "picks", "club",
        "challenge", "owned", "ebooks", "audiobooks", "paperbacks", "hardcovers",
    ]
    years = [str(y) for y in range(1990, 2018)]
    names: list[str] = []
    seen: set[str] = set()

    def add(name: str) -> None:
        if name not in seen and name not in GENRES and name not in GENERIC_TAGS:
            seen.add(name)
            names.append(name)

    for h in heads:
        for t in tails + years:
            add(f"{h}-{t}")
    for h in heads:
        for t in tails:
            for y in years:
                if len(names) >= n:
                    return names[:n]
                add(f"{h}-{t}-{y}")
    i = 0
    while len(names) < n:
        add(f"shelf-{i}")
        i += 1
    return names[:n]


def _book_tags_table(
    catalogue: _Catalogue, books: _Books, tags: _Tags, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """book_tags columns (goodreads_book_id, tag_id, count), ~100 tags per book.

    Genre tags get high counts, a few generic shelves (to-read above all) come next and a
    long tail of shelf names (popular ones shared by many books) fills the rest.
    """
    n = catalogue.n_books
    audience = books.ratings_count
    gid_parts: list[np.ndarray] = []
    tag_parts: list[np.ndarray] = []
    count_parts: list[np.ndarray] = []

    def add(book: np.ndarray, tag: np.ndarray, count: np.ndarray) -> None:
        gid_parts.append(books.goodreads_id[book])
        tag_parts.append(np.asarray(tag, dtype=np.int64))
        count_parts.append(np.maximum(1, np.rint(count)).astype(np.int64))

    # Genre tags: every genre holding at least 5% of the book's mix.
    book, genre = np.nonzero(catalogue.genre_mix >= 0.05)
    weight = catalogue.genre_mix[book, genre]
    # Real shares of a book's goodreads ratings: a main genre tag ~0.8%, to-read ~3.5%.
    add(book, tags.genre_ids[genre], audience[book] * weight * rng.uniform(0.004, 0.012, len(book)))
    n_used = np.bincount(book, minlength=n)

    # Generic shelves: to-read on every book, the others on some.
    fiction = catalogue.genre_mix[:, [GENRES.index(g) for g in NON_FICTION]].sum(axis=1) < 0.5
    for name, tag_id in tags.generic_ids.items():
        if name == "to-read":
            on = np.ones(n, dtype=bool)
            share = rng.uniform(0.02, 0.06, n)
        elif name == "fiction":
            on = fiction & (rng.random(n) < 0.9)
            share = rng.uniform(0.002, 0.02, n)
        else:
            on = rng.random(n) < 0.6
            share = rng.uniform(0.0005, 0.008, n)
        book = np.flatnonzero(on)
        add(book, np.full(len(book), tag_id), audience[book] * share[book])
        n_used += on

    # Long tail: half the candidates from shelf names popular everywhere, half from names
    # popular with the book's main genre; duplicates are dropped.
    n_tail = np.maximum(TAGS_PER_BOOK - n_used, 0)
    n_candidates = int(1.5 * TAGS_PER_BOOK)
    # Which shelf names are popular is random, not alphabetical (real tag ids are sorted
    # by name).
    tail = rng.permutation(tags.tail_ids)
    global_cdf = np.cumsum(1.0 / (np.arange(len(tail)) + 10.0) ** 1.05)
    global_cdf /= global_cdf[-1]
    half = n_candidates // 2
    candidates = np.empty((n, n_candidates), dtype=np.int64)
    candidates[:, :half] = np.searchsorted(global_cdf, rng.random((n, half)))
    primary = catalogue.genre_mix.argmax(axis=1)
    # Each genre favours its own random ordering of the tail names.
    genre_order = np.stack([rng.permutation(len(tail)) for _ in GENRES])
    local = np.searchsorted(global_cdf, rng.random((n, n_candidates - half)))
    candidates[:, half:] = genre_order[primary[:, None], local]
    candidates = np.minimum(candidates, len(tail) - 1)
    order = np.argsort(candidates, axis=1, kind="stable")
    ordered = np.take_along_axis(candidates, order, axis=1)
    first = np.ones_like(ordered, dtype=bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    keep = np.empty_like(first)
    np.put_along_axis(keep, order, first, axis=1)
    keep &= np.cumsum(keep, axis=1) <= n_tail[:, None]
    book, slot = np.nonzero(keep)
    rank = np.cumsum(keep, axis=1)[book, slot]
    count = audience[book] * 0.002 * rng.lognormal(0.0, 0.5, len(book)) / rank**0.8
    add(book, tail[candidates[book, slot]], count)

    gid = np.concatenate(gid_parts)
    tag = np.concatenate(tag_parts)
    count = np.concatenate(count_parts)
    # As in the real file: by goodreads_book_id, then by count descending, then tag id.
    order = np.lexsort((tag, -count, gid))
    return gid[order], tag[order], count[order]
