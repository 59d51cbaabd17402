"""Any map size from 1x1 up renders at its own size under the pad and resize policies, and under
reject renders or says why; 0x0 is an InputError. (The generator itself needs at least twice its
size multiple a side: the reflection-padded bottleneck must be 2 pixels.)"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2phd.engine.errors import InputError
from p2phd.engine.renderer import Renderer
from tests.server.conftest import LABEL_NC


@pytest.fixture(scope="module")
def renderers(server_package):
    made = {p: Renderer(server_package, size_policy=p) for p in ("pad", "resize", "reject")}
    yield made
    for r in made.values():
        r.close()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.sampled_from(["pad", "resize", "reject"]))
def test_every_small_size_renders_at_its_size_or_is_refused_with_a_reason(renderers, h, w, policy):
    r = renderers[policy]
    rng = np.random.default_rng(h * 100 + w)
    labels = rng.integers(0, LABEL_NC, (h, w), dtype=np.uint8)
    instances = rng.integers(0, 5, (h, w)).astype(np.int32)
    m = r.manifest.size_multiple
    fits = h % m == 0 and w % m == 0 and min(h, w) >= 2 * m
    if policy == "reject" and not fits:
        with pytest.raises(InputError, match="multiple of|minimum of"):
            r.render(labels, instances)
        return
    image = r.render(labels, instances)[0]
    assert image.shape == (h, w, 3) and image.dtype == np.uint8


def test_a_0x0_map_is_an_input_error(renderers):
    with pytest.raises(InputError, match="shape"):
        renderers["pad"].render(np.zeros((0, 0), np.uint8))
