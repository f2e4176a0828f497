"""The registry gate: which alias, if any, a newly trained model version earns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GateDecision:
    """The alias to give the new version (None: register it but alias nothing) and why."""

    alias: str | None
    reason: str


@dataclass(frozen=True)
class BacktestScore:
    """The served configuration and the best popularity list on the last period."""

    served_ndcg: float
    popularity_name: str
    popularity_ndcg: float

    def loses(self, margin: float) -> bool:
        return self.served_ndcg < self.popularity_ndcg * (1 - margin)

    def describe(self) -> str:
        return (f"on the last period the served configuration scores NDCG "
                f"{self.served_ndcg:.4f} against {self.popularity_name}'s "
                f"{self.popularity_ndcg:.4f}")


def decide_alias(
    candidate_ndcg: float,
    popularity_ndcg: float,
    champion_ndcg: float | None,
    margin: float,
    refresh: bool = False,
    backtest: BacktestScore | None = None,
) -> GateDecision:
    """Apply the gate on one test split's NDCG@k and the backtest on the last period.

    The candidate must beat popularity; with no champion it becomes champion; otherwise it
    becomes challenger unless it is worse than the champion by more than ``margin``
    (relative), so an A/B test decides between them. A ``refresh`` (the champion's own
    configuration fitted on newer data) replaces the champion directly: what an A/B test
    would judge is the configuration, and that one already won.

    The backtest judges what serving faces (what readers did after a cut-off, beside recent
    popularity): when a champion serves, a candidate whose backtest falls below the best
    popularity list by more than ``margin`` gets no alias; the first model is still made
    champion (something must serve) with the shortfall in its reason.
    """
    if candidate_ndcg <= popularity_ndcg:
        return GateDecision(None, f"NDCG {candidate_ndcg:.4f} does not beat popularity "
                                  f"({popularity_ndcg:.4f}); no alias given")
    behind = backtest is not None and backtest.loses(margin)
    if champion_ndcg is None:
        note = (f"; but {backtest.describe()}: it is behind by more than {margin:.0%}"
                if behind else f"; {backtest.describe()}" if backtest else "")
        return GateDecision("champion", f"no champion yet; NDCG {candidate_ndcg:.4f} beats "
                                        f"popularity ({popularity_ndcg:.4f}){note}")
    if behind:
        return GateDecision(None, f"{backtest.describe()}: behind by more than {margin:.0%}; "
                                  "no alias given")
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
