"""`p2phd render` on a directory holding the bad-input corpus: each bad file is reported by name
with its reason, the good files still render, and nothing prints a traceback."""

from __future__ import annotations

import numpy as np
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
