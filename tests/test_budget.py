"""Planning an adaptation run to a time budget: pure arithmetic over measured speeds."""

from __future__ import annotations

import pytest

from ragtune.budget import MAX_PER_CHUNK, SAFETY, Speeds, plan_budget
from ragtune.errors import InputError

SPEEDS = Speeds(query_s=1.5, encode_per_s=30.0, search_s=0.02)


def total(plan) -> float:
    return sum(plan.seconds.values())


def test_a_plan_fits_its_budget_and_a_bigger_budget_buys_more():
    plans = [plan_budget(m * 60, eligible_chunks=20_000, total_chunks=20_000, speeds=SPEEDS) for m in (30, 60, 120)]
    for minutes, p in zip((30, 60, 120), plans):
        assert total(p) <= minutes * 60 * SAFETY + 1e-6
        assert total(p) >= minutes * 60 * SAFETY * 0.95  # and spends it (within rounding to whole queries)
    assert plans[0].queries < plans[1].queries < plans[2].queries


def test_distinct_chunks_come_before_several_queries_per_chunk():
    few = plan_budget(120 * 60, eligible_chunks=300, total_chunks=300, speeds=SPEEDS)
    many = plan_budget(120 * 60, eligible_chunks=50_000, total_chunks=50_000, speeds=SPEEDS)
    assert many.per_chunk == 1 and many.chunks == many.queries < 50_000
    assert few.chunks == 300 and few.per_chunk == MAX_PER_CHUNK and few.queries == 300 * MAX_PER_CHUNK


def test_training_extras_cost_queries():
    plain = plan_budget(60 * 60, 20_000, 20_000, SPEEDS)
    full = plan_budget(60 * 60, 20_000, 20_000, SPEEDS, teacher=True, reranker=True)
    assert full.queries < plain.queries and full.seconds["training"] > plain.seconds["training"] * full.queries / plain.queries


def test_a_budget_below_the_fixed_costs_names_the_minimum():
    # 200,000 chunks at 30/s: re-indexing alone takes 111 minutes.
    with pytest.raises(InputError, match=r"re-indexing 200000 chunks \(111\.1 min.*at least 1\d\d minutes"):
        plan_budget(60 * 60, 200_000, 200_000, SPEEDS)
    with pytest.raises(InputError, match="no chunk is long enough"):
        plan_budget(60 * 60, 0, 10, SPEEDS)


def test_the_gates_probes_are_paid_for_before_the_training_queries():
    speeds = Speeds(query_s=2.0, encode_per_s=100.0, search_s=0.01)
    without = plan_budget(3600, 10_000, 5_000, speeds)
    with_probes = plan_budget(3600, 10_000, 5_000, speeds, probes=60)
    assert with_probes.queries < without.queries  # ~60 probes' writing fewer training queries
    assert without.queries - with_probes.queries == pytest.approx(60 * 2.02 / 2.0, rel=0.3)
    assert with_probes.seconds["evaluate"] > without.seconds["evaluate"]
