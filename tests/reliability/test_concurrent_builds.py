"""Two `p2phd build` runs on one package at once (say one per backend, started by a script):
each read-modify-writes the package's quality report, and neither may lose the other's entry."""

from __future__ import annotations

import multiprocessing

from p2phd.engine.core import quality

WRITERS, ENTRIES = 4, 25


def write_entries(engines_dir, writer: int) -> None:
    for i in range(ENTRIES):
        quality.write_entry(engines_dir, f"backend{writer}:entry{i}", {"psnr_db": 50.0 + i})


def test_builds_writing_the_quality_report_at_once_keep_every_entry(tmp_path):
    engines = tmp_path / "pkg" / "engines"
    engines.mkdir(parents=True)
    spawn = multiprocessing.get_context("spawn")
    writers = [spawn.Process(target=write_entries, args=(engines, w)) for w in range(WRITERS)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(timeout=120)
        assert p.exitcode == 0
    report = quality.read_report(engines)
    expected = {f"backend{w}:entry{i}" for w in range(WRITERS) for i in range(ENTRIES)}
    assert set(report) == expected


def test_a_file_system_without_locks_still_takes_the_report(tmp_path, monkeypatch, caplog):
    import errno

    from p2phd.common import file_lock

    def no_locks(f, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(file_lock.fcntl, "flock", no_locks)
    engines = tmp_path / "engines"
    quality.write_entry(engines, "openvino:bf16", {"psnr_db": 50.0})
    assert quality.read_report(engines)["openvino:bf16"]["psnr_db"] == 50.0
    assert "without turns" in caplog.text
