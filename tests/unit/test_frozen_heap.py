"""`FrozenHeap`: the collector is tuned while the app runs and put back afterwards."""

from __future__ import annotations

import gc

from building_blocks.fastapi import FrozenHeap


async def test_start_freezes_and_raises_the_threshold_close_restores_both() -> None:
    before = gc.get_threshold()
    heap = FrozenHeap(young_threshold=12_345)
    await heap.start()
    try:
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (12_345, *before[1:])
    finally:
        await heap.close()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


async def test_none_keeps_the_interpreters_threshold() -> None:
    before = gc.get_threshold()
    heap = FrozenHeap(young_threshold=None)
    await heap.start()
    try:
        assert gc.get_threshold() == before
    finally:
        await heap.close()
