"""Original pix2pixHD files (net_G, net_E, the pickled cluster dict) load, export, and the
package computes what the checkpoint's network computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p2phd.common.errors import CheckpointError
from p2phd.engine.core.package import ModelPackage
from p2phd.export.checkpoint_export import export_checkpoint
from p2phd.export.parity import cpu_session
from p2phd.train.pix2pixhd.config import ModelConfig
from p2phd.train.pix2pixhd.networks import build_encoder, build_generator
from p2phd.train.pix2pixhd.original_checkpoint import infer_feat_num, load_pix2pixhd

GLOBAL = ModelConfig(label_nc=6, ngf=4, n_downsample_global=2, n_blocks_global=2)
LOCAL = ModelConfig(
    label_nc=6,
    feat_num=3,
    netG="local",
    ngf=4,
    n_downsample_global=2,
    n_blocks_global=1,
    n_blocks_local=1,
    nef=4,
    n_downsample_E=2,
)


def random_weights(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.2 for k, v in module.state_dict().items()}


def save_original(path, state: dict[str, torch.Tensor], data_parallel=False, legacy_norm=False):
    """Save like the original's save_network: a plain state_dict (optionally as saved from a
    DataParallel wrapper, or by PyTorch 0.3 with InstanceNorm running statistics)."""
    out = dict(state)
    if legacy_norm:
        out["model.2.running_mean"] = torch.zeros(1)
        out["model.2.running_var"] = torch.ones(1)
        out["model.5.num_batches_tracked"] = torch.tensor(0)
    if data_parallel:
        out = {f"module.{k}": v for k, v in out.items()}
    torch.save(out, path)
    return path


def torch_output(module: torch.nn.Module, state, x: torch.Tensor) -> np.ndarray:
    module.load_state_dict(state)
    with torch.no_grad():
        return module.eval()(x).numpy()


def test_global_checkpoint_with_module_prefix_and_legacy_keys_exports_faithfully(tmp_path):
    state = random_weights(build_generator(GLOBAL), seed=1)
    path = save_original(tmp_path / "latest_net_G.pth", state, data_parallel=True, legacy_norm=True)
    ckpt = load_pix2pixhd(GLOBAL, path)
    pkg = ModelPackage(export_checkpoint(ckpt, tmp_path / "model", fp16=False))

    x = torch.rand(1, GLOBAL.input_nc, 24, 40)  # a size the export's parity check did not use
    got = cpu_session(pkg.generator_path).run(None, {"input": x.numpy()})[0]
    want = torch_output(build_generator(GLOBAL), state, x)
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))


def test_local_encoder_and_pickled_clusters_export_faithfully(tmp_path):
    g_state = random_weights(build_generator(LOCAL), seed=2)
    e_state = random_weights(build_encoder(LOCAL), seed=3)
    g_path = save_original(tmp_path / "latest_net_G.pth", g_state)
    e_path = save_original(tmp_path / "latest_net_E.pth", e_state)
    clusters = {5: np.random.default_rng(0).normal(size=(10, 3)), 2: np.ones((4, 3))}
    np.save(tmp_path / "features_clustered_010.npy", clusters)  # pickled, as the original does
    f_path = tmp_path / "features_clustered_010.npy"

    assert infer_feat_num(e_path, None) == 3 and infer_feat_num(None, f_path) == 3
    ckpt = load_pix2pixhd(LOCAL, g_path, e_path, f_path)
    pkg = ModelPackage(export_checkpoint(ckpt, tmp_path / "model", fp16=False))

    x = torch.rand(2, LOCAL.input_nc, 32, 48)
    got = cpu_session(pkg.generator_path).run(None, {"input": x.numpy()})[0]
    want = torch_output(build_generator(LOCAL), g_state, x)
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))

    photo = torch.rand(1, 3, 32, 48) * 2 - 1
    enc = build_encoder(LOCAL).eval()
    enc.load_state_dict(e_state)
    got = cpu_session(pkg.encoder_path).run(None, {"image": photo.numpy()})[0]
    with torch.no_grad():
        want = enc.features(photo).numpy()
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))

    stored = pkg.feature_clusters()
    assert set(stored) == {2, 5}
    np.testing.assert_allclose(stored[5], clusters[5].astype(np.float32))
    assert pkg.manifest.feat_num == 3 and pkg.manifest.encoder


def test_wrong_shape_names_the_key_and_both_shapes(tmp_path):
    state = random_weights(build_generator(GLOBAL), seed=4)
    state["model.4.weight"] = torch.zeros(9, 4, 3, 3)
    path = save_original(tmp_path / "g.pth", state)
    with pytest.raises(CheckpointError, match=r"model\.4\.weight has shape \[9, 4, 3, 3\].*\[8, 4"):
        load_pix2pixhd(GLOBAL, path)


def test_missing_blocks_and_wrong_netG_are_explained(tmp_path):
    state = random_weights(build_generator(GLOBAL), seed=5)
    fewer = ModelConfig(label_nc=6, ngf=4, n_downsample_global=2, n_blocks_global=1)
    path = save_original(tmp_path / "g.pth", state)
    with pytest.raises(CheckpointError, match="holds 2 global residual blocks"):
        load_pix2pixhd(fewer, path)
    local = ModelConfig(label_nc=6, ngf=2, netG="local", n_downsample_global=2)
    with pytest.raises(CheckpointError, match="use --netG global"):
        load_pix2pixhd(local, path)


@pytest.mark.parametrize(
    ("trained", "asked", "hint"),
    [
        (
            dict(feat_num=3),
            dict(),
            "39 input channels; label_nc 35 \\+ instance 1 \\+ feat_num 0 = "
            "36: did you forget --feat-num 3\\?",
        ),
        (dict(), dict(instance=False), "drop --no-instance"),
        (dict(instance=False), dict(), "--no-instance"),
    ],
)
def test_input_channel_check_says_what_disagrees(tmp_path, trained, asked, hint):
    arch = dict(ngf=2, n_downsample_global=1, n_blocks_global=0)
    with torch.device("meta"):
        shapes = build_generator(ModelConfig(**arch, **trained)).state_dict()
    state = {k: torch.zeros(v.shape) for k, v in shapes.items()}
    path = save_original(tmp_path / "g.pth", state)
    with pytest.raises(CheckpointError, match=hint):
        load_pix2pixhd(ModelConfig(**arch, **asked), path)


def test_not_a_weights_file_is_a_checkpoint_error(tmp_path):
    bad = tmp_path / "latest_net_G.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="latest_net_G.pth"):
        load_pix2pixhd(GLOBAL, bad)
