"""Error rates of the A/B evaluation's statistics, measured by simulation.

    .venv/bin/python benchmarks/ab.py [--runs 500] [--seed 7]

Four figures, each over ``--runs`` simulated experiments (pure statistics: the decision
rules of models/ab.py on simulated counts, no Redis):

- A/A: both arms convert at 10%; the evaluation looks after every 1% of the planned sample
  (100 looks) and promotes when the always-valid p-value falls below alpha with a positive
  effect. The false-promotion rate must stay at or below alpha (5%): shown with its Wilson
  interval.
- A/B: the treatment converts at 12% against 10%. The design's sample size
  (msprt_sample_size below, 90% power at one look) is the horizon; the share of runs
  promoted by then, and the median exposures (both arms) at the promoting look.
- Clustered A/A: readers, not impressions, are assigned. 2,000 readers (about 1,000 per
  arm) each see 1 + Poisson(9) books (mean 10) and click each with their own propensity
  drawn from Beta(0.3, 2.7) (mean 10%, intra-reader correlation 0.25); 100 looks. The
  false-promotion rate with the delta-method (cluster-robust) variance the evaluation uses,
  beside the rate the binomial variance (impressions as independent) would give, each
  with its Wilson interval; and how each variance compares with the spread of the final
  effect estimate across runs.
- SRM: 50,000 exposures split 55/45 instead of 50/50; the share flagged by the chi-square
  check (and, as a control, the share flagged at a true 50/50 split). Then a fair 50/50
  split of 6,000 readers with ~10 impressions each: false alarms when the check counts
  impressions against when it counts readers (what the evaluation does).

Prints a JSON summary and writes it to benchmarks/results/ab.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: import this repository's models

from models.ab import (  # noqa: E402
    Look,
    ReaderSums,
    always_valid_half_width,
    msprt_statistic,
    sequential_test,
    srm_check,
)
from models.intervals import wilson_interval  # noqa: E402

ALPHA = 0.05
TAU2 = 1e-4  # the settings' default mixture variance
LOOKS = 100


# --- planning: the design's sample sizes (the benchmark's horizon) ---------------------


def sample_size_per_arm(
    p_control: float, p_treatment: float, alpha: float = 0.05, power: float = 0.9
) -> int:
    """Fixed-horizon two-sided sample size per arm (the design's planning figure)."""
    z_a = stats.norm.ppf(1 - alpha / 2)
    z_b = stats.norm.ppf(power)
    variance = p_control * (1 - p_control) + p_treatment * (1 - p_treatment)
    delta = p_treatment - p_control
    if delta == 0:
        raise ValueError("p_control and p_treatment must differ")
    return math.ceil((z_a + z_b) ** 2 * variance / delta**2)


def msprt_sample_size(
    p_control: float, p_treatment: float, tau2: float, alpha: float = 0.05, power: float = 0.9
) -> int:
    """Exposures per arm at which the mSPRT rejects with probability ``power`` at that look.

    The test rejects once |theta_hat| passes the always-valid half-width c(V), so at one
    look the power is about Phi((|theta| - c(V_n)) / sqrt(V_n)); earlier looks only add to it.
    V here is binomial: with several exposures per reader, the clustered variance is larger
    by the design effect, and so is the sample needed.
    """
    delta = abs(p_treatment - p_control)
    if delta == 0:
        raise ValueError("p_control and p_treatment must differ")
    spread = p_control * (1 - p_control) + p_treatment * (1 - p_treatment)

    def achieved(n: int) -> float:
        variance = spread / n
        return float(stats.norm.cdf((delta - always_valid_half_width(variance, tau2, alpha))
                                    / math.sqrt(variance)))

    high = 16
    while achieved(high) < power:
        high *= 2
    low = high // 2
    while low + 1 < high:  # smallest n reaching the power: bisection
        mid = (low + high) // 2
        low, high = (mid, high) if achieved(mid) < power else (low, mid)
    return high


def run_experiment(
    rng: np.random.Generator, p_control: float, p_treatment: float, n_per_arm: int
) -> int | None:
    """Exposures (both arms) at the look that promotes, or None if it never does."""
    step = max(n_per_arm // LOOKS, 1)
    x_c = np.cumsum(rng.binomial(step, p_control, LOOKS))
    x_t = np.cumsum(rng.binomial(step, p_treatment, LOOKS))
    looks = [Look(i, step * (i + 1), int(x_c[i]), step * (i + 1), int(x_t[i]))
             for i in range(LOOKS)]
    # The running p-value only falls, so the first look below alpha is where the flow,
    # evaluating after each batch, would have decided.
    history = sequential_test(looks, TAU2, ALPHA).history
    for i, (_, effect, p_value, _, _) in enumerate(history):
        if p_value <= ALPHA:
            return 2 * looks[i].n_control if effect > 0 else None
    return None


def aa_figure(rng: np.random.Generator, runs: int, n_per_arm: int) -> dict[str, object]:
    promoted = sum(run_experiment(rng, 0.10, 0.10, n_per_arm) is not None for _ in range(runs))
    low, high = wilson_interval(promoted, runs)
    return {"runs": runs, "looks": LOOKS, "exposures_per_arm": n_per_arm,
            "false_promotions": promoted, "rate": promoted / runs,
            "wilson_95": [round(low, 4), round(high, 4)], "alpha": ALPHA}


CLUSTER_READERS = 2_000
PROPENSITY = (0.3, 2.7)  # Beta(a, b): mean a / (a + b) = 0.1, correlation 1 / (a + b + 1)


def clustered_experiment(
    rng: np.random.Generator,
) -> tuple[dict[str, bool], float, dict[str, float]]:
    """One clustered A/A run: promoted? per variance, final effect, final variance per kind."""
    arm = rng.integers(0, 2, CLUSTER_READERS)
    m = 1 + rng.poisson(9, CLUSTER_READERS)
    c = rng.binomial(m, rng.beta(*PROPENSITY, CLUSTER_READERS))
    cuts = np.arange(1, LOOKS + 1) * CLUSTER_READERS // LOOKS - 1
    columns = []
    for variant in (0, 1):
        inside = arm == variant
        columns.append([np.cumsum(v * inside)[cuts]
                        for v in (m, c, np.ones_like(m), m * m, c * c, m * c)])
    promoted, final_variance, effect = {}, {}, 0.0
    for kind in ("delta", "binomial"):
        looks = []
        for i in range(LOOKS):
            (n_c, x_c, *s_c), (n_t, x_t, *s_t) = ([int(v[i]) for v in col] for col in columns)
            sums = kind == "delta"
            looks.append(Look(i, n_c, x_c, n_t, x_t, ReaderSums(*s_c) if sums else None,
                              ReaderSums(*s_t) if sums else None))
        result = sequential_test(looks, TAU2, ALPHA)
        promoted[kind] = next((e > 0 for _, e, p, _, _ in result.history if p <= ALPHA), False)
        effect = result.effect
        final_variance[kind] = msprt_statistic(
            looks[-1].x_control, looks[-1].n_control, looks[-1].x_treatment,
            looks[-1].n_treatment, TAU2, looks[-1].sums_control, looks[-1].sums_treatment)[1]
    return promoted, effect, final_variance


def clustered_aa_figure(rng: np.random.Generator, runs: int) -> dict[str, object]:
    promoted = {"delta": 0, "binomial": 0}
    effects, variances = [], {"delta": [], "binomial": []}
    for _ in range(runs):
        run, effect, variance = clustered_experiment(rng)
        effects.append(effect)
        for kind in promoted:
            promoted[kind] += run[kind]
            variances[kind].append(variance[kind])
    spread = float(np.var(effects))
    a, b = PROPENSITY
    figure: dict[str, object] = {
        "runs": runs, "looks": LOOKS, "readers": CLUSTER_READERS,
        "impressions_per_reader": "1 + Poisson(9)", "propensity": f"Beta({a}, {b})",
        "intra_reader_correlation": round(1 / (a + b + 1), 3), "alpha": ALPHA,
    }
    for kind, count in promoted.items():
        low, high = wilson_interval(count, runs)
        figure[kind] = {"false_promotions": count, "rate": count / runs,
                        "wilson_95": [round(low, 4), round(high, 4)],
                        "mean_variance_over_empirical": round(
                            float(np.mean(variances[kind])) / spread, 3)}
    return figure


def ab_figure(rng: np.random.Generator, runs: int) -> dict[str, object]:
    planned = msprt_sample_size(0.10, 0.12, TAU2, ALPHA, 0.9)
    needed = [run_experiment(rng, 0.10, 0.12, planned) for _ in range(runs)]
    wins = [n for n in needed if n is not None]
    low, high = wilson_interval(len(wins), runs)
    return {"runs": runs, "p_control": 0.10, "p_treatment": 0.12,
            "planned_exposures_per_arm": planned,
            "fixed_horizon_per_arm": sample_size_per_arm(0.10, 0.12, ALPHA, 0.9),
            "promoted": len(wins), "rate": len(wins) / runs,
            "wilson_95": [round(low, 4), round(high, 4)],
            "median_exposures_to_promote": statistics.median(wins) if wins else None}


def srm_figure(rng: np.random.Generator, runs: int) -> dict[str, object]:
    total = 50_000
    skewed = sum(srm_check([int(c), total - int(c)], [0.5, 0.5]).mismatch
                 for c in rng.binomial(total, 0.55, runs))
    fair = sum(srm_check([int(c), total - int(c)], [0.5, 0.5]).mismatch
               for c in rng.binomial(total, 0.50, runs))
    readers = 6_000
    by_impressions = by_readers = 0
    for _ in range(runs):
        control = rng.random(readers) < 0.5
        shown = 1 + rng.poisson(9, readers)
        n_control = int(control.sum())
        by_readers += srm_check([n_control, readers - n_control], [0.5, 0.5]).mismatch
        by_impressions += srm_check([int(shown[control].sum()), int(shown[~control].sum())],
                                    [0.5, 0.5]).mismatch
    return {"runs": runs, "exposures": total, "skewed_share": 0.55,
            "detected": skewed / runs, "false_alarms_at_50_50": fair / runs,
            "threshold_p": 0.001,
            "fair_reader_split": {"readers": readers, "impressions_per_reader": "1 + Poisson(9)",
                                  "false_alarms_counting_impressions": by_impressions / runs,
                                  "false_alarms_counting_readers": by_readers / runs}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    began = time.perf_counter()
    ab = ab_figure(rng, args.runs)
    summary = {
        "a_a": aa_figure(rng, args.runs, int(ab["planned_exposures_per_arm"])),  # type: ignore[call-overload]
        "a_b": ab,
        "srm": srm_figure(rng, args.runs),
        "clustered_a_a": clustered_aa_figure(rng, args.runs),
        "seconds": 0.0,
    }
    summary["seconds"] = round(time.perf_counter() - began, 1)
    text = json.dumps(summary, indent=2)
    print(text)
    out = REPO / "benchmarks" / "results" / "ab.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
