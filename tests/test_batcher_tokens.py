"""Dynamic batching by a token budget: a batch holds as many items as fit in rows x longest row."""

from __future__ import annotations

import asyncio

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ernie_tiny.deploy.batcher import BatchItem, DynamicBatcher, items_within_budget
from ernie_tiny.tokenization.encoding import Encoding, TokenSpan


def fake_encoding(length: int) -> Encoding:
    return Encoding(tokens=["x"] * length, input_ids=[5] * length, token_type_ids=[0] * length,
                    spans=[TokenSpan(0, i, i + 1) for i in range(length)])


@given(st.lists(st.integers(1, 200), min_size=1, max_size=40), st.integers(1, 16), st.integers(1, 2000))
def test_a_batch_is_the_longest_prefix_within_the_budget(lengths, max_items, max_tokens):
    count = items_within_budget(lengths, max_items, max_tokens)
    assert 1 <= count <= min(max_items, len(lengths))
    if count > 1:
        assert count * max(lengths[:count]) <= max_tokens
    if count < min(max_items, len(lengths)):  # stopped by the budget: one more would not fit
        assert (count + 1) * max(lengths[:count + 1]) > max_tokens
    assert items_within_budget(lengths, max_items, None) == min(max_items, len(lengths))


def test_the_batcher_cuts_batches_at_the_token_budget_and_answers_in_order():
    calls: list[list[int]] = []

    def run(encodings: list[Encoding]) -> dict[str, np.ndarray]:
        calls.append([len(e) for e in encodings])
        return {"length": np.array([len(e) for e in encodings])}

    lengths = [10, 10, 10, 40, 10, 10, 120, 5]

    async def scenario() -> list[int]:
        batcher = DynamicBatcher(run, max_batch=32, max_wait_s=0.5, call_cost_tokens=1e9, max_batch_tokens=64)
        batcher.start()
        answer = await batcher.submit(lambda: [BatchItem(fake_encoding(n), lambda out, row: int(out["length"][row]))
                                               for n in lengths])
        await batcher.close()
        return answer

    assert asyncio.run(scenario()) == lengths
    # 3 x 10 fits; a 4th row of 40 would make 4 x 40; 40 + 10 -> 2 x 40 > 64; 120 alone (over budget, still runs)
    assert calls == [[10, 10, 10], [40], [10, 10], [120], [5]]
