"""`p2phd edit`: serve the live label-map editor on a local web page."""

from __future__ import annotations

import argparse
import logging

from p2phd.engine.apps.cli.config_flags import add_config_flags, config_from_args
from p2phd.engine.apps.cli.serve import add_engine_flags
from p2phd.engine.apps.editor.config import EditorConfig

HELP = "edit label maps in the browser and see them rendered live (serves a local page)"

log = logging.getLogger("p2phd.edit")


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser, EditorConfig)
    add_engine_flags(parser)  # the local renderer's; unused with --server


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from p2phd.common.errors import ConfigError
    from p2phd.engine.apps.editor.access import BoundedWSGIServer
    from p2phd.engine.apps.editor.app import create_app
    from p2phd.engine.core.package import ModelPackage
    from p2phd.engine.core.style import Style

    config = config_from_args(EditorConfig, args)
    package = ModelPackage(config.model_dir)
    if config.server:
        from p2phd.engine.apps.editor.remote import RemoteRenderer

        renderer = RemoteRenderer(config.server)
        if renderer.label_nc != package.manifest.label_nc:
            renderer.close()
            raise ConfigError(
                f"--server {config.server} serves a model with label_nc {renderer.label_nc}; "
                f"{config.model_dir} has {package.manifest.label_nc}: pass the served package"
            )
    else:
        from p2phd.engine.core.renderer import Renderer

        renderer = Renderer(config.model_dir, backend=args.backend, precision=args.precision)
    try:
        # The first render at a size compiles the backend's plan: do it before the page asks.
        warm = np.zeros((256, 512), np.uint8)
        renderer.render(warm, warm.astype(np.int32), Style())
        app = create_app(
            renderer,
            package,
            host=config.host,
            allow_hosts=config.allow_host,
            max_renders=config.max_renders,
        )
        try:
            http = BoundedWSGIServer(
                config.host, config.port, app, max_connections=config.max_connections
            )
        except OSError as e:
            raise ConfigError(f"--port {config.port}: cannot listen on {config.host} ({e})") from e
        d = renderer.describe()
        log.info(
            "rendering on %s",
            " ".join(str(d[k]) for k in ("backend", "precision", "server") if k in d),
        )
        print(
            f"p2phd edit: open http://{config.host}:{http.server_port}/ (Ctrl+C stops)", flush=True
        )
        http.serve_forever()
    finally:
        renderer.close()
    return 0
