"""The A/B benchmark's planning figures (its horizon), against hand-computed answers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ab.py"


@pytest.fixture(scope="module")
def ab_bench():  # noqa: ANN201 - the benchmark script as a module
    spec = importlib.util.spec_from_file_location("ab_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_size_known_value(ab_bench) -> None:  # noqa: ANN001
    # (1.96 + 1.2816)^2 (0.09 + 0.1056) / 0.02^2 = 5138.2 -> 5139.
    assert ab_bench.sample_size_per_arm(0.10, 0.12, 0.05, 0.9) == 5139


def test_the_sequential_design_needs_more_than_the_fixed_horizon(ab_bench) -> None:  # noqa: ANN001
    fixed = ab_bench.sample_size_per_arm(0.10, 0.12, 0.05, 0.9)
    sequential = ab_bench.msprt_sample_size(0.10, 0.12, 1e-4, 0.05, 0.9)
    # The figure benchmarks/README.md quotes: 9,225 per arm against 5,139.
    assert sequential == 9225 and sequential > fixed
    with pytest.raises(ValueError, match="must differ"):
        ab_bench.msprt_sample_size(0.1, 0.1, 1e-4)
