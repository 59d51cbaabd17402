"""A Triton model repository for a p2phd package, served by Triton's Python backend.

REPO/<name>/config.pbtxt   backend "python"; the KServe v2 tensors of `p2phd serve` (Triton
                           batches on a leading dim, so `seed` is [B, 1] here); dynamic
                           batching from the batcher flags (a queue bound only when asked);
                           the instance group; parameter "p2phd_settings", the engine and
                           batching fields of `ServerConfig` as JSON; parameter "package",
                           where the package is
REPO/<name>/1/model.py     imports `p2phd.engine.serving.triton.model`: the Python environment
                           Triton's Python backend runs must have p2phd installed
REPO/<name>/1/package/     the model package (unless "package" names one elsewhere)
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path

from p2phd.common.errors import ConfigError
from p2phd.engine.core import platform
from p2phd.engine.core.package import Manifest, ModelPackage
from p2phd.engine.serving import kserve
from p2phd.engine.serving.config import MODEL_SETTINGS, InstanceGroup, ServerConfig

VERSION = kserve.VERSION
PACKAGE = "package"
SETTINGS_KEY = "p2phd_settings"
PACKAGE_KEY = "package"

MODEL_PY = '''"""Triton Python-backend entry point of a p2phd package (p2phd export-triton)."""

from p2phd.engine.serving.triton.model import TritonPythonModel  # noqa: F401
'''


def settings_of(config: ServerConfig) -> dict:
    """The model's fields of a ServerConfig (engine and batching), as stored in config.pbtxt."""
    fields = asdict(config)
    return {k: fields[k] for k in MODEL_SETTINGS}


def config_from(settings: dict, model_dir: Path, model_name: str) -> ServerConfig:
    """The ServerConfig a repository's settings describe (a hand-edited typo is a ConfigError)."""
    try:
        config = ServerConfig(model_dir=model_dir, model_name=model_name, **settings)
    except TypeError as e:
        raise ConfigError(f"parameter {SETTINGS_KEY!r}: {e}; known fields: {MODEL_SETTINGS}") from e
    config.preferred_batch_sizes = tuple(config.preferred_batch_sizes)
    config.batcher_config()  # validates the batching knobs
    return config


def _tensor(t: kserve.Tensor, tail: str = "") -> str:
    """One tensor of config.pbtxt, from kserve's declaration (dims after Triton's batch dim)."""
    opt = " optional: true" if t.optional else ""
    return (
        f"{{ name: {_quote(t.name)} data_type: TYPE_{t.datatype} "
        f"dims: {_list(t.config_dims)}{opt} }}{tail}"
    )


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list(values) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def config_pbtxt(
    manifest: Manifest,
    config: ServerConfig,
    *,
    kind: str,
    instances: int,
    package: str,
    bounded_queue: bool = False,
    execution_env: str | None = None,
) -> str:
    """The text of config.pbtxt (protobuf text format of Triton's ModelConfig).

    `bounded_queue` writes config.max_queue as Triton's max_queue_size. Off by default: with any
    queue policy, Triton 2.51's dynamic batcher cannot prefetch and notices a free model instance
    only on its 500 ms poll (core's WaitForPayloadSlotAvailable), so a request that arrives while
    the instance is busy can stall that long (measured in the README's Triton section).
    """
    b = config.batcher_config()
    inputs = kserve.inputs_of(manifest)
    lines = [
        f"name: {_quote(config.model_name)}",
        'backend: "python"',
        f"max_batch_size: {b.max_batch_size}",
        "input [",
        *(f"  {_tensor(t, ',' if i < len(inputs) - 1 else '')}" for i, t in enumerate(inputs)),
        "]",
        f"output [ {_tensor(kserve.OUTPUT)} ]",
        "dynamic_batching {",
    ]
    if b.preferred_batch_sizes:
        lines.append(f"  preferred_batch_size: {_list(b.preferred_batch_sizes)}")
    lines += [
        f"  max_queue_delay_microseconds: {b.max_queue_delay_us}",
    ]
    if bounded_queue:
        lines.append(f"  default_queue_policy {{ max_queue_size: {b.max_queue} }}")
    lines += [
        "}",
        f"instance_group [ {{ count: {instances} kind: KIND_{kind.upper()} }} ]",
    ]
    params = {SETTINGS_KEY: json.dumps(settings_of(config)), PACKAGE_KEY: package}
    if execution_env is not None:
        params["EXECUTION_ENV_PATH"] = execution_env
    lines.append("parameters [")
    for i, (key, value) in enumerate(params.items()):
        tail = "," if i < len(params) - 1 else ""
        lines.append(f"  {{ key: {_quote(key)} value: {{ string_value: {_quote(value)} }} }}{tail}")
    lines.append("]")
    return "\n".join(lines) + "\n"


def export_repository(
    package: Path,
    repo: Path,
    config: ServerConfig,
    instances: InstanceGroup | None = None,
    *,
    copy: bool = True,
    bounded_queue: bool = False,
    execution_env: str | None = None,
) -> Path:
    """Write REPO/<model_name>/ for `package`, its `instances` (default: one, on a GPU if there
    is one), and return it. `copy=False` refers to the package where it is (a local server's
    repository) instead of copying it beside model.py."""
    manifest = ModelPackage(package).manifest  # a broken package fails here, not in Triton
    name = config.model_name
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ConfigError(f"model name {name!r}: use letters, digits, '_', '.', '-' only")
    instances = instances or InstanceGroup()
    kind = instances.kind
    if kind == "auto":
        kind = "gpu" if platform.nvidia_smi() else "cpu"  # nvidia-smi lists a GPU
    text = config_pbtxt(
        manifest,
        config,
        kind=kind,
        instances=instances.count,
        package=PACKAGE if copy else str(Path(package).resolve()),
        bounded_queue=bounded_queue,
        execution_env=execution_env,
    )
    model_dir = Path(repo) / name
    if model_dir.exists():
        raise ConfigError(f"{model_dir}: already exists; choose another directory or model name")
    version = model_dir / VERSION
    version.mkdir(parents=True)
    if copy:
        shutil.copytree(package, version / PACKAGE)
    (version / "model.py").write_text(MODEL_PY)
    (model_dir / "config.pbtxt").write_text(text)
    return model_dir
