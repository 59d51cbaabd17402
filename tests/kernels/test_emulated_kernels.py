"""The CUDA kernels' own source, run on the CPU by an emulation of the launch grid, against the
CPU build, through the same Python host code that launches them on a GPU (`cuda.Kernels`).

Grids are full (one thread per element) or deliberately capped (fewer threads than elements, odd
block sizes), so the kernels' grid-stride loops run several rounds; one emulation runs blocks
and threads in reverse order. Everything the CPU build computes exactly is compared bit for
bit; pooling sums float64 atomics in another order than the CPU build and is compared within
rounding. The same tests run again under AddressSanitizer and UBSan in a child process.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2phd.common.errors import InputError
from p2phd.engine import kernels
from p2phd.engine.core import cuda_runtime
from p2phd.engine.kernels import cubin, cuda
from tests.kernels import emulator
from tests.kernels.driver_double import DriverDouble
from tests.kernels.emulator import device
from tests.kernels.test_cpu_kernels import NP_DTYPES, finite_or_not, instance_maps

SETTINGS = settings(max_examples=15 if emulator.SANITIZE else 40, deadline=None)
# (threads per block, block cap, reversed schedule): a full grid, then capped ones.
GRIDS = [(256, cuda.MAX_BLOCKS, False), (32, 1, False), (7, 3, True), (64, 2, True)]
grids = st.sampled_from(GRIDS)


@pytest.fixture(scope="module")
def library(emulation_library) -> Path:
    return emulation_library


def on_cpu(library, grid) -> tuple[cuda.Kernels, emulator.Emulator]:
    """The host code over the emulation, with the grid geometry `grid`."""
    threads, max_blocks, reverse = grid
    emu = emulator.Emulator(library, reverse=reverse)
    return cuda.Kernels(lambda: emu, threads=threads, max_blocks=max_blocks), emu


def test_every_kernel_the_host_code_launches_exists_with_its_parameter_sizes(library):
    emu = emulator.Emulator(library)
    for name, types in cuda.SIGNATURES.items():
        assert emu.signature(name) == [ctypes.sizeof(t) for t in types], name
    assert emu.signature("p2phd_no_such_kernel") is None


def test_capped_grids_are_capped(library):
    """The capped geometries do launch fewer threads than elements (the grid-stride loops)."""
    k, emu = on_cpu(library, (32, 1, False))
    ids, out = np.zeros((2, 9, 40), np.int32), np.empty((2, 9, 40), np.uint8)
    k.instance_boundaries(device(ids), device(out))
    assert emu.launches == [("p2phd_boundaries", 1, 32)]
    k, emu = on_cpu(library, (256, cuda.MAX_BLOCKS, False))
    k.instance_boundaries(device(ids), device(out))
    assert emu.launches == [("p2phd_boundaries", 3, 256)]


@SETTINGS
@given(instance_maps(), grids, st.sampled_from([0xAB, 0x54]))
def test_emulated_boundaries_equal_cpu(library, maps, grid, poison):
    instances, _ = maps
    k, _ = on_cpu(library, grid)
    out = np.full(instances.shape, poison, np.uint8)
    k.instance_boundaries(device(instances), device(out))
    np.testing.assert_array_equal(out, kernels.instance_boundaries(instances))


@SETTINGS
@given(instance_maps(), st.integers(1, 4), st.booleans(), grids)
def test_emulated_pooling_equals_cpu(library, maps, channels, with_map, grid):
    instances, labels = maps
    inst = kernels.compact_instances(instances, labels)
    b, h, w = instances.shape
    features = np.random.default_rng(channels).normal(size=(b, channels, h, w)).astype(np.float32)
    k, _ = on_cpu(library, grid)
    means = np.full((b, inst.kmax, channels), np.nan, np.float32)
    broadcast = np.full(features.shape, np.nan, np.float32) if with_map else None
    workspace = np.full(k.pool_workspace_bytes(b, channels, inst.kmax), 0xAB, np.uint8)
    k.instance_pool(
        device(features),
        device(inst.ids),
        inst.kmax,
        device(means),
        None if broadcast is None else device(broadcast),
        device(workspace),
    )
    cpu_means, cpu_map = kernels.instance_pool(features, inst)
    np.testing.assert_allclose(means, cpu_means, rtol=1e-5, atol=1e-6)
    if with_map:
        np.testing.assert_allclose(broadcast, cpu_map, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(
    instance_maps(),
    st.sampled_from(sorted(NP_DTYPES)),
    st.sampled_from(["table", "zeros", "none"]),
    st.booleans(),
    grids,
)
def test_emulated_assembly_equals_cpu_bit_for_bit(library, maps, dtype, features, edges, grid):
    instances, labels = maps
    inst = kernels.compact_instances(instances, labels)
    b = labels.shape[0]
    table = None
    if features == "table":
        table = np.random.default_rng(b).normal(size=(b, inst.kmax, 3)).astype(np.float32)
    feat_channels = 2 if features == "zeros" else 0
    expected = kernels.assemble_input(
        labels, inst, 35, edges, table, dtype, feat_channels=feat_channels
    )
    k, _ = on_cpu(library, grid)
    out = np.full(expected.shape, np.nan, expected.dtype)
    status = np.zeros(2, np.uint64)
    k.assemble_input(
        device(labels),
        device(inst.ids),
        None if table is None else device(table),
        35,
        edges,
        device(out),
        kmax=inst.kmax,
        feat_channels=feat_channels,
        status=device(status),
    )
    bits = np.uint32 if dtype == "float32" else np.uint16
    np.testing.assert_array_equal(out.view(bits), expected.view(bits))
    assert status.tolist() == [2**64 - 1] * 2  # no bad label or id found


@pytest.mark.parametrize("grid", GRIDS)
def test_emulated_assembly_reports_the_first_bad_label_and_id(library, grid):
    """The status atomics keep the smallest pixel index whatever the schedule."""
    k, _ = on_cpu(library, grid)
    labels = np.zeros((2, 4, 6), np.uint8)
    labels[1, 3, 2] = 9
    labels[1, 3, 5] = 200  # a later bad label must not win
    out = np.empty((2, 9, 4, 6), np.float32)
    status = np.zeros(2, np.uint64)
    with pytest.raises(InputError, match=r"label_nc=9 at image 1 .*y=3, x=2"):
        k.assemble_input(device(labels), None, None, 9, False, device(out), status=device(status))
    ids = np.zeros((2, 4, 6), np.int32)
    ids[0, 2, 1], ids[1, 0, 0] = 5, -1  # pixel indices 13 and 24
    labels[:] = 0
    table = np.zeros((2, 3, 1), np.float32)
    out = np.empty((2, 10, 4, 6), np.float32)
    with pytest.raises(InputError, match=r"ids: an id outside 0..2 \(Kmax\) at pixel index 13"):
        k.assemble_input(
            device(labels), device(ids), device(table), 9, False, device(out), kmax=3,
            status=device(status),
        )  # fmt: skip


@SETTINGS
@given(
    st.lists(finite_or_not, min_size=3, max_size=3 * 2 * 7 * 5),
    st.sampled_from(sorted(NP_DTYPES)),
    grids,
)
def test_emulated_uint8_conversion_equals_cpu(library, values, dtype, grid):
    n = len(values) // 3 * 3
    with np.errstate(over="ignore"):
        output = np.array(values[:n], np.float32).astype(NP_DTYPES[dtype])
    output = np.ascontiguousarray(output.reshape(1, 3, 1, n // 3))
    k, _ = on_cpu(library, grid)
    rgb = np.full((1, 1, n // 3, 3), 0xAB, np.uint8)
    k.to_uint8_rgb(device(output), device(rgb))
    np.testing.assert_array_equal(rgb, kernels.to_uint8_rgb(output))


def test_the_module_functions_over_a_driver_double(library, monkeypatch):
    """The GPU path end to end but for the GPU: setup from the device's compute capability and
    driver version, the cubin loaded once per CUDA context (a thread without a current context
    gets device 0's primary one), launches and status read-back through the driver calls."""
    drv = DriverDouble(emulator.Emulator(library), arch=(8, 9))
    compiled = []

    def fake_cubin(arch, driver):
        compiled.append((arch, driver))
        return cubin.ELF_MAGIC + b" emulated"

    monkeypatch.setattr(cuda_runtime, "driver", lambda: drv)
    monkeypatch.setattr(cubin, "cubin", fake_cubin)
    rng = np.random.default_rng(7)
    instances = rng.choice([3, 70000, 9], size=(2, 5, 11)).astype(np.int32)
    labels = rng.integers(0, 35, size=instances.shape, dtype=np.uint8)
    inst = kernels.compact_instances(instances, labels)
    table = rng.normal(size=(2, inst.kmax, 3)).astype(np.float32)
    expected = kernels.assemble_input(labels, inst, 35, True, table, "bfloat16")
    out, status = np.empty_like(expected), np.zeros(2, np.uint64)
    output = np.ascontiguousarray(expected[:, :3])
    rgb, edges = np.empty((2, 5, 11, 3), np.uint8), np.empty(instances.shape, np.uint8)

    def other_context():
        drv.cuCtxSetCurrent(0xBEEF)  # as a thread of another library's context
        cuda.to_uint8_rgb(device(output), device(rgb))

    cuda._gpu.cache_clear()
    try:
        assert cuda.unavailable_reason() is None
        cuda.assemble_input(
            device(labels), device(inst.ids), device(table), 35, True, device(out),
            kmax=inst.kmax, status=device(status),
        )  # fmt: skip
        with ThreadPoolExecutor(1) as fresh_thread:  # a thread with no current context
            fresh_thread.submit(cuda.instance_boundaries, device(instances), device(edges)).result()
        with ThreadPoolExecutor(1) as fresh_thread:
            fresh_thread.submit(other_context).result()
    finally:
        cuda._gpu.cache_clear()
    np.testing.assert_array_equal(out.view(np.uint16), expected.view(np.uint16))
    np.testing.assert_array_equal(rgb, kernels.to_uint8_rgb(output))
    np.testing.assert_array_equal(edges, kernels.instance_boundaries(instances))
    assert compiled == [((8, 9), 12020)]
    assert [context for context, _ in drv.modules] == [DriverDouble.PRIMARY_CONTEXT, 0xBEEF]


@pytest.mark.skipif(emulator.SANITIZE, reason="this is the sanitized run")
def test_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    """This file's tests again with ASan + UBSan, in a child process that preloads libasan."""
    env = emulator.sanitizer_env()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert " passed" in run.stdout


@pytest.mark.skipif(emulator.SANITIZE, reason="this is the sanitized run")
def test_the_sanitized_build_catches_an_out_of_bounds_kernel(tmp_path):
    """A launch over more pixels than its buffers hold dies with AddressSanitizer's report, so
    the sanitized run above would fail on a kernel that reads or writes out of bounds."""
    script = (
        "import numpy as np, sys\n"
        "from pathlib import Path\n"
        "from tests.kernels import emulator\n"
        "emu = emulator.Emulator(emulator.build(Path(sys.argv[1])))\n"
        "ids, out = np.zeros(6, np.int32), np.zeros(6, np.uint8)\n"
        "emu.run('p2phd_boundaries', 1, 32, ids.ctypes.data, 1, 1, 7, out.ctypes.data)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2],
        env=emulator.sanitizer_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "AddressSanitizer: heap-buffer-overflow" in run.stderr, run.stderr[-2000:]
