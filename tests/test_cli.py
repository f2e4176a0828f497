"""Bad command-line input ends with a message and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import cli
from models.generator import generate_continuation, generate_goodbooks


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    generate_goodbooks(out, n_users=60, n_books=80, seed=3)
    return out


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("GOODBOOKS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GOODBOOKS_STATE_DIR", str(tmp_path / "state"))
    cli.get_settings.cache_clear()
    yield CliRunner()
    cli.get_settings.cache_clear()


def test_data_continue_writes_new_ratings(runner: CliRunner, generated: Path,
                                          tmp_path: Path) -> None:
    out = tmp_path / "wave"
    result = runner.invoke(cli.app, ["data", "continue", str(generated), "--out", str(out),
                                     "--kind", "new_readers", "--magnitude", "0.5",
                                     "--ratings", "200", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert f"goodbooks monitor --current {out}" in result.output
    # The same call in code gives the same ratings: the command adds nothing of its own.
    again = generate_continuation(generated, tmp_path / "again", "new_readers", 0.5, 200, 1)
    pd.testing.assert_frame_equal(pd.read_csv(out / "ratings.csv"),
                                  pd.read_csv(again.directory / "ratings.csv"))


@pytest.mark.parametrize(("args", "message"), [
    (["--kind", "heatwave"], "kind must be one of"),
    (["--kind", "rating_inflation", "--magnitude", "nan"], "finite number"),
    (["--kind", "new_readers", "--magnitude", "1.5"], "share in [0, 1]"),
])
def test_data_continue_rejects_bad_options(runner: CliRunner, generated: Path, tmp_path: Path,
                                           args: list[str], message: str) -> None:
    result = runner.invoke(cli.app, ["data", "continue", str(generated), "--out",
                                     str(tmp_path / "out"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "out" / "ratings.csv").exists()


def test_data_continue_needs_a_generated_base(runner: CliRunner, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    pd.DataFrame({"user_id": [1], "book_id": [1], "rating": [5]}).to_csv(
        plain / "ratings.csv", index=False)
    result = runner.invoke(cli.app, ["data", "continue", str(plain), "--out",
                                     str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "generated" in result.output and "Traceback" not in result.output


def test_data_continue_refuses_to_overwrite_its_base(runner: CliRunner, generated: Path) -> None:
    before = (generated / "ratings.csv").read_bytes()
    result = runner.invoke(cli.app, ["data", "continue", str(generated), "--out", str(generated)])
    assert result.exit_code == 2
    assert "--out must differ from BASE" in result.output
    assert (generated / "ratings.csv").read_bytes() == before


def test_monitor_rejects_a_missing_directory_before_any_work(runner: CliRunner,
                                                             tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["monitor", "--current", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    words = " ".join(result.output.replace("│", " ").split())  # the error box wraps lines
    assert "Invalid value for '--current'" in words and "does not exist" in words


def test_events_drain_moves_the_stream_to_the_log(
    runner: CliRunner, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    from serving.events import Event, EventWriter

    kwargs = store.client.connection_pool.connection_kwargs
    url = (f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}" if kwargs.get("path") else
           f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}")
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("GOODBOOKS_REDIS_PREFIX", store.prefix)
    ids = EventWriter(store).write([Event(type="click", user_id=u, book_id=3, variant="control",
                                          version="v1") for u in range(1, 8)]).ids
    result = runner.invoke(cli.app, ["events", "drain"])
    assert result.exit_code == 0, result.output
    assert "drained 7 events into 1 file(s)" in result.output
    assert f"log through {ids[-1]}" in result.output
    logged = pd.concat(pd.read_parquet(p) for p in (tmp_path / "data" / "events").rglob(
        "events-*.parquet"))
    assert logged["entry_id"].tolist() == ids


@pytest.mark.slow
@pytest.mark.parametrize("debug", [False, True])
def test_a_rejected_ingest_prints_its_report_without_tracebacks(
    generated: Path, tmp_path: Path, debug: bool
) -> None:
    import os
    import subprocess
    import sys

    bad = tmp_path / "bad"
    bad.mkdir()
    ratings = pd.read_csv(generated / "ratings.csv")
    ratings["rating"] = ratings["rating"].astype(object)
    ratings.loc[7, "rating"] = "seven"
    ratings.to_csv(bad / "ratings.csv", index=False)
    (bad / "books.csv").write_bytes((generated / "books.csv").read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(GOODBOOKS_DATA_DIR=str(tmp_path / "data"), GOODBOOKS_STATE_DIR=str(tmp_path / "s"),
               PREFECT_HOME=str(tmp_path / "prefect"))
    command = [sys.executable, "-m", "cli", *(["--debug"] if debug else []), "ingest",
               "--source", "local", "--local-dir", str(bad)]
    done = subprocess.run(command, cwd=Path(cli.__file__).parents[1], env=env, text=True,
                          capture_output=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 1
    assert "line 9: user_id=" in output and "rating='seven'" in output  # the report
    assert ("Traceback" in output) is debug
    assert not (tmp_path / "data" / "snapshots").exists() or not any(
        (tmp_path / "data" / "snapshots").iterdir())
