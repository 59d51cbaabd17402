"""`p2phd edit`: serve the live label-map editor on a local web page."""

from __future__ import annotations

import argparse
import logging

HELP = "edit label maps in the browser and see them rendered live (serves a local page)"

log = logging.getLogger("p2phd.edit")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="the model package")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)"
    )
    parser.add_argument(
        "--server", metavar="HOST:PORT", help="render through a running `p2phd serve`"
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another name the page is reached by (beyond localhost, 127.0.0.1, [::1] and "
        "--host); requests naming any other Host are refused (DNS rebinding)",
    )
    parser.add_argument(
        "--max-renders", type=int, default=2, help="renders at once; more wait, then 503 (2)"
    )
    parser.add_argument(
        "--max-connections", type=int, default=16, help="HTTP connections served at once (16)"
    )
    parser.add_argument("--backend", default="auto", help="local backend (default auto)")
    parser.add_argument("--precision", default="auto", help="local precision (default auto)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from p2phd.common.errors import ConfigError
    from p2phd.engine.apps.editor.access import BoundedWSGIServer
    from p2phd.engine.apps.editor.app import create_app
    from p2phd.engine.core.package import ModelPackage
    from p2phd.engine.core.style import Style

    package = ModelPackage(args.model_dir)
    if args.server:
        from p2phd.engine.apps.editor.remote import RemoteRenderer

        engine = RemoteRenderer(args.server)
        if engine.label_nc != package.manifest.label_nc:
            engine.close()
            raise ConfigError(
                f"--server {args.server} serves a model with label_nc {engine.label_nc}; "
                f"{args.model_dir} has {package.manifest.label_nc}: pass the served package"
            )
    else:
        from p2phd.engine.core.renderer import Renderer

        engine = Renderer(args.model_dir, backend=args.backend, precision=args.precision)
    try:
        # The first render at a size compiles the backend's plan: do it before the page asks.
        warm = np.zeros((256, 512), np.uint8)
        engine.render(warm, warm.astype(np.int32), Style())
        app = create_app(
            engine,
            package,
            host=args.host,
            allow_hosts=args.allow_host,
            max_renders=args.max_renders,
        )
        try:
            http = BoundedWSGIServer(
                args.host, args.port, app, max_connections=args.max_connections
            )
        except OSError as e:
            raise ConfigError(f"--port {args.port}: cannot listen on {args.host} ({e})") from e
        d = engine.describe()
        log.info(
            "rendering on %s",
            " ".join(str(d[k]) for k in ("backend", "precision", "server") if k in d),
        )
        print(f"p2phd edit: open http://{args.host}:{http.server_port}/ (Ctrl+C stops)", flush=True)
        http.serve_forever()
    finally:
        engine.close()
    return 0
