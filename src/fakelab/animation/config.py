"""FOMM configs: the reference YAML format outside, dataclasses inside.

The eight official model configs ship as package data and are found by name
(`vox-256`); any other YAML file in the same format works by path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fakelab.errors import ConfigError

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


def _build(cls, values: Any, where: str):
    """Instantiate a (possibly nested) dataclass from a YAML mapping, rejecting unknown keys."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where} has unknown key '{unknown[0]}' (known: {', '.join(known)})")
    kwargs = {}
    for name, value in values.items():
        nested = _NESTED.get((cls, name))
        if nested is not None and value is not None:
            value = _build(nested, value, f"{where}.{name}")
        elif isinstance(value, list):
            value = tuple(value)
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
            raise ConfigError(f"config file {path} does not exist")
        return path.stem, path.read_text()
    bundled = resources.files(CONFIG_PACKAGE) / CONFIG_FOLDER / f"{name_or_path}.yaml"
    if not bundled.is_file():
        raise ConfigError(
            f"unknown config '{name_or_path}': give a YAML path or one of {', '.join(bundled_config_names())}"
        )
    return str(name_or_path), bundled.read_text()


def load_config(name_or_path: str | Path) -> FommConfig:
    """Load a bundled config by name (`vox-256`) or any config in the reference format by path."""
    name, text = _read_config_text(name_or_path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"config {name} is not valid YAML: {str(error).splitlines()[0]}") from None
    return parse_config(raw, name)


def parse_config(raw: Any, name: str) -> FommConfig:
    if not isinstance(raw, dict) or "model_params" not in raw:
        raise ConfigError(f"config {name} has no model_params section: not a FOMM config")
    model = _build(ModelParams, raw["model_params"], f"config {name}: model_params")
    frame_shape = tuple(raw.get("dataset_params", {}).get("frame_shape", (256, 256, 3)))
    normalization = raw.get("animate_params", {}).get("normalization_params", {})
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
