"""The dynamic batcher on its own, with a recording engine callable in place of a renderer."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from p2phd.common.errors import BackendUnavailable, ConfigError, DeadlineExceeded, Overloaded
from p2phd.engine.serving.batcher import BatcherConfig, DynamicBatcher


class RecordingEngine:
    """Doubles each payload; records every batch; can be held (blocked) or made to fail."""

    def __init__(self, fail_on=None):
        self.batches: list[list] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_on = fail_on

    def __call__(self, payloads):
        self.batches.append(list(payloads))
        self.entered.set()
        self.gate.wait(10)
        if self.fail_on is not None and self.fail_on in payloads:
            raise RuntimeError(f"engine failure on {self.fail_on!r}")
        return [p * 2 for p in payloads]

    def seen(self):
        return [p for b in self.batches for p in b]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def _started(engine, **cfg):
    b = DynamicBatcher(engine, BatcherConfig(**cfg))
    b.start()
    return b


def batched(requests, **cfg):
    """(key, payload) requests submitted together to a batcher over a RecordingEngine: the
    engine (its batches) and the results, in request order."""

    async def main():
        engine = RecordingEngine()
        b = await _started(engine, **cfg)
        results = await asyncio.gather(*(b.submit(key, payload) for key, payload in requests))
        await b.close()
        return engine, results

    return run(main())


async def _wait_entered(engine):
    await asyncio.get_running_loop().run_in_executor(None, engine.entered.wait, 10)


def test_concurrent_requests_share_batches_up_to_max_batch_size():
    requests = [("k", i) for i in range(8)]
    engine, results = batched(requests, max_batch_size=4, max_queue_delay_us=200_000)
    assert results == [2 * i for i in range(8)]
    assert [len(x) for x in engine.batches] == [4, 4]


def test_requests_batch_only_with_the_same_key():
    requests = [(k, (k, i)) for i, k in enumerate(["a", "b"] * 4)]
    engine, results = batched(requests, max_batch_size=8, max_queue_delay_us=50_000)
    assert results == [(k, i) * 2 for i, k in enumerate(["a", "b"] * 4)]
    for batch in engine.batches:
        assert len({p[0] for p in batch}) == 1
    assert sorted(len(x) for x in engine.batches) == [4, 4]


def test_preferred_batch_size_dispatches_without_waiting_for_the_delay():
    # With a 60 s delay and no preferred size this would hang past run's 30 s limit.
    engine, results = batched(
        [("k", 1), ("k", 2)],
        max_batch_size=8,
        max_queue_delay_us=60_000_000,
        preferred_batch_sizes=(2,),
    )
    assert results == [2, 4]
    assert engine.batches == [[1, 2]]


def test_a_partial_batch_goes_out_when_the_queue_delay_ends():
    engine, results = batched(
        [("k", i) for i in range(3)], max_batch_size=8, max_queue_delay_us=1000
    )
    assert results == [0, 2, 4]
    assert engine.batches == [[0, 1, 2]]


def test_full_queue_raises_overloaded_at_once_and_queued_work_still_completes():
    async def main():
        engine = RecordingEngine()
        engine.gate.clear()
        b = await _started(engine, max_batch_size=1, max_queue_delay_us=0, max_queue=2)
        first = asyncio.ensure_future(b.submit("k", 0))
        await _wait_entered(engine)  # the engine holds request 0; the queue is empty again
        queued = [asyncio.ensure_future(b.submit("k", i)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        assert b.depth == 2
        with pytest.raises(Overloaded, match="queue is full"):
            await b.submit("k", 3)
        engine.gate.set()
        results = await asyncio.gather(first, *queued)
        await b.close()
        return engine, results

    engine, results = run(main())
    assert results == [0, 2, 4]
    assert 3 not in engine.seen()


def test_expired_requests_never_reach_the_engine():
    async def main():
        engine = RecordingEngine()
        engine.gate.clear()
        b = await _started(engine, max_batch_size=4, max_queue_delay_us=0)
        first = asyncio.ensure_future(b.submit("k", 0))
        await _wait_entered(engine)
        short = [
            asyncio.ensure_future(b.submit("k", i, deadline=time.monotonic() + 0.05))
            for i in (1, 2)
        ]
        await asyncio.sleep(0.2)  # their deadlines pass while the engine is busy
        engine.gate.set()
        await first
        outcomes = await asyncio.gather(*short, return_exceptions=True)
        late = await b.submit("k", 3, deadline=time.monotonic() + 10)
        await b.close()
        return engine, outcomes, late

    engine, outcomes, late = run(main())
    assert all(isinstance(o, DeadlineExceeded) for o in outcomes)
    assert late == 6
    assert engine.seen() == [0, 3]


def test_cancelled_callers_leave_the_queue_and_never_reach_the_engine():
    async def main():
        engine = RecordingEngine()
        engine.gate.clear()
        b = await _started(engine, max_batch_size=4, max_queue_delay_us=0)
        first = asyncio.ensure_future(b.submit("k", 0))
        await _wait_entered(engine)
        gone = asyncio.ensure_future(b.submit("k", 1))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0.01)
        depth_after_cancel = b.depth
        engine.gate.set()
        await first
        after = await b.submit("k", 2)
        await b.close()
        return engine, depth_after_cancel, after

    engine, depth, after = run(main())
    assert depth == 0
    assert after == 4
    assert engine.seen() == [0, 2]


def test_an_engine_error_fails_only_its_own_batch():
    async def main():
        engine = RecordingEngine(fail_on="bad")
        b = await _started(engine, max_batch_size=4, max_queue_delay_us=50_000)
        outcomes = await asyncio.gather(
            b.submit("x", "bad"), b.submit("x", "a"), b.submit("y", "b"), return_exceptions=True
        )
        later = await b.submit("x", "c")
        await b.close()
        return outcomes, later

    outcomes, later = run(main())
    assert isinstance(outcomes[0], RuntimeError) and isinstance(outcomes[1], RuntimeError)
    assert "engine failure" in str(outcomes[0])
    assert outcomes[2] == "bb"
    assert later == "cc"


def test_event_loop_stays_responsive_while_the_engine_is_busy():
    async def main():
        engine = RecordingEngine()
        engine.gate.clear()
        b = await _started(engine, max_batch_size=1, max_queue_delay_us=0)
        busy = asyncio.ensure_future(b.submit("k", 1))
        await _wait_entered(engine)
        # Other coroutines (health checks, in the server) still run while the engine blocks.
        ticks = 0
        for _ in range(10):
            await asyncio.sleep(0.001)
            ticks += 1
        still_busy = not busy.done()
        engine.gate.set()
        await busy
        await b.close()
        return ticks, still_busy

    ticks, still_busy = run(main())
    assert ticks == 10 and still_busy


def test_close_finishes_queued_work_then_refuses_new_requests():
    async def main():
        engine = RecordingEngine()
        engine.gate.clear()
        b = await _started(engine, max_batch_size=2, max_queue_delay_us=0)
        pending = [asyncio.ensure_future(b.submit("k", i)) for i in range(5)]
        await _wait_entered(engine)
        closing = asyncio.ensure_future(b.close(timeout=10))
        await asyncio.sleep(0.01)
        with pytest.raises(BackendUnavailable, match="shutting down"):
            await b.submit("k", 99)
        engine.gate.set()
        await closing
        return await asyncio.gather(*pending)

    assert run(main()) == [0, 2, 4, 6, 8]


@pytest.mark.parametrize(
    "cfg",
    [
        {"max_batch_size": 0},
        {"max_queue": 0},
        {"max_queue_delay_us": -1},
        {"max_batch_size": 4, "preferred_batch_sizes": (8,)},
    ],
)
def test_invalid_knobs_are_config_errors(cfg):
    with pytest.raises(ConfigError):
        BatcherConfig(**cfg)


def test_an_exception_returned_as_a_result_fails_only_its_request():
    def engine(payloads):
        return [ValueError(f"bad {p}") if p < 0 else p * 2 for p in payloads]

    async def main():
        b = await _started(engine, max_batch_size=4, max_queue_delay_us=50_000)
        outcomes = await asyncio.gather(
            *(b.submit("k", p) for p in (1, -1, 3)), return_exceptions=True
        )
        await b.close()
        return outcomes

    ok1, bad, ok3 = run(main())
    assert (ok1, ok3) == (2, 6)
    assert isinstance(bad, ValueError) and "bad -1" in str(bad)
