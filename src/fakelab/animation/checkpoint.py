"""Read and write FOMM checkpoints as data, never as code.

Two formats:
- the reference `.pth.tar`: a dict with `generator`, `kp_detector`, optional
  `discriminator`, optimiser states and `epoch`; keys possibly prefixed `module.`
  by DataParallel. Read with `torch.load(weights_only=True)`, so a file that
  would run code on load is refused before anything runs.
- `.safetensors`: flat `<network>.<key>` tensors, epoch in the metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save_file as save_safetensors

from fakelab.animation.networks import NETWORK_NAMES, FommNetworks
from fakelab.atomic import atomic_output
from fakelab.errors import CheckpointError
from fakelab.safe_load import check_tensors, check_whole_number, load_torch_data

SAFETENSORS_SUFFIX = ".safetensors"
PARALLEL_PREFIX = "module."


def _load_torch_file(path: Path) -> Any:
    return load_torch_data(path, "checkpoint")


def _strip_parallel_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state and all(key.startswith(PARALLEL_PREFIX) for key in state):
        return {key[len(PARALLEL_PREFIX) :]: value for key, value in state.items()}
    return dict(state)


def _split_flat(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    sections: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        network, _, rest = key.partition(".")
        sections.setdefault(network, {})[rest] = tensor
    return sections


class Checkpoint:
    """The networks' state_dicts of a checkpoint, plus its training state when present."""

    def __init__(self, states: dict[str, dict[str, torch.Tensor]], extra: dict[str, Any], source: str):
        self.states = states
        self.extra = extra
        self.source = source

    @property
    def epoch(self) -> int:
        return self.extra.get("epoch", 0)

    def _check(self) -> Checkpoint:
        """Every network's entries are finite float tensors; counters are whole numbers."""
        for name, state in self.states.items():
            check_tensors(state, f"{self.source}: {name}")
        for key in ("epoch", "step"):
            if key in self.extra:
                check_whole_number(self.extra[key], f"{self.source}: {key}")
        return self

    @classmethod
    def read(cls, path: str | Path) -> Checkpoint:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
        if path.suffix == SAFETENSORS_SUFFIX:
            return cls._read_safetensors(path)
        content = _load_torch_file(path)
        if not isinstance(content, dict) or not any(name in content for name in NETWORK_NAMES):
            raise CheckpointError(
                f"{path.name} is not a FOMM checkpoint: expected a dict with 'generator' and 'kp_detector'"
            )
        for name in NETWORK_NAMES:
            if name in content:
                check_tensors(content[name], f"{path.name}: {name}")
        states = {name: _strip_parallel_prefix(content[name]) for name in NETWORK_NAMES if name in content}
        extra = {key: value for key, value in content.items() if key not in NETWORK_NAMES}
        return cls(states, extra, path.name)._check()

    @classmethod
    def _read_safetensors(cls, path: Path) -> Checkpoint:
        try:
            with safe_open(path, framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_safetensors(path)
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(f"{path.name} is not a safetensors file ({str(error).splitlines()[0] if str(error) else error!r})") from None
        epoch = metadata.get("epoch", "0")
        if not epoch.isdigit():
            raise CheckpointError(f"{path.name}: the epoch in its metadata is not a whole number: {epoch[:40]!r}")
        return cls(_split_flat(tensors), {"epoch": int(epoch)}, path.name)._check()

    def load_into(self, networks: FommNetworks, require_discriminator: bool = False) -> None:
        """Copy the weights into `networks`, failing on the first missing, unexpected or mis-shaped key."""
        for name, module in networks.present().items():
            if name not in self.states:
                if name == "discriminator" and not require_discriminator:
                    continue
                raise CheckpointError(f"{self.source} has no '{name}' weights")
            check_state_dict(self.states[name], module.state_dict(), f"{self.source}: {name}", networks.config.name)
            module.load_state_dict(self.states[name])

    def save(self, path: str | Path) -> None:
        """Write as `.safetensors` (flat, weights only) or in the reference `.pth.tar` layout."""
        path = Path(path)
        with atomic_output(path) as tmp:
            if path.suffix == SAFETENSORS_SUFFIX:
                flat = {
                    f"{network}.{key}": tensor.contiguous()
                    for network, state in self.states.items()
                    for key, tensor in state.items()
                }
                save_safetensors(flat, str(tmp), metadata={"epoch": str(self.epoch), "format": "fakelab-fomm"})
            else:
                torch.save({**self.states, **self.extra}, tmp)


def check_state_dict(given: dict, expected: dict, where: str, config_name: str) -> None:
    for key, tensor in expected.items():
        if key not in given:
            raise CheckpointError(f"{where} is missing key '{key}' (does it match config {config_name}?)")
        if tuple(given[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{where} key '{key}' has shape {tuple(given[key].shape)}, "
                f"config {config_name} expects {tuple(tensor.shape)}"
            )
    unexpected = [key for key in given if key not in expected]
    if unexpected:
        raise CheckpointError(
            f"{where} has unexpected key '{unexpected[0]}' (does it match config {config_name}?)"
        )


def load_networks(config, checkpoint_path: str | Path, with_discriminator: bool = False) -> FommNetworks:
    """Build the config's networks and fill them from a checkpoint, in eval mode."""
    networks = FommNetworks(config, with_discriminator=with_discriminator)
    Checkpoint.read(checkpoint_path).load_into(networks)
    return networks.eval()


def convert_checkpoint(source: str | Path, target: str | Path) -> Checkpoint:
    """Rewrite a checkpoint in the format named by the target's suffix (weights only for safetensors)."""
    if Path(source).resolve() == Path(target).resolve():
        raise CheckpointError("convert would overwrite its input: give another output path")
    checkpoint = Checkpoint.read(source)
    if Path(target).suffix == SAFETENSORS_SUFFIX:
        checkpoint = Checkpoint(checkpoint.states, {"epoch": checkpoint.epoch}, checkpoint.source)
    checkpoint.save(target)
    return checkpoint
