"""The one typed settings object of the project; nothing else reads environment variables.

Every value can be set as ``GOODBOOKS_<NAME>`` (for example ``GOODBOOKS_DEMO_USERS=20000``) or
in a ``.env`` file at the project root. ``REDIS_URL`` is accepted as well as
``GOODBOOKS_REDIS_URL``. All state (data, MLflow, Prefect, the embedded Redis) lives under
``state_dir`` and ``data_dir``, inside the project unless you point them elsewhere.

Over 500 lines on purpose: one class of 85 fields, each with its description and checks, so
every variable the project reads is found (and documented) in one place.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.schema import InteractionType

PROJECT_DIR = Path(__file__).resolve().parent

CANONICAL_DATASET_URL = (
    "https://raw.githubusercontent.com/zygmuntz/goodbooks-10k/"
    "6dd165b555a7b47b2dd36743a425776e641ff50c"
)


class SettingsError(ValueError):
    """The environment holds a setting that cannot work; the message says what to set."""


class Settings(BaseSettings):
    """Typed configuration; validated when constructed, never at import time."""

    model_config = SettingsConfigDict(
        env_prefix="GOODBOOKS_",
        env_file=PROJECT_DIR / ".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # --- where state lives -------------------------------------------------------------
    data_dir: Path = Field(PROJECT_DIR / "data", description="Raw, generated and processed data.")
    state_dir: Path = Field(
        PROJECT_DIR / ".goodbooks",
        description="MLflow database and artifacts, Prefect home, Optuna storage, logs.",
    )

    # --- data sources ------------------------------------------------------------------
    dataset_source: Literal["generate", "download", "local"] = Field(
        "generate", description="Where the ingest step gets goodbooks files."
    )
    local_dataset_dir: Path | None = Field(
        None, description="A directory holding ratings.csv and books.csv (source 'local')."
    )
    local_columns: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Source column → goodbooks column for a local source whose files use "
        "other names, as 'userId=user_id,movieId=book_id' (or JSON); a 'timestamp' column "
        "(seconds since 1970) gives each rating its time.",
    )
    local_books_file: str = Field(
        "books.csv", description="The catalogue's file name in a local source (e.g. movies.csv)."
    )
    local_half_stars: bool = Field(
        False, description="A local source rates in half stars (0.5-5): read them as whole "
        "stars, rounded up.",
    )
    dataset_url: str = Field(
        CANONICAL_DATASET_URL, description="Base URL of the real goodbooks-10k files."
    )
    download_timeout_s: float = Field(30.0, gt=0)

    # --- generator ---------------------------------------------------------------------
    demo_users: int = Field(6000, ge=50, description="Readers generated for the demo.")
    demo_books: int = Field(10_000, ge=50, le=10_000, description="Books generated.")
    seed: int = Field(42, description="Seed for generation, splitting, training.")
    books_csv: Path | None = Field(
        None, description="A real goodbooks books.csv to take titles/authors from."
    )
    tags_csv: Path | None = Field(None, description="A real goodbooks tags.csv for tag names.")
    generated_moving: bool = Field(
        True, description="Generated data that moves: timestamps, books released over the "
        "years whose readership rises and fades, readers with favourite authors whose "
        "tastes drift. Off: static data (no timestamps: row order is time).",
    )

    # --- validation --------------------------------------------------------------------
    quarantine_max_ratio: float = Field(
        0.001, ge=0, le=1,
        description="Repeated reader-book pairs (ratings, to-read) and to-read or tag rows "
        "of books or tags the catalogue lacks, up to this share of a table, are dropped into "
        "a quarantine file instead of failing the run. A rating of a book missing from "
        "books.csv is not quarantined: it fails a full ingest (the files do not belong "
        "together) and is held back in an increment until the catalogue knows the book.",
    )
    min_ratings_per_user: int = Field(10, ge=1, description="Readers need this many ratings.")

    # --- new data: the inbox, the interaction log, snapshots ------------------------------
    inbox_dir: Path | None = Field(
        None, description="Where new rating files are dropped for the next ingest (a "
        "directory with ratings.csv, or a ratings CSV); default <data_dir>/inbox.",
    )
    event_log_dir: Path | None = Field(
        None, description="The interaction log: app events drained from the Redis stream, "
        "as Parquet partitioned by day; default <data_dir>/events.",
    )
    interaction_types: Annotated[tuple[InteractionType, ...],
                                 NoDecode] = Field(
        ("rating", "add_to_shelf"),
        description="App event types that count as interactions for training (comma "
        "separated; rating always, as the dataset's own ratings do). An add-to-shelf says "
        "the reader wants the book (the app's to-read shelf); a click is the weakest signal "
        "and off by default. Impressions never count. Snapshots keep every interaction "
        "event, so a change applies to all the data at the next training.",
    )
    events_keep_s: float = Field(
        3600.0, ge=0, description="Drained events stay in the Redis stream this long, so a "
        "log file damaged after it was written is drained again; older ones are trimmed "
        "(only ever below what the drain has acknowledged).",
    )
    snapshot_retention: int = Field(
        7, ge=1, description="Snapshots kept besides the newest and any a registered model "
        "version was trained on (older ones are deleted after each ingest).",
    )

    # --- training ----------------------------------------------------------------------
    eval_k: int = Field(10, ge=1, le=1000, description="Cut-off of the ranking metrics.")
    num_threads: int = Field(2, ge=1, le=64, description="LightFM / BLAS threads.")
    n_trials: int = Field(6, ge=1, description="Optuna trials per training run.")
    tuning_timeout_s: float | None = Field(
        None, gt=0, description="Tuning time: no trial starts after it, and a trial still "
        "running ends after its current epoch with its best epoch so far.",
    )
    refit_timeout_s: float | None = Field(
        None, gt=0, description="End the refit of the best trial on every reader after the "
        "epoch that passes this many seconds (keeping its best epoch).",
    )
    tuning_sample_fraction: float = Field(
        1.0, gt=0, le=1,
        description="Share of readers the study tunes on; below 1 the best is refit on all.",
    )
    max_epochs: int = Field(20, ge=1, description="Upper bound on LightFM epochs per fit.")
    patience: int = Field(3, ge=1, description="Epochs without validation gain before stop.")
    optuna_storage_url: str | None = Field(
        None, description="Optuna storage; default SQLite under state_dir. A PostgreSQL URL "
        "(postgresql+psycopg://..., the postgres extra) lets several workers share one study.",
    )
    study_trials: int | None = Field(
        None, ge=1, description="The study's trial budget in all, shared by every worker on "
        "it: each takes trials until the study holds this many (unset: each training run "
        "adds n_trials).",
    )
    optuna_heartbeat_s: int = Field(
        60, ge=1, description="On a database server, a running trial records a heartbeat "
        "this often.",
    )
    optuna_grace_s: int | None = Field(
        None, ge=1, description="A running trial without a heartbeat this long (default "
        "twice the heartbeat) fails, and its parameters run once more.",
    )
    backtest_period: str = Field(
        "7d", description="The train flow's backtest: the last period before the data's "
        "end (7d, 4w, ...; a snapshot without timestamps uses its last 5% of interactions); "
        "empty: no backtest and no recency prior.",
    )
    backtest_min_readers: int = Field(
        20, ge=1, description="Readers who must return in the backtest's period and in the "
        "one before it (where the recency prior is chosen) for the backtest to judge; with "
        "fewer (a gap in time, say, before today's app events) the run has no backtest, "
        "no recency prior, and the registry gate goes by the test table alone.",
    )
    tuning_split: Literal["time", "reader"] = Field(
        "time", description="What the study stops and scores on. time: global time — "
        "validation is the period before the backtest's (GOODBOOKS_BACKTEST_PERIOD) and "
        "test the backtest's own, with every earlier interaction in training (what serving "
        "faces); reader: each reader's latest interactions (per-reader split, other "
        "readers' later reading in training). Without a backtest period, reader.",
    )
    backtest_windows: Annotated[tuple[str, ...], NoDecode] = Field(
        ("7d", "28d", "91d", "365d"),
        description="Recent-popularity windows: the backtest's baselines and the recency "
        "prior's choices (comma-separated).",
    )
    registry_margin: float = Field(
        0.02, ge=0, le=1, description="Relative NDCG drop tolerated against the champion."
    )

    # --- MLflow ------------------------------------------------------------------------
    mlflow_tracking_uri: str | None = Field(
        None, description="Defaults to sqlite:///<state_dir>/mlflow.db."
    )
    mlflow_experiment: str = "goodbooks"
    model_name: str = Field("goodbooks-lightfm", description="Registered model name.")

    # --- Redis -------------------------------------------------------------------------
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("GOODBOOKS_REDIS_URL", "REDIS_URL"),
        description="A Redis server (redis://host:port/db), a Redis Cluster "
        "(redis+cluster://host:port[,host:port...]: any of its nodes); unset starts an "
        "embedded server under data_dir.",
    )
    redis_prefix: str = Field("gb:", min_length=1, description="Prefix of every Redis key.")
    redis_socket_timeout_s: float = Field(
        1.0, gt=0, le=60, description="Client read timeout; redis-py's default retries ~60 s."
    )
    redis_connect_timeout_s: float = Field(1.0, gt=0, le=60)
    top_n: int = Field(100, ge=1, le=10_000, description="Books stored per reader.")
    retention: int = Field(3, ge=1, description="Earlier versions kept for rollback.")
    score_shard_size: int = Field(4096, ge=64, description="Readers per scoring shard.")

    # --- monitoring --------------------------------------------------------------------
    # Thresholds of the drift measures (models/drift.py). Their false-alarm rate and the
    # smallest planted drift each catches are measured by benchmarks/drift.py.
    drift_psi_threshold: float = Field(
        0.1, gt=0,
        description="Rating mix PSI past which drift fires. 0.1 is the usual 'moderate "
        "shift' line; the model takes ratings as implicit feedback, so a smaller move in the "
        "stars does not hurt it. Same-distribution windows of 500+ ratings stay below 0.04.",
    )
    drift_ks_threshold: float = Field(
        0.1, gt=0, le=1,
        description="KS distance of new ratings per reader from proportional activity. "
        "Same-distribution windows of 500+ ratings stay below 0.04.",
    )
    drift_js_threshold: float = Field(
        0.05, gt=0, le=1,
        description="Jensen-Shannon divergence (bits) of the new ratings over books, "
        "pooled by popularity so that same-distribution windows of 500+ ratings stay below "
        "0.035.",
    )
    drift_unseen_readers_threshold: float = Field(
        0.05, ge=0, le=1,
        description="Share of new ratings by readers the model does not know (they get "
        "the popular fallback). Raise it where steady sign-ups exceed 5%.",
    )
    drift_unseen_books_threshold: float = Field(
        0.02, ge=0, le=1,
        description="Share of new ratings on books the model does not know (it can never "
        "recommend them). 2% means new titles draw real attention.",
    )
    drift_hit_rate_drop_threshold: float = Field(
        0.15, gt=0, le=1,
        description="Relative fall of the served lists' hit rate on new ratings from their "
        "hit rate on the to-read shelves at training time; fires only when past it with 95% "
        "confidence. With no drift new ratings score at or above the shelves, so 15% below "
        "is a real loss.",
    )
    drift_min_ratings: int = Field(
        500, ge=1, description="Fewer new ratings are reported but not judged (too noisy)."
    )
    drift_min_interactions: int = Field(
        200, ge=1,
        description="Fewer new interactions of readers with a served list: the hit rate is "
        "reported but not judged.",
    )
    monitor_alias: str = Field(
        "champion", min_length=1, description="The Redis alias whose served lists are judged."
    )
    drift_metrics_file: Path | None = Field(
        None,
        description="Prometheus text file the monitor flow writes its gauges to (default "
        "<state_dir>/metrics/goodbooks_drift.prom; point a node exporter's textfile "
        "collector at its directory).",
    )

    # --- experiments -------------------------------------------------------------------
    # Defaults of a new experiment's evaluation design (models/ab.py ExperimentDesign); a
    # stored design (<prefix>experiment:<name>:design) or the flow's `design` overrides them.
    ab_alpha: float = Field(
        0.05, gt=0, lt=1, description="False-promotion rate the sequential test guarantees."
    )
    ab_min_sample: int = Field(
        1000, ge=1, description="Exposures per variant before the test may decide."
    )
    ab_max_duration_s: float = Field(
        14 * 86400.0, gt=0, description="Past this age an undecided experiment is stopped."
    )
    ab_attribution_window_s: float = Field(
        3600.0, ge=1, description="An interaction counts for an impression this long after "
        "it; an event id sent again this long after its first write is counted once.",
    )
    ab_mixture_variance: float = Field(
        1e-4, gt=0,
        description="mSPRT mixture variance tau^2: about the square of the effect worth "
        "detecting (1e-4: one percentage point).",
    )
    ab_srm_threshold: float = Field(
        0.001, gt=0, lt=1, description="Chi-square p-value below which the split is skewed."
    )

    # --- serving -----------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    experiment_name: str = Field(
        "default",
        pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$",
        description="A/B experiment read from <prefix>experiment:<name>; none stored or "
        "stopped means every reader gets the champion.",
    )
    serving_socket_timeout_s: float = Field(
        0.1, gt=0, le=5, description="Serving read timeout: past it a reader is served degraded."
    )
    serving_connect_timeout_s: float = Field(0.25, gt=0, le=5)
    serving_cache_size: int = Field(
        20_000, ge=0, description="Decoded lists kept per serving process (~3.7 KB each at N=100)."
    )
    serving_cache_ttl_s: float = Field(
        300.0, gt=0, description="Lifetime of an in-process cache entry."
    )
    pointer_ttl_s: float = Field(
        1.0, ge=0, le=60, description="How long alias pointers and the experiment are cached."
    )
    outage_backoff_s: float = Field(
        1.0, ge=0, le=60, description="After a Redis error, answer degraded this long."
    )
    events_api_key: str | None = Field(
        None, repr=False, description="Key POST /events requires (X-API-Key); unset disables it."
    )
    events_max_batch: int = Field(500, ge=1, le=10_000, description="Events per POST /events.")
    events_write_timeout_s: float = Field(
        5.0, gt=0, le=60,
        description="Event write timeout: long, so that a 503 almost always means nothing "
        "was written (a retry with the same event ids is counted once either way).",
    )
    ready_max_version_age_s: float = Field(
        2 * 86400.0, gt=0, description="/ready fails when a served version is older than this."
    )
    api_access_log: bool = Field(True, description="One JSON log line per HTTP request.")

    # --- operations --------------------------------------------------------------------
    # The local services `make up` starts (infra/stack/) and the deployments it creates.
    stack_host: str = Field(
        "127.0.0.1",
        description="Address the Prefect and MLflow servers bind to and are reached at "
        "(the API's is GOODBOOKS_API_HOST).",
    )
    prefect_port: int = Field(4200, ge=1, le=65535, description="Prefect server and UI port.")
    prefect_database_url: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "GOODBOOKS_PREFECT_DATABASE_URL", "PREFECT_API_DATABASE_CONNECTION_URL"
        ),
        repr=False,
        description="Prefect server database; unset is SQLite under the Prefect home, "
        "postgresql+asyncpg://user:password@host:5432/prefect for PostgreSQL.",
    )
    mlflow_port: int = Field(5000, ge=1, le=65535, description="MLflow tracking server port.")
    mlflow_backend_store_uri: str | None = Field(
        None,
        repr=False,
        description="Store the MLflow server serves; unset is the tracking URI's SQLite "
        "database, postgresql://user:password@host:5432/mlflow for PostgreSQL.",
    )
    mlflow_artifacts_destination: str | None = Field(
        None, description="Artifact root of the MLflow server (default <state_dir>/mlartifacts)."
    )
    schedule_timezone: str = Field(
        "UTC", min_length=1, description="IANA time zone of the nightly 02:00 schedule."
    )
    worker_poll_s: float = Field(
        10.0, gt=0, le=300, description="How often the worker asks the server for runs."
    )
    worker_limit: int = Field(
        1, ge=1, le=16, description="Flow runs one worker runs at a time (2 cores: one)."
    )
    stack_timeout_s: float = Field(
        180.0, gt=0, description="How long `make up` waits for each service to answer."
    )

    @field_validator("interaction_types", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return tuple(json.loads(value))
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("backtest_windows", mode="before")
    @classmethod
    def _window_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("local_columns", mode="before")
    @classmethod
    def _column_mapping(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("{"):
                return json.loads(value)
            pairs = [part.strip() for part in value.split(",") if part.strip()]
            bad = [p for p in pairs if p.count("=") != 1 or "" in [x.strip() for x in p.split("=")]]
            if bad:
                raise ValueError(f"expected source=goodbooks pairs such as "
                                 f"'userId=user_id,movieId=book_id'; cannot read {bad}")
            return {k.strip(): v.strip() for k, v in (p.split("=") for p in pairs)}
        return value

    @field_validator("interaction_types")
    @classmethod
    def _ratings_count(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "rating" not in value:
            raise ValueError("must include rating: ratings are what the model learns from "
                             f"(got {','.join(value) or 'nothing'}); add add_to_shelf or "
                             "click to count those too")
        return tuple(dict.fromkeys(value))

    @field_validator("books_csv", "tags_csv", "local_dataset_dir", "inbox_dir", "event_log_dir",
                     mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        # An exported but empty variable (e.g. from the Makefile) means "not given".
        return None if value in ("", None) else value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://", "redis+cluster://",
                                 "rediss+cluster://")):
            raise ValueError(
                f"REDIS_URL={value!r} is not a Redis URL; use redis://host:port/db, "
                "redis+cluster://host:port[,host:port...] for a Redis Cluster, or unset it "
                "to use the embedded server"
            )
        return value

    @model_validator(mode="after")
    def _check_source(self) -> Settings:
        if self.dataset_source == "local" and self.local_dataset_dir is None:
            raise ValueError(
                "dataset_source is 'local' but GOODBOOKS_LOCAL_DATASET_DIR is not set; "
                "point it at a directory holding ratings.csv and books.csv"
            )
        if self.optuna_grace_s is not None and self.optuna_grace_s <= self.optuna_heartbeat_s:
            raise ValueError(
                f"GOODBOOKS_OPTUNA_GRACE_S ({self.optuna_grace_s}) must be longer than "
                f"GOODBOOKS_OPTUNA_HEARTBEAT_S ({self.optuna_heartbeat_s}): a healthy trial "
                "would be failed as lost between two heartbeats"
            )
        return self

    # --- derived paths -----------------------------------------------------------------
    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def generated_dir(self) -> Path:
        return self.data_dir / "generated"

    @property
    def processed_dir(self) -> Path:
        return self.data_dir / "processed"

    @property
    def inbox_path(self) -> Path:
        return self.inbox_dir or self.data_dir / "inbox"

    @property
    def event_log_path(self) -> Path:
        return self.event_log_dir or self.data_dir / "events"

    @property
    def data_docs_dir(self) -> Path:
        return self.data_dir / "gx_docs"

    @property
    def redis_db_path(self) -> Path:
        return self.data_dir / "redis" / "goodbooks.rdb"

    @property
    def prefect_home(self) -> Path:
        return self.state_dir / "prefect"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.state_dir / "mlartifacts"

    @property
    def optuna_storage(self) -> str:
        return self.optuna_storage_url or f"sqlite:///{self.state_dir / 'optuna.db'}"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.state_dir / 'mlflow.db'}"

    def tool_environment(self) -> dict[str, str]:
        """Variables that keep Prefect, MLflow and matplotlib state inside the project."""
        return {
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # A busy 2-core machine can take longer than the default 20 s to start one.
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "INFO"),
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MPLCONFIGDIR": str(self.state_dir / "matplotlib"),
            "MPLBACKEND": "Agg",
            # Bundles are a few files; a progress bar per download only clutters run logs.
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Build and validate the settings once; raise SettingsError with what to fix."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"  GOODBOOKS_{name.upper()}: {err['msg']}")
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None


def apply_tool_environment(settings: Settings) -> None:
    """Export the tool variables (for this process and its children) and create the dirs.

    Called by entry points (the CLI, the API server, the test session), never on import.
    """
    for key, value in settings.tool_environment().items():
        os.environ.setdefault(key, value)
    for path in (settings.data_dir, settings.state_dir, settings.prefect_home):
        path.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / "matplotlib").mkdir(parents=True, exist_ok=True)
