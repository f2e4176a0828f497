"""A/B evaluation: the experiment design, measurement from events, and the sequential test.

Plain Python (numpy/scipy only, no Prefect): the evaluation flow, the benchmarks and the
tests call the same functions.

The assignment of readers to variants is ``serving.experiments`` (a hash of salt and user
id), stored under ``{p}experiment:{name}``. What only the evaluation needs (minimum sample,
maximum duration, primary metric, guardrails, alpha, attribution window) is an
``ExperimentDesign`` stored as JSON beside it under ``{p}experiment:{name}:design`` (names
cannot contain ':', so the two keys never collide)::

    {"alpha": 0.05, "attribution_window_s": 3600.0, "control": "control",
     "guardrails": [{"event_type": "rating", "max_relative_drop": 0.2}],
     "max_duration_s": 1209600.0, "min_sample": 1000, "mixture_variance": 0.0001,
     "primary_metric": ["click", "add_to_shelf", "rating"], "srm_threshold": 0.001,
     "treatment": "treatment"}

Measurement: an exposure is the first impression of a (reader, book) pair in a variant; it
converts on a primary event for the same reader and book in the same variant within the
attribution window after the impression. The conversion rate per exposure is the primary
metric; each guardrail is the same rate for one interaction type.

Readers, not impressions, are randomised: a visit shows about ten books to one reader, and a
reader who clicks readily does so across the visit. So the sample-ratio check counts distinct
exposed readers per arm, and the variance of an arm's rate r = C / M (C conversions over M
exposures, from N readers with m_i exposures and c_i conversions each) is the delta-method
(cluster-robust) one for a ratio of sums:

    Var(r) = N / (N - 1) * sum_i (c_i - r m_i)^2 / M^2

With one exposure per reader it is the binomial r(1-r)/M times N/(N-1); treating clustered
impressions as independent would understate it by about the design effect
1 + (m - 1) * ICC and inflate both the SRM alarms and the mSPRT's false positives.

The sequential test is the normal-mixture mSPRT of Johari, Koomen, Pekelis and Walsh
("Always valid inference", 2017/2022) for the difference of two rates
theta = p_treatment - p_control. With the plug-in variance V = Var(r_c) + Var(r_t) (the
binomial p_c(1-p_c)/n_c + p_t(1-p_t)/n_t when no per-reader sums are known) and mixture
variance tau^2 its likelihood ratio is

    Lambda = sqrt(V / (V + tau^2)) * exp(theta_hat^2 * tau^2 / (2 V (V + tau^2)))

The always-valid p-value is the running minimum of min(1, 1/Lambda) over the looks, and the
always-valid interval is the running intersection of
theta_hat +- sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha) + log((V + tau^2) / V))),
so looking after every batch of events does not inflate the false-positive rate.

One module per idea: ``design``, ``measurement``, ``statistics`` and ``decision``;
everything is importable from ``models.ab``.
"""

from __future__ import annotations

from models.ab.decision import (
    Decision,
    GuardrailResult,
    check_guardrails,
    decide,
    srm_counts,
)
from models.ab.design import (
    Action,
    EventLike,
    ExperimentDesign,
    Guardrail,
    InvalidDesignError,
    design_key,
)
from models.ab.measurement import (
    ArmMeasure,
    Look,
    Measurement,
    ReaderSums,
    measure,
)
from models.ab.statistics import (
    SequentialResult,
    SrmResult,
    always_valid_half_width,
    carry_over,
    looks_key,
    msprt_statistic,
    ratio_variance,
    sequential_test,
    srm_check,
)

__all__ = [
    "Action",
    "ArmMeasure",
    "Decision",
    "EventLike",
    "ExperimentDesign",
    "Guardrail",
    "GuardrailResult",
    "InvalidDesignError",
    "Look",
    "Measurement",
    "ReaderSums",
    "SequentialResult",
    "SrmResult",
    "always_valid_half_width",
    "carry_over",
    "check_guardrails",
    "decide",
    "design_key",
    "looks_key",
    "measure",
    "msprt_statistic",
    "ratio_variance",
    "sequential_test",
    "srm_check",
    "srm_counts",
]
