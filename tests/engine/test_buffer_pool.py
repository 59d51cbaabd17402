"""The generator-input pool: arrays are reused, never shared, and never leak a previous batch."""

import threading
import time

import numpy as np

from p2phd.engine.core.buffer_pool import BufferPool
from p2phd.engine.core.quality import synthetic_maps
from p2phd.engine.core.renderer import Renderer
from p2phd.engine.core.style import Style


def test_a_returned_array_is_handed_out_again_for_its_item_shape_and_dtype_only():
    pool = BufferPool()
    a = pool.take((2, 3, 4), np.float32)
    pool.give(a)
    assert pool.take((2, 3, 5), np.float32) is not a
    assert pool.take((2, 3, 4), np.float16) is not a
    assert pool.take((3, 3, 4), np.float32) is not a  # too few items
    again = pool.take((2, 3, 4), np.float32)
    assert again is a or again.base is a
    assert pool.take((2, 3, 4), np.float32).base is not a  # taken: not handed out twice


def test_a_smaller_batch_gets_the_leading_part_of_the_smallest_array_that_holds_it():
    pool = BufferPool()
    eight, four = pool.take((8, 3, 4), np.float32), pool.take((4, 3, 4), np.float32)
    pool.give(eight)
    pool.give(four)
    two = pool.take((2, 3, 4), np.float32)
    assert two.shape == (2, 3, 4) and two.flags.c_contiguous and two.base is four
    pool.give(two)  # the whole array goes back
    assert pool.take((4, 3, 4), np.float32) is four


def test_the_pool_holds_at_most_its_byte_bound_dropping_the_oldest():
    pool = BufferPool(max_bytes=2 * 8 * 4)
    arrays = [pool.take((8,), np.float32) for _ in range(3)]
    for a in arrays:
        pool.give(a)
    again = [pool.take((8,), np.float32) for _ in range(3)]
    assert [any(b is a for b in again) for a in arrays] == [False, True, True]
    big = np.empty((32,), np.float32)  # larger than the bound on its own: not kept
    pool.give(big)
    assert pool.take((32,), np.float32) is not big


def test_concurrent_takers_never_share_an_array():
    pool = BufferPool()
    for _ in range(4):
        pool.give(np.empty((4,), np.int64))
    clashes = []

    def use(me: int) -> None:
        for _ in range(200):
            a = pool.take((4,), np.int64)
            a[:] = me
            time.sleep(0)  # let the others run while this array is held
            if (a != me).any():
                clashes.append(me)
            pool.give(a)

    threads = [threading.Thread(target=use, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clashes == []


def test_reused_inputs_render_what_a_fresh_renderer_renders(tiny_package_source):
    """Batches of one image shape share pooled input arrays (a smaller batch the leading part
    of a larger one's): each must render as if it were the renderer's first."""
    busy = Renderer(tiny_package_source, "onnxruntime", "fp32")
    batches = [synthetic_maps(n, 32, 64, 35, seed=s) for s, n in enumerate((3, 2, 3, 1))]
    for labels, instances in batches:  # fills the pool with these batches' inputs
        busy.render(labels, instances, [Style(seed=5)] * len(labels))
    for labels, instances in reversed(batches):
        styles = [Style(seed=6)] * len(labels)
        fresh = Renderer(tiny_package_source, "onnxruntime", "fp32")
        assert np.array_equal(
            busy.render(labels, instances, styles), fresh.render(labels, instances, styles)
        )
