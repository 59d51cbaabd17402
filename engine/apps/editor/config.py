"""Everything `p2phd edit` can set, each setting's default, help and flag stated once.

`p2phd edit` generates its flags from `EditorConfig`'s fields; the app and its HTTP server take
their defaults from the same fields. Light (no Flask), so that building the CLI's parser stays
quick.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from p2phd.common.options import PORT, POSITIVE, option


@dataclass
class EditorConfig:
    """The editor's address, who may reach it, and how much it serves at once."""

    model_dir: Path = option(help="the model package", metavar="MODEL_DIR")
    port: int = option(8080, "HTTP port", bounds=PORT)
    host: str = option("127.0.0.1", "address to bind; 127.0.0.1 is this machine only")
    server: str | None = option(
        None, "render through a running `p2phd serve` at this address", metavar="HOST:PORT"
    )
    allow_host: tuple[str, ...] = option(
        (),
        "another name the page is reached by (beyond localhost, 127.0.0.1, [::1] and --host); "
        "requests naming any other Host are refused (DNS rebinding)",
        repeat=True,
        metavar="NAME",
    )
    # Each render costs the engine's working memory.
    max_renders: int = option(
        2, "uploads decoded or rendered at once; more wait, then 503", bounds=POSITIVE
    )
    max_connections: int = option(
        16,
        "HTTP connections served at once; more are closed at once (a browser opens 6)",
        bounds=POSITIVE,
    )
