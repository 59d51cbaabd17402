"""Everything `p2phd serve` can set, each setting's default, help and flag stated once.

`ServerConfig` is what the server takes; `p2phd serve`, `p2phd triton` and `p2phd export-triton`
generate their flags from its fields, and a Triton model repository stores its `MODEL_SETTINGS`
(with `InstanceGroup`, where Triton runs the model's instances).
The module is light (no gRPC) so that building the CLI's parser stays quick.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from p2phd.common.decode import DEFAULT_MAX_PIXELS
from p2phd.common.errors import ConfigError
from p2phd.common.options import NOT_NEGATIVE, PORT, POSITIVE, flag_of, option
from p2phd.engine.core.size_policy import DEFAULT_MAX_SIDE, SizePolicy
from p2phd.engine.serving.batcher import BatcherConfig

# 2048x1024 raw int32 maps (~10 MB) fit, in and out.
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20
CLIENT_TIMEOUT_S = 60.0  # p2phd client / RenderClient: each call's deadline
# --help sections; the first two are the model's own settings (see MODEL_SETTINGS).
MODEL, BATCHING, LIMITS, TLS = "model", "dynamic batching", "limits and lifecycle", "TLS"


@dataclass
class ServerConfig:
    """Everything `p2phd serve` can set. TLS is on when `tls_cert` and `tls_key` are given;
    `tls_client_ca` additionally requires client certificates signed by it (mTLS)."""

    model_dir: Path = option(help="model package directory", metavar="MODEL_DIR")
    host: str = option("127.0.0.1", "address to bind")
    port: int = option(50051, "gRPC port", bounds=PORT)
    model_name: str = option("p2phd", "model name for KServe v2 calls")
    backend: str = option("auto", "engine backend", group=MODEL)
    precision: str = option("auto", "engine precision", group=MODEL)
    size_policy: str = option(
        SizePolicy.PAD.value,
        "a map whose sides are not multiples of the generator's factor: pad, resize or reject",
        choices=tuple(p.value for p in SizePolicy),
        group=MODEL,
    )
    max_image_pixels: int = option(
        DEFAULT_MAX_PIXELS,
        "max pixels per image, as sent and as computed after padding or resizing",
        group=MODEL,
        bounds=POSITIVE,
    )
    # With max_image_pixels, the most work one image can cost, whatever its aspect.
    max_image_side: int = option(
        DEFAULT_MAX_SIDE,
        "max pixels a side the generator computes per image, after padding or resizing",
        group=MODEL,
        bounds=POSITIVE,
    )
    max_batch_size: int = option(
        BatcherConfig.max_batch_size, "max images per engine call", name="--max-batch",
        group=BATCHING,
    )  # fmt: skip
    max_queue_delay_us: int = option(
        BatcherConfig.max_queue_delay_us,
        "how long, in microseconds, the oldest request may wait for a fuller batch",
        group=BATCHING,
    )
    preferred_batch_sizes: tuple[int, ...] = option(
        BatcherConfig.preferred_batch_sizes,
        "batch sizes dispatched at once when they can be formed",
        name="--preferred-batch",
        group=BATCHING,
    )
    max_queue: int = option(
        BatcherConfig.max_queue,
        "requests waiting at most; beyond it RESOURCE_EXHAUSTED at once",
        group=BATCHING,
    )
    max_message_bytes: int = option(
        DEFAULT_MAX_MESSAGE_BYTES,
        "max gRPC message size in MiB, in and out (2048x1024 raw maps fit in 64)",
        name="--max-message-mb",
        scale=1 << 20,
        group=LIMITS,
        bounds=(1, 2047),  # gRPC's lengths are signed 32-bit
    )
    # Received messages are held whole, so memory for requests is bounded by (this + the
    # liveness reserve) x max_message_bytes x protobuf's parsed-size factor.
    max_concurrent_rpcs: int | None = option(
        256,
        "calls open at once (a stream is one; health and liveness checks are not counted); "
        "beyond it RESOURCE_EXHAUSTED",
        group=LIMITS,
        bounds=POSITIVE,
    )
    stream_idle_seconds: float = option(
        60.0,
        "seconds a stream that sends nothing, with nothing pending, stays open",
        name="--stream-idle-timeout",
        group=LIMITS,
        bounds=NOT_NEGATIVE,
    )
    grace_seconds: float = option(
        30.0,
        "seconds to finish work in flight after SIGTERM",
        name="--grace",
        group=LIMITS,
        bounds=NOT_NEGATIVE,
    )
    metrics_port: int | None = option(
        None, "serve Prometheus /metrics on this port", group=LIMITS, bounds=PORT
    )
    io_threads: int = option(
        2, "threads decoding, checking and encoding requests", group=LIMITS, bounds=POSITIVE
    )
    tls_cert: Path | None = option(None, "server certificate chain (PEM)", group=TLS)
    tls_key: Path | None = option(None, "server private key (PEM)", group=TLS)
    tls_client_ca: Path | None = option(None, "require client certificates from this CA",
                                        group=TLS)  # fmt: skip

    def batcher_config(self) -> BatcherConfig:
        return BatcherConfig(
            max_batch_size=self.max_batch_size,
            max_queue_delay_us=self.max_queue_delay_us,
            preferred_batch_sizes=tuple(self.preferred_batch_sizes),
            max_queue=self.max_queue,
        )


# The fields that configure the model rather than the server process (ports, TLS, gRPC limits):
# what a Triton model repository carries.
MODEL_SETTINGS = tuple(
    f.name for f in fields(ServerConfig) if flag_of(f).group in (MODEL, BATCHING)
)


INSTANCE_KINDS = ("auto", "cpu", "gpu")


@dataclass
class InstanceGroup:
    """Where Triton runs the model's instances (config.pbtxt's instance_group)."""

    kind: str = option(
        "auto",
        "instance group kind; auto: KIND_GPU when a GPU is present",
        choices=INSTANCE_KINDS,
    )
    count: int = option(1, "model instances per device, each its own Renderer", name="--instances")

    def __post_init__(self) -> None:
        if self.kind not in INSTANCE_KINDS:
            raise ConfigError(f"instance kind {self.kind!r}: expected one of {INSTANCE_KINDS}")
        if self.count < 1:
            raise ConfigError(f"instances {self.count}: expected >= 1")
