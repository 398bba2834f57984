"""FOMM configs: the reference YAML format outside, dataclasses inside.

The eight official model configs ship as package data and are found by name
(`vox-256`); any other YAML file in the same format works by path.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fakelab.errors import ConfigError
from fakelab.safe_load import MAX_YAML_BYTES, load_yaml

CONFIG_PACKAGE = "fakelab.animation"
CONFIG_FOLDER = "configs"


@dataclass(frozen=True)
class KPDetectorParams:
    temperature: float
    block_expansion: int
    max_features: int
    num_blocks: int
    scale_factor: float = 1
    single_jacobian_map: bool = False
    pad: int = 0


@dataclass(frozen=True)
class DenseMotionParams:
    block_expansion: int
    max_features: int
    num_blocks: int
    scale_factor: float = 1
    kp_variance: float = 0.01


@dataclass(frozen=True)
class GeneratorParams:
    block_expansion: int
    max_features: int
    num_down_blocks: int
    num_bottleneck_blocks: int
    estimate_occlusion_map: bool = False
    dense_motion_params: DenseMotionParams | None = None


@dataclass(frozen=True)
class DiscriminatorParams:
    scales: tuple[float, ...] = (1,)
    block_expansion: int = 64
    max_features: int = 512
    num_blocks: int = 4
    sn: bool = False
    use_kp: bool = False
    kp_variance: float = 0.01


@dataclass(frozen=True)
class CommonParams:
    num_kp: int
    num_channels: int = 3
    estimate_jacobian: bool = False


@dataclass(frozen=True)
class ModelParams:
    common_params: CommonParams
    kp_detector_params: KPDetectorParams
    generator_params: GeneratorParams
    discriminator_params: DiscriminatorParams = field(default_factory=DiscriminatorParams)


@dataclass(frozen=True)
class NormalizationParams:
    adapt_movement_scale: bool = False
    use_relative_movement: bool = True
    use_relative_jacobian: bool = True


@dataclass(frozen=True)
class FommConfig:
    """A whole config file; sections this class doesn't model stay as plain dicts in `sections`."""

    name: str
    model_params: ModelParams
    frame_shape: tuple[int, int, int]
    normalization_params: NormalizationParams
    sections: dict[str, Any]

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) the model works at."""
        height, width = self.frame_shape[:2]
        return width, height


# Allowed ranges of numeric fields, by field name (inclusive; `None`: no bound). A number
# outside them is a typo or an attack: e.g. max_features 60000 would allocate gigabytes.
# A minimum given as a float means "above": 0.0 allows anything greater than zero.
FIELD_RANGES: dict[str, tuple[float | None, float | None]] = {
    "num_kp": (1, 256),
    "num_channels": (1, 4),
    "temperature": (0.0, 100),
    "block_expansion": (1, 1024),
    "max_features": (1, 2048),
    "num_blocks": (1, 8),
    "num_down_blocks": (0, 8),
    "num_bottleneck_blocks": (0, 64),
    "scale_factor": (0.0, 1),
    "pad": (0, 16),
    "kp_variance": (0.0, 100),
    "scales": (0.0, 1),
}
DEFAULT_INT_RANGE = (0, 1_000_000)
DEFAULT_FLOAT_RANGE = (None, None)
MAX_FRAME_SIDE = 2048


def _check_number(value: Any, kind: str, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind == "int" and not isinstance(value, int)):
        wanted = "a whole number" if kind == "int" else "a number"
        raise ConfigError(f"{where}.{name} must be {wanted}, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{where}.{name} must be finite, got {value!r}")
    low, high = FIELD_RANGES.get(name, DEFAULT_INT_RANGE if kind == "int" else DEFAULT_FLOAT_RANGE)
    above = isinstance(low, float)
    if low is not None and (value <= low if above else value < low):
        raise ConfigError(f"{where}.{name} must be {'above' if above else 'at least'} {low:g}, got {value!r}")
    if high is not None and value > high:
        raise ConfigError(f"{where}.{name} must be at most {high:g}, got {value!r}")
    return value


def check_field(annotation: str, value: Any, name: str, where: str) -> Any:
    """`value` of a dataclass field, checked against its annotation ('int', 'tuple[float, ...]', ...)."""
    annotation = annotation.replace(" | None", "")
    if annotation in ("int", "float"):
        return _check_number(value, annotation, name, where)
    if annotation == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}.{name} must be true or false, got {value!r}")
        return value
    if annotation.startswith("tuple["):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}.{name} must be a list, got {value!r}")
        if len(value) > 1000:
            raise ConfigError(f"{where}.{name} has {len(value)} items: too many")
        kind = annotation[len("tuple[") :].split(",")[0].strip("] ")
        return tuple(_check_number(item, kind, name, where) for item in value)
    return value


def _build(cls, values: Any, where: str, nested_types: dict | None = None):
    """Instantiate a (possibly nested) dataclass from a YAML mapping, checking every field."""
    nested_types = _NESTED if nested_types is None else nested_types
    if values is None:
        raise ConfigError(f"{where} is empty")
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(values).__name__}")
    strange = [key for key in values if not isinstance(key, str)]
    if strange:
        raise ConfigError(f"{where} has a key that is not a name: {strange[0]!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where} has unknown key '{unknown[0]}' (known: {', '.join(known)})")
    kwargs = {}
    for name, value in values.items():
        nested = nested_types.get((cls, name))
        if nested is not None and (value is not None or " | None" not in str(known[name].type)):
            value = _build(nested, value, f"{where}.{name}", nested_types)
        elif value is not None or " | None" not in str(known[name].type):
            value = check_field(str(known[name].type), value, name, where)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as error:
        missing = str(error).split("argument")[-1].strip(": ")
        raise ConfigError(f"{where} is missing {missing}") from None


_NESTED = {
    (ModelParams, "common_params"): CommonParams,
    (ModelParams, "kp_detector_params"): KPDetectorParams,
    (ModelParams, "generator_params"): GeneratorParams,
    (ModelParams, "discriminator_params"): DiscriminatorParams,
    (GeneratorParams, "dense_motion_params"): DenseMotionParams,
}


def bundled_config_names() -> list[str]:
    folder = resources.files(CONFIG_PACKAGE) / CONFIG_FOLDER
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_config_text(name_or_path: str | Path) -> tuple[str, str]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist" if not path.exists() else f"config {path} is not a file")
        if path.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(f"config {path} is {path.stat().st_size} bytes; configs are at most {MAX_YAML_BYTES}")
        with path.open("rb") as handle:
            return path.stem, handle.read(MAX_YAML_BYTES + 1)
    bundled = resources.files(CONFIG_PACKAGE) / CONFIG_FOLDER / f"{name_or_path}.yaml"
    if not bundled.is_file():
        raise ConfigError(
            f"unknown config '{name_or_path}': give a YAML path or one of {', '.join(bundled_config_names())}"
        )
    return str(name_or_path), bundled.read_text()


def load_config(name_or_path: str | Path) -> FommConfig:
    """Load a bundled config by name (`vox-256`) or any config in the reference format by path."""
    name, text = _read_config_text(name_or_path)
    return parse_config(load_yaml(text, name), name)


def _section(raw: dict, key: str, name: str) -> dict:
    value = raw.get(key, {})
    if value is None:
        raise ConfigError(f"config {name}: {key} is empty")
    if not isinstance(value, dict):
        raise ConfigError(f"config {name}: {key} must be a mapping, got {type(value).__name__}")
    return value


def _frame_shape(value: Any, name: str) -> tuple[int, ...]:
    where = f"config {name}: dataset_params.frame_shape"
    if not isinstance(value, (list, tuple)) or len(value) not in (2, 3):
        raise ConfigError(f"{where} must be [height, width, channels], got {value!r}")
    for side in value:
        if isinstance(side, bool) or not isinstance(side, int):
            raise ConfigError(f"{where} must hold whole numbers, got {value!r}")
    if not all(16 <= side <= MAX_FRAME_SIDE for side in value[:2]):
        raise ConfigError(f"{where}: height and width must be between 16 and {MAX_FRAME_SIDE}, got {value!r}")
    if len(value) == 3 and value[2] != 3:
        raise ConfigError(f"{where}: frames have 3 (RGB) channels, got {value[2]}")
    return tuple(value)


def parse_config(raw: Any, name: str) -> FommConfig:
    if not isinstance(raw, dict) or "model_params" not in raw:
        raise ConfigError(f"config {name} has no model_params section: not a FOMM config")
    strange = [key for key in raw if not isinstance(key, str)]
    if strange:
        raise ConfigError(f"config {name} has a section name that is not text: {strange[0]!r}")
    model = _build(ModelParams, raw["model_params"], f"config {name}: model_params")
    frame_shape = _frame_shape(_section(raw, "dataset_params", name).get("frame_shape", (256, 256, 3)), name)
    animate_params = _section(raw, "animate_params", name)
    normalization = animate_params.get("normalization_params", {})
    for key in ("train_params",):
        if key in raw:
            _section(raw, key, name)
    return FommConfig(
        name=name,
        model_params=model,
        frame_shape=frame_shape,
        normalization_params=_build(NormalizationParams, normalization, f"config {name}: normalization_params"),
        sections={k: v for k, v in raw.items() if k != "model_params"},
    )


def as_kwargs(params) -> dict:
    """Dataclass to the keyword arguments the reference module constructors take."""
    return dataclasses.asdict(params)
