"""Editor latency: how long an edit takes to come back rendered in `p2phd edit`, at 512x256.

Starts the real `p2phd edit MODEL` (its own process, default backend choice) and measures the
round trip two ways: (a) HTTP only, from Python: POST /api/render with the label and instance
PNGs the page sends, until the PNG is read; (b) in headless Chromium (Debian's, via Playwright):
the page's own time from a stroke's render request (PNG encoding included) until the new image
is on screen, over strokes painted with the mouse. Target: under 300 ms on this CPU.
Writes benchmarks/results/editor_latency.json, prints a Markdown table, and with --screenshot
saves the editor's picture for the README.

    .venv/bin/python benchmarks/editor_latency.py --model models/default \\
        --screenshot docs/editor.png
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from _shared import REPO, RESULTS, free_port, latency_ms, write_result
from PIL import Image

from p2phd.common.atomic import atomic_write_bytes
from p2phd.engine.apps.bench.machine import describe_machine

DEFAULT_OUT = RESULTS / "editor_latency.json"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WIDTH, HEIGHT = 512, 256
CAR = 26


def start_editor(model: str, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "p2phd.engine.apps.cli", "edit", model, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise SystemExit(f"p2phd edit exited with {proc.returncode}")
        if "open http://" in line:
            return proc
    proc.kill()
    raise SystemExit("p2phd edit did not start within 120 s")


def multipart(fields: dict[str, tuple[str, bytes] | str]) -> tuple[bytes, str]:
    boundary = "p2phdbenchboundary"
    parts = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            head = f'Content-Disposition: form-data; name="{name}"; filename="{value[0]}"\r\n'
            head += "Content-Type: image/png\r\n"
            body = value[1]
        else:
            head = f'Content-Disposition: form-data; name="{name}"\r\n'
            body = value.encode()
        parts.append(f"--{boundary}\r\n{head}\r\n".encode() + body + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), boundary


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def http_round_trips(url: str, iters: int) -> list[float]:
    """(a): one request per edit of a car moving along the road, timed from send to decoded PNG."""
    from p2phd.train.synth import render_scene

    scene = render_scene(np.random.default_rng(0), HEIGHT, WIDTH)
    times = []
    for i in range(iters + 2):
        label, instance = scene.label.copy(), scene.instance.astype(np.uint16)
        x = 40 + (i * 17) % (WIDTH - 120)
        label[200:230, x : x + 70] = CAR
        instance[200:230, x : x + 70] = CAR * 1000 + 50
        style = json.dumps({"seed": i % 3, "instances": {str(CAR * 1000 + 50): i % 5}})
        t0 = time.perf_counter()
        body, boundary = multipart(
            {"label": ("l.png", png(label)), "instance": ("i.png", png(instance)), "style": style}
        )
        req = urllib.request.Request(
            url + "api/render", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            image = np.asarray(Image.open(io.BytesIO(r.read())))
        assert image.shape == (HEIGHT, WIDTH, 3), image.shape
        if i >= 2:  # the first two warm the connection and the engine
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def browser_round_trips(
    url: str, strokes: int, screenshot: Path | None
) -> tuple[list[float], dict]:
    """(b): the page's own render round trips for `strokes` mouse strokes of car and road."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(
            profile, executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1500, "height": 700},
        )  # fmt: skip
        page = ctx.new_page()
        page.goto(url)
        settled = "p2phdEditor.shownSeq > 0 && p2phdEditor.settled()"
        page.wait_for_function(settled, timeout=60_000)
        box = page.locator("#labels").bounding_box()

        def at(x: float, y: float) -> tuple[float, float]:
            return box["x"] + x * box["width"] / WIDTH, box["y"] + y * box["height"] / HEIGHT

        first = page.evaluate("p2phdEditor.renders.length")
        page.fill("#brush-size", "12")
        for i in range(strokes):
            page.click('[data-class="car"]' if i % 2 == 0 else '[data-class="road"]')
            y = 190 + (i * 7) % 50
            x = 30 + (i * 37) % 380
            page.mouse.move(*at(x, y))
            page.mouse.down()
            page.mouse.move(*at(x + 60, y + 4), steps=4)
            page.mouse.up()
            page.wait_for_function(settled, timeout=30_000)
        renders = page.evaluate("p2phdEditor.renders")[first:]
        describe = page.evaluate("p2phdEditor.model.renderer")
        if screenshot is not None:
            take_screenshot(page, screenshot)
        ctx.close()
    return [r["ms"] for r in renders], describe


def take_screenshot(page, path: Path) -> None:
    """The editor at the model's training size after a few edits: a car added and restyled."""
    w, h = 256, 128
    page.select_option("#scene-size", f"{w}x{h}")
    page.fill("#scene-seed", "1")
    page.click("#new-scene")
    page.wait_for_function(f"p2phdEditor.state.width === {w} && p2phdEditor.settled()")
    box = page.locator("#labels").bounding_box()

    def at(x: float, y: float) -> tuple[float, float]:
        return box["x"] + x * box["width"] / w, box["y"] + y * box["height"] / h

    page.click('[data-class="car"]')
    page.check("#tool-add")
    page.mouse.move(*at(150, 98))
    page.mouse.down()
    page.mouse.move(*at(196, 118), steps=4)
    page.mouse.up()
    page.check("#tool-style")
    page.mouse.click(*at(173, 108))
    page.wait_for_selector('#instance-style button[data-cluster="3"]')
    page.click('#instance-style button[data-cluster="3"]')
    page.wait_for_function("p2phdEditor.settled()")
    page.locator('[data-class="car"]').scroll_into_view_if_needed()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, page.screenshot())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "default"))
    parser.add_argument("--iters", type=int, default=40, help="HTTP round trips (a)")
    parser.add_argument("--strokes", type=int, default=20, help="browser strokes (b)")
    parser.add_argument("--screenshot", type=Path, help="save the editor's picture here")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    machine = describe_machine()
    load_start = os.getloadavg()[0]
    port = free_port()
    proc = start_editor(args.model, port)
    url = f"http://127.0.0.1:{port}/"
    try:
        http_ms = http_round_trips(url, args.iters)
        browser_ms, describe = browser_round_trips(url, args.strokes, args.screenshot)
    finally:
        proc.terminate()
        proc.wait(10)
    result = {
        "what": f"p2phd edit round trip at {WIDTH}x{HEIGHT}: edit sent -> rendered image back",
        "model": os.path.relpath(args.model, REPO),
        "renderer": {k: describe.get(k) for k in ("backend", "precision", "device")},
        "machine": {
            **{k: machine[k] for k in ("cpu_model", "logical_cpus", "physical_cores")},
            "load_average_1m_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        },
        "target_ms": 300,
        **{
            name: {"n": len(ms), **latency_ms([m / 1e3 for m in ms])}
            for name, ms in (("http_round_trip", http_ms), ("browser_round_trip", browser_ms))
        },
        "command": "python benchmarks/editor_latency.py --model models/default",
    }
    write_result(args.output, result)
    print(f"| {WIDTH}x{HEIGHT}, {result['renderer']['backend']} {result['renderer']['precision']}"
          " | n | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|")  # fmt: skip
    for name in ("http_round_trip", "browser_round_trip"):
        s = result[name]
        print(f"| {name} | {s['n']} | {s['p50_ms']} | {s['p90_ms']} | {s['p99_ms']} | "
              f"{s['max_ms']} |")  # fmt: skip
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
