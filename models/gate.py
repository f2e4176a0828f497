"""The registry gate: which alias, if any, a newly trained model version earns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GateDecision:
    """The alias to give the new version (None: register it but alias nothing) and why."""

    alias: str | None
    reason: str


def decide_alias(
    candidate_ndcg: float,
    popularity_ndcg: float,
    champion_ndcg: float | None,
    margin: float,
    refresh: bool = False,
) -> GateDecision:
    """Apply the gate on one test split's NDCG@k.

    The candidate must beat popularity; with no champion it becomes champion; otherwise it
    becomes challenger unless it is worse than the champion by more than ``margin``
    (relative), so an A/B test decides between them. A ``refresh`` (the champion's own
    configuration fitted on newer data) replaces the champion directly: what an A/B test
    would judge is the configuration, and that one already won.
    """
    if candidate_ndcg <= popularity_ndcg:
        return GateDecision(None, f"NDCG {candidate_ndcg:.4f} does not beat popularity "
                                  f"({popularity_ndcg:.4f}); no alias given")
    if champion_ndcg is None:
        return GateDecision("champion", f"no champion yet; NDCG {candidate_ndcg:.4f} beats "
                                        f"popularity ({popularity_ndcg:.4f})")
    floor = champion_ndcg * (1 - margin)
    if candidate_ndcg < floor:
        return GateDecision(None, f"NDCG {candidate_ndcg:.4f} is worse than the champion's "
                                  f"{champion_ndcg:.4f} by more than {margin:.0%}; "
                                  "no alias given")
    if refresh:
        return GateDecision("champion", f"the champion's configuration on newer data "
                                        f"(NDCG {candidate_ndcg:.4f}, popularity "
                                        f"{popularity_ndcg:.4f}): it replaces the champion")
    return GateDecision("challenger", f"NDCG {candidate_ndcg:.4f} vs champion "
                                      f"{champion_ndcg:.4f} (margin {margin:.0%}); an A/B "
                                      "test decides")
