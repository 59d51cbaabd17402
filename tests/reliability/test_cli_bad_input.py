"""`p2phd render` on a directory holding the bad-input corpus: each bad file is reported by name
with its reason, the good files still render, and nothing prints a traceback."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from p2phd.common.decode import DEFAULT_MAX_PIXELS
from p2phd.engine.apps.cli import main
from tests.reliability.corpus import bad_cases, png
from tests.server.conftest import LABEL_NC, make_maps


def test_render_reports_each_bad_file_and_renders_the_good_ones(server_package, tmp_path, capsys):
    labels = tmp_path / "labels"
    labels.mkdir()
    cases = [
        c
        for c in bad_cases(LABEL_NC, DEFAULT_MAX_PIXELS)
        if isinstance(c.label, bytes) and c.instance is None
    ]
    for case in cases:
        (labels / f"{case.name}.png").write_bytes(case.label)
    for i in range(2):
        (labels / f"good-{i}.png").write_bytes(png(make_maps(seed=i)[0]))
    out = tmp_path / "out"
    argv = ["render", str(server_package), "--labels", str(labels), "--no-instance"]
    code = main([*argv, "-o", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    assert sorted(p.name for p in out.glob("*.png")) == ["good-0.png", "good-1.png"]
    for case in cases:
        said = [line for line in err.splitlines() if f"{case.name}.png" in line]
        assert said and case.reason in said[0], (case.name, said)
    for image in out.glob("*.png"):
        assert np.asarray(Image.open(image)).shape == (32, 64, 3)


def test_a_list_file_that_is_not_text_or_too_large_is_named(
    server_package, tmp_path, capsys, monkeypatch
):
    from p2phd.engine.batch import render

    binary = tmp_path / "labels.txt"
    binary.write_bytes(b"\xf3\x00\xff" * 100)
    argv = ["render", str(server_package), "--no-instance", "-o", str(tmp_path / "out")]
    assert main([*argv, "--labels", str(binary)]) == 2
    err = capsys.readouterr().err
    assert f"{binary}: not a list of image paths (UTF-8 text, one per line)" in err
    assert "Traceback" not in err
    monkeypatch.setattr(render, "MAX_LIST_BYTES", 1 << 10)
    long = tmp_path / "long.txt"
    long.write_text("label.png\n" * 200)
    assert main([*argv, "--labels", str(long)]) == 2
    assert f"list file {long}: 2000 bytes exceeds the file limit of 1024" in capsys.readouterr().err


def test_build_refuses_what_it_cannot_do_before_any_work(server_package, tmp_path, capsys):
    argv = ["build", str(server_package), "--backend", "onnxruntime"]
    assert main([*argv, "--size", "100000x100000"]) == 2
    assert "past the largest input p2phd serves" in capsys.readouterr().err
    assert main([*argv, "--batch", "1:1:100000"]) == 2  # a TensorRT profile of that allocates
    assert "MIN <= OPT <= MAX <= 1024" in capsys.readouterr().err
    assert main(["serve", str(server_package), "--max-batch", "5000"]) == 2
    assert "max_batch_size 5000: expected 1 to 1024" in capsys.readouterr().err
    int8 = [*argv, "--precision", "int8", "--calibration", "synthetic", "--size", "33x65"]
    assert main(int8) == 2  # before calibrating: no NNCF run, no int8 graph
    assert "multiples of" in capsys.readouterr().err
    assert main([*int8[:-1], "32x64"]) == 2  # synthetic street scenes for a 12-label model
    assert "--calibration synthetic: its street scenes use Cityscapes label ids up to 26" in (
        capsys.readouterr().err
    )
    assert not (server_package / "generator.int8.onnx").exists()


def test_more_images_than_one_run_plans_is_refused_at_once(server_package, tmp_path, capsys):
    labels = tmp_path / "labels"
    labels.mkdir()
    for i in range(3):
        (labels / f"m{i}.png").write_bytes(png(make_maps(seed=i)[0]))
    argv = ["render", str(server_package), "--labels", str(labels), "--no-instance"]
    assert main([*argv, "-o", str(tmp_path / "out"), "--styles", "400000000"]) == 2
    err = capsys.readouterr().err  # before planning 1.2e9 jobs (~460 bytes each)
    assert "3 input(s) x 400000000 style(s) = 1200000000 images; one run renders at most" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["serve", "PKG", "--port", "99999"], "expected 0 to 65535"),
        (["serve", "PKG", "--port", "-1"], "expected 0 to 65535"),
        (["serve", "PKG", "--metrics-port", "70000"], "expected 0 to 65535"),
        (["edit", "PKG", "--port", "65536"], "expected 0 to 65535"),
        (["triton", "PKG", "--http-port", "70000"], "expected 0 to 65535"),
        (["serve", "PKG", "--io-threads", "0"], "expected >= 1"),  # was a ValueError trace
        (["serve", "PKG", "--max-concurrent-rpcs", "0"], "expected >= 1"),  # refused every call
        (["serve", "PKG", "--max-image-pixels", "0"], "expected >= 1"),
        (["serve", "PKG", "--max-message-mb", "4096"], "expected 1 to 2047"),
        (["serve", "PKG", "--grace", "-1"], "expected >= 0"),
        (["serve", "PKG", "--grace", "nan"], "expected >= 0"),
        (["edit", "PKG", "--max-renders", "0"], "expected >= 1"),  # every render waited, 503
        (["render", "PKG", "--styles", "-3"], "expected >= 1"),  # rendered nothing, exit 0
        (["render", "PKG", "--batch", "0"], "expected 1 to 1024"),
        (["render", "PKG", "--seed", "-1"], "expected 0 to 9223372036854775807"),  # a trace
        (["synth", "-o", "PKG", "--seed", "-1"], "expected 0 to 9223372036854775807"),
        (["client", "127.0.0.1:1", "--seed", "-5"], "expected 0 to 9223372036854775807"),
    ],
)
def test_a_setting_out_of_its_bounds_is_refused_before_starting(
    server_package, argv, expected, capsys
):
    argv = [str(server_package) if a == "PKG" else a for a in argv]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert f"argument {argv[-2]}: {argv[-1]}: {expected}" in capsys.readouterr().err


def test_unusable_paths_are_one_line_errors(server_package, tmp_path, capsys):
    binary = tmp_path / "config.yaml"
    binary.write_bytes(b"\xf3\x00\xff" * 10)
    assert main(["train", "--config", str(binary)]) == 2
    assert f"{binary}: not a YAML text file" in capsys.readouterr().err
    assert main(["train", "--config", "/dev/zero"]) == 2  # read until memory ran out
    assert "config /dev/zero: not a regular file" in capsys.readouterr().err
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    under_a_file = str(a_file / "out")  # a directory inside a regular file
    bench = ["bench", str(server_package), "--backends", "onnxruntime", "--size", "32x64"]
    assert main([*bench, "--batch", "1", "--iters", "1", "--warmup", "0", "-o", under_a_file]) == 2
    out, err = capsys.readouterr()
    assert f"{a_file} is not a directory" in err and "Traceback" not in err
    assert "bench:" not in out  # refused before the benchmark ran, not after
    assert main(["demo", "-o", under_a_file]) == 2  # the OS's own reason, in one line
    err = capsys.readouterr().err
    assert "Not a directory" in err and under_a_file in err and "Traceback" not in err
