"""The A/B evaluation flow: events → exposures and conversions → SRM check → mSPRT → act."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow

from flows.score import redis_target
from models.ab import ExperimentDesign, decide
from settings import get_settings
from tasks.ab import (
    close_experiment,
    configure_experiment,
    keep_looks,
    kept_looks,
    log_to_challenger_run,
    measure_experiment,
    promote_challenger,
    report_evaluation,
)
from tasks.aliases import SwitchUnconfirmedError


@flow(name="ab-evaluate", log_prints=True)
def ab_evaluate_flow(
    experiment: str | None = None,
    config: dict[str, object] | None = None,
    design: dict[str, object] | None = None,
    act: bool = True,
    now: str | None = None,
) -> dict[str, object]:
    """Judge an experiment between champion and challenger; promote, stop or continue.

    Args:
        experiment: its name (default GOODBOOKS_EXPERIMENT_NAME).
        config: create or edit the experiment first (serving.experiments fields: variants,
            salt, status, started_at, ...).
        design: create or edit its evaluation design first (models.ab.ExperimentDesign
            fields: min_sample, max_duration_s, primary_metric, guardrails, alpha, ...).
        act: apply the decision (promotion, stop); False only reports it.
        now: evaluation time as ISO 8601 (default: the current time).
    """
    s = get_settings()
    name = experiment or s.experiment_name
    target = redis_target()
    defaults = {"alpha": s.ab_alpha, "min_sample": s.ab_min_sample,
                "max_duration_s": s.ab_max_duration_s,
                "attribution_window_s": s.ab_attribution_window_s,
                "mixture_variance": s.ab_mixture_variance, "srm_threshold": s.ab_srm_threshold}
    stored, plan = configure_experiment(target, name, config, design, defaults,
                                        s.tracking_uri, s.model_name)
    if stored["status"] != "active":
        print(f"experiment {name} is {stored['status']}: nothing to evaluate")
        return {"experiment": name, "action": "none", "reason": f"status {stored['status']}"}
    measurement = measure_experiment(target, stored, plan, str(s.event_log_path))
    variants = stored["variants"]
    shares = [float(v["share"]) for v in variants]  # type: ignore[index, union-attr]
    at = datetime.fromisoformat(now) if now else datetime.now(UTC)
    decision = decide(ExperimentDesign.from_dict(plan), measurement, shares,
                      str(stored["started_at"]), at, kept_looks(target, name))
    keep_looks(target, name, decision)
    print(f"{name}: {decision.action} ({decision.reason})")
    plot = report_evaluation(name, measurement, decision, str(s.data_dir / "reports"))
    challenger_alias = str(variants[1]["alias"])  # type: ignore[index]
    # Logged before acting: a promotion moves the challenger alias away.
    run_id = log_to_challenger_run(s.tracking_uri, s.model_name, challenger_alias, name,
                                   measurement, decision, plot)
    promotion = None
    if act and decision.action == "promote":
        promotion = promote_challenger(s.tracking_uri, s.model_name, target, stored)
    if act and decision.action in ("promote", "stop"):
        close_experiment(target, stored, s.tracking_uri, s.model_name,
                         promoted=promotion is not None)
    if promotion is not None and promotion["unconfirmed"]:
        # Promoted and closed, but a cluster failover now would undo the switches: the
        # run fails so that someone looks.
        raise SwitchUnconfirmedError(str(promotion["unconfirmed"]))
    return {
        "experiment": name, "action": decision.action, "reason": decision.reason,
        "effect": decision.test.effect, "p_value": decision.test.p_value,
        "ci": [decision.test.ci_low, decision.test.ci_high],
        "srm_p_value": decision.srm.p_value, "plot": plot, "run_id": run_id,
        "promotion": promotion,
        "readers": {v: a.readers for v, a in measurement.arms.items()},
        "exposures": {v: a.exposures for v, a in measurement.arms.items()},
        "conversions": {v: a.conversions for v, a in measurement.arms.items()},
    }
