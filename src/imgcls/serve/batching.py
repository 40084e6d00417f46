"""Dynamic batching: images from requests that arrive together share one forward pass.

Request handlers put preprocessed images on an asyncio queue and await a future each. One
gatherer task takes whatever is waiting (up to ``max_batch``), waits a few milliseconds for more
when that is less than a full batch, and runs the forward pass in a worker thread so the event
loop keeps accepting requests meanwhile. While one batch runs, the next one fills up.

With ``parallel`` > 1 (one single-threaded forward pass per core on a CPU) up to that many batches run
at once, each on its own thread: no core waits for another inside an operator, and a core that is
decoding uploads does not stall a forward pass mid-operator.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

log = logging.getLogger(__name__)


class MicroBatcher:
    """Gathers single images into batches for ``forward`` (a batch tensor -> probabilities array)."""

    def __init__(self, forward: Callable[[torch.Tensor], np.ndarray], max_batch: int = 32, max_wait_ms: float = 5.0,
                 parallel: int = 1):
        self.forward, self.max_batch, self.max_wait = forward, max(1, max_batch), max(0.0, max_wait_ms) / 1000
        self.parallel = max(1, parallel)
        self.queue: asyncio.Queue[tuple[torch.Tensor, asyncio.Future]] | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.task: asyncio.Task | None = None
        self.running: set[asyncio.Task] = set()
        self.batches = self.images = 0

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="imgcls-forward")
        self.task = asyncio.create_task(self._run(), name="imgcls-batcher")

    async def stop(self) -> None:
        for task in [self.task, *self.running]:
            if task:
                task.cancel()
        await asyncio.gather(*(t for t in [self.task, *self.running] if t), return_exceptions=True)
        if self.executor:
            self.executor.shutdown(wait=True, cancel_futures=True)

    async def predict(self, images: list[torch.Tensor]) -> np.ndarray:
        """Probabilities (N, classes) for preprocessed images (3, H, W), batched with other requests'."""
        assert self.queue is not None, "start() the batcher first"
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in images]
        for image, future in zip(images, futures):
            self.queue.put_nowait((image, future))
        return np.stack(await asyncio.gather(*futures))

    async def _gather(self) -> list[tuple[torch.Tensor, asyncio.Future]]:
        assert self.queue is not None
        items = [await self.queue.get()]
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while len(items) < self.max_batch:
            if not self.queue.empty():
                items.append(self.queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                items.append(await asyncio.wait_for(self.queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return [(image, future) for image, future in items if not future.done()]  # callers that gave up

    async def _run(self) -> None:
        slots = asyncio.Semaphore(self.parallel)
        while True:
            await slots.acquire()  # a batch is gathered only when a forward thread is free to take it
            items = await self._gather()
            if not items:
                slots.release()
                continue
            task = asyncio.create_task(self._forward(items, slots))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def _forward(self, items: list[tuple[torch.Tensor, asyncio.Future]], slots: asyncio.Semaphore) -> None:
        try:
            batch = torch.stack([image for image, _ in items])
            probs = await asyncio.get_running_loop().run_in_executor(self.executor, self.forward, batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one failed batch fails its requests, not the server
            log.exception("forward pass failed for a batch of %d", len(items))
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            slots.release()
        self.batches += 1
        self.images += len(items)
        for (_, future), row in zip(items, probs):
            if not future.done():
                future.set_result(row)
