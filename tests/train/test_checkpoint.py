"""Checkpoints: self-describing, weights-only loadable, and never left half-written."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from p2phd.common.atomic import TMP_PREFIX
from p2phd.common.errors import CheckpointError
from p2phd.train import checkpoint as checkpoint_module
from p2phd.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, strip_checkpoint
from p2phd.train.pix2pixhd.config import ModelConfig
from p2phd.train.pix2pixhd.networks import build_generator
from p2phd.train.pix2pixhd.trainer import Trainer, train


@pytest.fixture
def trained(tiny_config):
    cfg = tiny_config("max_iters=2", "checkpoint_every=2")
    train(cfg)
    return cfg


def test_checkpoint_loads_with_weights_only_and_rebuilds_the_generator(trained):
    path = f"{trained.output}/latest.pt"
    torch.load(path, weights_only=True)  # nothing but tensors and plain containers inside
    ckpt = load_checkpoint(path)
    assert ckpt.model_config == trained.model  # the architecture comes from the file itself
    g = build_generator(ckpt.model_config)
    g.load_state_dict(ckpt.generator_state)
    assert ckpt.encoder_state is not None and ckpt.iteration == 2


def test_a_failure_inside_a_save_leaves_the_last_good_checkpoint(trained, monkeypatch):
    path = f"{trained.output}/latest.pt"
    before = Path(path).read_bytes()
    trainer = Trainer(trained, resume=True)

    def dies_half_way(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(before[: len(before) // 2])
        raise OSError("disk full (injected)")

    monkeypatch.setattr(checkpoint_module.torch, "save", dies_half_way)
    with pytest.raises(OSError, match="injected"):
        trainer.save(trainer.out / "latest.pt")
    assert Path(path).read_bytes() == before
    assert load_checkpoint(path).iteration == 2
    assert not list(trainer.out.glob(f"{TMP_PREFIX}*"))


def test_a_process_killed_while_saving_leaves_the_last_good_checkpoint(trained, tmp_path):
    path = f"{trained.output}/latest.pt"
    before = Path(path).read_bytes()
    ready = tmp_path / "writing"
    # a child that resaves a big checkpoint and stalls half-way through the write
    script = textwrap.dedent(
        f"""
        import pathlib, time, torch
        from p2phd.train import checkpoint as c
        ckpt = c.load_checkpoint({path!r})
        ckpt.generator_state["big"] = torch.zeros(4_000_000)
        real_save = torch.save
        def slow_save(obj, f, *a, **k):
            with open(f, "wb") as out:
                out.write(b"x" * 1_000_000)
                out.flush()
                pathlib.Path({str(ready)!r}).touch()
                time.sleep(60)
        c.torch.save = slow_save
        c.save_checkpoint({path!r}, ckpt)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(600):
            if ready.exists() or child.poll() is not None:
                break
            time.sleep(0.1)
        assert ready.exists(), "the child never started writing"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert Path(path).read_bytes() == before
    assert load_checkpoint(path).iteration == 2
    # the killed writer's partial temporary is cleaned up when training resumes
    out = Path(trained.output)
    assert list(out.glob(f"{TMP_PREFIX}*"))
    trained.max_iters = 3
    Trainer(trained, resume=True).run()
    assert not list(out.glob(f"{TMP_PREFIX}*"))
    assert load_checkpoint(path).iteration == 3


def test_weights_only_copy_keeps_what_inference_needs(trained, tmp_path):
    slim = strip_checkpoint(f"{trained.output}/latest.pt", tmp_path / "slim.pt")
    loaded = load_checkpoint(tmp_path / "slim.pt")
    assert loaded.discriminator_state is None and not loaded.optimizer_states
    assert not loaded.resumable
    assert loaded.generator_state.keys() == slim.generator_state.keys()
    assert loaded.encoder_state is not None
    full_size = os.path.getsize(f"{trained.output}/latest.pt")
    assert os.path.getsize(tmp_path / "slim.pt") < full_size


def test_foreign_files_are_clear_errors(tmp_path):
    torch.save({"model.1.weight": torch.zeros(1)}, tmp_path / "latest_net_G.pth")
    with pytest.raises(CheckpointError, match="not a p2phd checkpoint"):
        load_checkpoint(tmp_path / "latest_net_G.pth")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"run": os.system}, tmp_path / "code.pt")  # a pickle that would call code
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(tmp_path / "code.pt")
    said = str(refused.value)  # why, in one line, without torch's page of advice
    assert "unsupported GLOBAL" in said and "system" in said and "\n" not in said


def test_a_checkpoint_of_an_unknown_family_names_the_file(tmp_path):
    cfg = ModelConfig(label_nc=3, ngf=2, n_downsample_global=1, n_blocks_global=0)
    save_checkpoint(tmp_path / "c.pt", Checkpoint(cfg, build_generator(cfg).state_dict()))
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    payload["model_config"]["family"] = "bogus"
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"c\.pt: .*unknown model family 'bogus'"):
        load_checkpoint(tmp_path / "c.pt")
