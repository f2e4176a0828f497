"""`goodbooks data`: generate goodbooks-shaped data, continue it, download the real files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.base import data_app, prepare


@data_app.command("generate")
def data_generate(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("data/generated/full"),
    users: Annotated[int, typer.Option(help="Readers (53424 is full size).")] = 53_424,
    books: Annotated[int, typer.Option(help="Books (at most 10000).")] = 10_000,
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 42,
    books_csv: Annotated[Path | None, typer.Option(
        help="A real goodbooks books.csv to take titles and authors from.")] = None,
    tags_csv: Annotated[Path | None, typer.Option(help="A real goodbooks tags.csv.")] = None,
    moving: Annotated[bool | None, typer.Option(
        "--moving/--static",
        help="Data that moves: timestamps, books released over the years whose readership "
             "rises and fades, readers with favourite authors whose tastes drift (default "
             "GOODBOOKS_GENERATED_MOVING).")] = None,
) -> None:
    """Generate goodbooks-shaped data with a planted taste model."""
    settings = prepare()
    from models.generator import generate_goodbooks

    moving = settings.generated_moving if moving is None else moving

    last = {"stage": ""}

    def progress(stage: str, fraction: float) -> None:
        if stage != last["stage"] or fraction >= 1.0:
            last["stage"] = stage
        print(f"\r{stage:<10} {fraction * 100:5.1f}%", end="", file=sys.stderr, flush=True)

    generate_goodbooks(out, n_users=users, n_books=books, seed=seed, books_csv=books_csv,
                       tags_csv=tags_csv, progress=progress, moving=moving)
    print(file=sys.stderr)
    typer.echo(f"written to {out}")


@data_app.command("continue")
def data_continue(
    base: Annotated[Path, typer.Argument(help="A generated dataset directory.")],
    out: Annotated[Path, typer.Option(help="Output directory.")],
    kind: Annotated[str, typer.Option(
        help="none, taste_shift, new_popular_books, rating_inflation or new_readers.")] = "none",
    magnitude: Annotated[float, typer.Option(
        help="Share (taste_shift, new_popular_books, new_readers) or shift in sd "
             "(rating_inflation).")] = 0.0,
    ratings: Annotated[int, typer.Option(help="New ratings to write.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
) -> None:
    """Write new ratings that follow a generated dataset, with or without planted drift.

    With --out under the inbox (GOODBOOKS_INBOX_DIR, default data/inbox) the next ingest
    takes them in; elsewhere, `goodbooks monitor --current DIR` judges them as they are.
    """
    prepare()
    from models.generator import generate_continuation
    from models.schema import GoodbooksError

    if out.resolve() == base.resolve():
        typer.secho("--out must differ from BASE: the continuation would overwrite it",
                    fg="red", err=True)
        raise typer.Exit(2)
    try:
        made = generate_continuation(base, out, kind, magnitude, ratings, seed)  # type: ignore[arg-type]
    except (GoodbooksError, ValueError, OSError) as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"written to {made.directory}; check it with: goodbooks monitor --current "
               f"{made.directory} (or drop it in the inbox for the next ingest)")


@data_app.command("download")
def data_download(
    dest: Annotated[Path | None, typer.Option(help="Directory (default data/raw).")] = None,
) -> None:
    """Download the real goodbooks-10k files (checksummed, resumable)."""
    settings = prepare()
    from models.download import download_goodbooks

    def progress(stage: str, fraction: float) -> None:
        print(f"\r{stage:<16} {fraction * 100:5.1f}%", end="", file=sys.stderr, flush=True)

    paths = download_goodbooks(dest or settings.raw_dir, base_url=settings.dataset_url,
                               timeout_s=settings.download_timeout_s, progress=progress)
    print(file=sys.stderr)
    for name, path in paths.items():
        typer.echo(f"{name}: {path}")
