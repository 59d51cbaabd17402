"""Any map size from 1x1 up renders at its own size under the pad and resize policies, and under
reject renders or says why; 0x0 is an InputError. (The generator itself needs at least twice its
size multiple a side: the reflection-padded bottleneck must be 2 pixels.)"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2phd.common.errors import InputError
from p2phd.engine.core.renderer import Renderer
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


@pytest.fixture(scope="module")
def image_models(tmp_path_factory):
    """Tiny pix2pix packages: a ResNet generator (reflection-padded blocks) and a U-Net."""
    from p2phd.export.package_writer import export_package
    from p2phd.train.pix2pix.config import Pix2PixConfig
    from p2phd.train.pix2pix.networks import build_generator

    made = {}
    for net in ("resnet_6blocks", "unet_128"):
        cfg = Pix2PixConfig(netG=net, norm="batch", ngf=4, bn_mode="eval")
        out = tmp_path_factory.mktemp(net) / "m"
        made[net] = export_package(out, build_generator(cfg), cfg, fp16=False)
    return made


@pytest.mark.parametrize("net", ["resnet_6blocks", "unet_128"])
@pytest.mark.parametrize("policy", ["pad", "resize"])
def test_image_models_render_tiny_images_at_their_size(image_models, net, policy):
    with Renderer(image_models[net], size_policy=policy) as r:
        for h, w in [(1, 1), (4, 4), (5, 7), (9, 3)]:
            image = r.render_images(np.full((h, w, 3), 90, np.uint8))[0]
            assert image.shape == (h, w, 3), (h, w)
