"""`p2phd client HOST:PORT`: render a label (and instance) PNG on a running p2phd server, or
translate an input image with an image-to-image (pix2pix) model."""

from __future__ import annotations

import argparse

from p2phd.engine.apps.cli.config_flags import bounded
from p2phd.engine.core.style import SEED_RANGE
from p2phd.engine.serving.config import CLIENT_TIMEOUT_S

HELP = "render a label/instance PNG pair on a running p2phd server"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="HOST:PORT", help="server address, e.g. 127.0.0.1:50051")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--label", help="label map PNG (uint8 class ids)")
    source.add_argument("--image", help="input image PNG/JPEG of an image-to-image model")
    parser.add_argument("--instance", default=None, help="instance map PNG (optional)")
    parser.add_argument("-o", "--output", required=True, help="output image PNG")
    parser.add_argument("--seed", type=bounded(int, SEED_RANGE), default=None, help="style seed")
    parser.add_argument(
        "--timeout",
        type=float,
        default=CLIENT_TIMEOUT_S,
        help=f"deadline in seconds (default {CLIENT_TIMEOUT_S:g})",
    )
    parser.add_argument("--tls-ca", default=None, help="CA certificate (PEM): use TLS")
    parser.add_argument("--tls-cert", default=None, help="client certificate (PEM) for mTLS")
    parser.add_argument("--tls-key", default=None, help="client private key (PEM) for mTLS")


def run(args: argparse.Namespace) -> int:
    from p2phd.common.atomic import atomic_write_bytes
    from p2phd.common.png import encode_png
    from p2phd.engine.serving.client import RenderClient

    with RenderClient(
        args.target, timeout=args.timeout, ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key
    ) as client:
        if args.image:
            image = client.render_image(args.image)
        else:
            image = client.render(args.label, args.instance, seed=args.seed)
    atomic_write_bytes(args.output, encode_png(image))
    print(f"wrote {args.output} ({image.shape[1]}x{image.shape[0]})")
    return 0
