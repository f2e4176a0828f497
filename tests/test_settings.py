"""Settings read from the environment, with messages that say what to set."""

from __future__ import annotations

import pytest

from settings import Settings, SettingsError, get_settings


@pytest.mark.parametrize("raw, expected", [
    ("rating", ("rating",)),
    ("rating, add_to_shelf,click", ("rating", "add_to_shelf", "click")),
    ('["rating", "click"]', ("rating", "click")),
    ("rating,rating", ("rating",)),
])
def test_interaction_types_read_as_a_list(raw: str, expected: tuple[str, ...],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOODBOOKS_INTERACTION_TYPES", raw)
    assert Settings(_env_file=None).interaction_types == expected


@pytest.mark.parametrize("raw, message", [
    ("click", "must include rating"),
    ("rating,purchase", "should be .click., .add_to_shelf. or .rating."),
])
def test_bad_interaction_types_say_what_to_set(raw: str, message: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOODBOOKS_INTERACTION_TYPES", raw)
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match=message) as error:
            get_settings()
        assert "GOODBOOKS_INTERACTION_TYPES" in str(error.value)
    finally:
        get_settings.cache_clear()


def test_new_data_lives_under_the_data_directory_unless_told(tmp_path) -> None:  # noqa: ANN001
    s = Settings(_env_file=None, data_dir=tmp_path)
    assert (s.inbox_path, s.event_log_path) == (tmp_path / "inbox", tmp_path / "events")
    s = Settings(_env_file=None, data_dir=tmp_path, inbox_dir=tmp_path / "drop",
                 event_log_dir="")
    assert (s.inbox_path, s.event_log_path) == (tmp_path / "drop", tmp_path / "events")


@pytest.mark.parametrize("raw, expected", [
    ("userId=user_id, movieId=book_id", {"userId": "user_id", "movieId": "book_id"}),
    ('{"uid": "user_id"}', {"uid": "user_id"}),
    ("", {}),
])
def test_local_columns_read_as_a_mapping(raw: str, expected: dict[str, str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOODBOOKS_LOCAL_COLUMNS", raw)
    assert Settings(_env_file=None).local_columns == expected


def test_a_malformed_column_mapping_says_what_is_expected(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOODBOOKS_LOCAL_COLUMNS", "userId,movieId=book_id")
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match="userId=user_id,movieId=book_id") as error:
            get_settings()
        assert "GOODBOOKS_LOCAL_COLUMNS" in str(error.value)
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("grace, ok", [("30", False), ("60", False), ("61", True)])
def test_a_heartbeat_grace_period_must_outlast_the_heartbeat(
        grace: str, ok: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOODBOOKS_OPTUNA_HEARTBEAT_S", "60")
    monkeypatch.setenv("GOODBOOKS_OPTUNA_GRACE_S", grace)
    get_settings.cache_clear()
    try:
        if ok:
            assert get_settings().optuna_grace_s == 61
        else:
            with pytest.raises(SettingsError, match=r"GOODBOOKS_OPTUNA_GRACE_S \(\d+\) must be "
                                                    r"longer than GOODBOOKS_OPTUNA_HEARTBEAT_S"):
                get_settings()
    finally:
        get_settings.cache_clear()
