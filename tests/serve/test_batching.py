"""The micro-batcher: images that arrive together share forward passes; a failing pass fails only its requests."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from imgcls.serve.batching import MicroBatcher


def _recording_forward(sizes: list[int]):  # noqa: ANN202
    def forward(batch: torch.Tensor) -> np.ndarray:
        sizes.append(len(batch))
        return batch.flatten(1)[:, :2].numpy() * 2  # a per-image answer, to check results go to their caller

    return forward


def _images(count: int) -> list[torch.Tensor]:
    return [torch.full((3, 2, 2), float(i)) for i in range(count)]


def test_concurrent_requests_share_batches_and_get_their_own_answers():
    sizes: list[int] = []

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(_recording_forward(sizes), max_batch=4, max_wait_ms=50)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.predict([image]) for image in _images(10)))
        finally:
            await batcher.stop()

    answers = asyncio.run(scenario())
    assert sizes == [4, 4, 2]
    assert [float(a[0, 0]) for a in answers] == [2.0 * i for i in range(10)]


def test_parallel_forward_threads_run_batches_at_once_and_answer_each_request():
    import threading
    import time

    running, most = [0], [0]
    lock = threading.Lock()

    def slow_forward(batch: torch.Tensor) -> np.ndarray:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)  # long enough for the next batch to be gathered meanwhile
        with lock:
            running[0] -= 1
        return batch.flatten(1)[:, :2].numpy() * 2

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(slow_forward, max_batch=2, max_wait_ms=1, parallel=2)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.predict([image]) for image in _images(8)))
        finally:
            await batcher.stop()

    answers = asyncio.run(scenario())
    assert most[0] == 2  # two batches in flight, never more
    assert [float(a[0, 0]) for a in answers] == [2.0 * i for i in range(8)]


def test_a_lone_request_is_not_held_longer_than_the_wait():
    sizes: list[int] = []

    async def scenario() -> float:
        batcher = MicroBatcher(_recording_forward(sizes), max_batch=32, max_wait_ms=20)
        await batcher.start()
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batcher.predict(_images(3))
        elapsed = loop.time() - start
        await batcher.stop()
        return elapsed

    assert asyncio.run(scenario()) < 2.0  # 20 ms of waiting plus scheduling on a busy machine
    assert sizes == [3]


def test_a_failing_forward_fails_its_requests_and_the_next_batch_still_runs():
    calls = {"n": 0}

    def flaky(batch: torch.Tensor) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("out of memory")
        return np.ones((len(batch), 2))

    async def scenario() -> np.ndarray:
        batcher = MicroBatcher(flaky, max_batch=8, max_wait_ms=1)
        await batcher.start()
        try:
            with pytest.raises(RuntimeError, match="out of memory"):
                await batcher.predict(_images(2))
            return await batcher.predict(_images(2))
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()).shape == (2, 2)


def test_without_a_wait_what_queues_during_a_forward_pass_still_goes_in_one_batch():
    """The CPU default (no wait): the first request runs at once, alone; those that came meanwhile share the next."""
    import time

    sizes: list[int] = []
    record = _recording_forward(sizes)

    def slow_forward(batch: torch.Tensor) -> np.ndarray:
        time.sleep(0.1)
        return record(batch)

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(slow_forward, max_batch=8, max_wait_ms=0)
        await batcher.start()
        try:
            first = asyncio.create_task(batcher.predict(_images(1)))
            await asyncio.sleep(0.03)  # the first forward pass is running
            rest = [asyncio.create_task(batcher.predict([image])) for image in _images(5)]
            return await asyncio.gather(first, *rest)
        finally:
            await batcher.stop()

    answers = asyncio.run(scenario())
    assert sizes == [1, 5]
    assert [float(a[0, 0]) for a in answers] == [0.0, *(2.0 * i for i in range(5))]
