"""Error rates of the A/B evaluation's statistics, measured by simulation.

    .venv/bin/python benchmarks/ab.py [--runs 500] [--seed 7]

Three figures, each over ``--runs`` simulated experiments of Bernoulli conversions (pure
statistics: the decision rules of models/ab.py on binomial counts, no Redis):

- A/A: both arms convert at 10%; the evaluation looks after every 1% of the planned sample
  (100 looks) and promotes when the always-valid p-value falls below alpha with a positive
  effect. The false-promotion rate must stay at or below alpha (5%): shown with its Wilson
  interval.
- A/B: the treatment converts at 12% against 10%. The design's sample size
  (models.ab.msprt_sample_size, 90% power at one look) is the horizon; the share of runs
  promoted by then, and the median exposures (both arms) at the promoting look.
- SRM: 50,000 exposures split 55/45 instead of 50/50; the share flagged by the chi-square
  check (and, as a control, the share flagged at a true 50/50 split).

Prints a JSON summary and writes it to benchmarks/results/ab.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: import this repository's models

from models.ab import (  # noqa: E402
    Look,
    msprt_sample_size,
    sample_size_per_arm,
    sequential_test,
    srm_check,
    wilson_interval,
)

ALPHA = 0.05
TAU2 = 1e-4  # the settings' default mixture variance
LOOKS = 100


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
    return {"runs": runs, "exposures": total, "skewed_share": 0.55,
            "detected": skewed / runs, "false_alarms_at_50_50": fair / runs,
            "threshold_p": 0.001}


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
