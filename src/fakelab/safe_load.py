"""Reading untrusted data files within limits: YAML configs and tensors from checkpoints.

Configs and checkpoints come from users and from the internet. Both are checked before
anything large is allocated, so a hostile or broken file fails in one line and within a
little memory:
- YAML is read with the safe loader, from at most MAX_YAML_BYTES, with at most
  MAX_YAML_ALIASES aliases (an "alias bomb" expands a few lines into gigabytes when the
  structure is copied or written back) and nesting at most MAX_YAML_DEPTH deep;
- every tensor of a state_dict must be a plain dense tensor (no stride-0 expansion that
  turns a tiny file into a huge array), of a floating dtype (integer only for counters
  such as BatchNorm's `num_batches_tracked`), and hold finite values.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import yaml

from fakelab.errors import CheckpointError, ConfigError

MAX_YAML_BYTES = 1_000_000
MAX_YAML_ALIASES = 1_000
MAX_YAML_DEPTH = 64
# Values the document holds once every alias is expanded (the bundled configs hold ~150).
MAX_YAML_EXPANDED = 100_000
# Tensors bigger than this many elements are refused outright (4 GB of float32).
MAX_TENSOR_ELEMENTS = 1_000_000_000
# Integer tensors are counters in the state_dicts fakelab reads.
INTEGER_KEYS_ENDING = ("num_batches_tracked",)


class _LimitedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that counts aliases and nesting while composing."""

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases = 0
        self.depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise ConfigError(f"uses more than {MAX_YAML_ALIASES} YAML aliases (an alias bomb?)")
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise ConfigError(f"is nested more than {MAX_YAML_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml(text: str | bytes, name: str) -> Any:
    """`yaml.safe_load` within the limits above; errors name the config and the problem."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"config {name} is {len(text)} bytes; configs are at most {MAX_YAML_BYTES}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"config {name} is not a text file (not UTF-8)") from None
    if "\x00" in text:
        raise ConfigError(f"config {name} is not a text file (it holds NUL bytes)")
    loader = _LimitedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_EXPANDED:
            raise ConfigError(f"expands to more than {MAX_YAML_EXPANDED} values through its aliases (an alias bomb?)")
        return loader.construct_document(node)
    except ConfigError as error:
        raise ConfigError(f"config {name} {error}") from None
    except yaml.YAMLError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"config {name} is not valid YAML: {first}") from None
    except (RecursionError, ValueError, TypeError, OverflowError) as error:
        raise ConfigError(f"config {name} cannot be read: {type(error).__name__}") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values `node` stands for once aliases are copied out; shared nodes are counted once per use."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(key, sizes) + _expanded_size(value, sizes) for key, value in node.value)
    sizes[id(node)] = size = min(size, MAX_YAML_EXPANDED + 1)
    return size


def check_tensors(state: Mapping, where: str) -> None:
    """Every entry of `state` is a dense, finite tensor of a floating dtype, under a string key.

    Raises CheckpointError naming the first bad entry. The stride check comes first: a
    stride-0 tensor looks small in the file but is as large as its shape once used.
    """
    import torch

    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where} is a {type(state).__name__}, not a mapping of names to tensors")
    for key, tensor in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{where} has a key that is not a name: {key!r}")
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{where} entry '{key}' is a {type(tensor).__name__}, not a tensor")
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_nested:
            raise CheckpointError(f"{where} entry '{key}' is not a plain dense tensor")
        if any(stride == 0 and size > 1 for stride, size in zip(tensor.stride(), tensor.shape)):
            raise CheckpointError(
                f"{where} entry '{key}' is an expanded (stride-0) tensor of shape {tuple(tensor.shape)}, "
                "not stored weights"
            )
        if tensor.numel() > MAX_TENSOR_ELEMENTS:
            raise CheckpointError(f"{where} entry '{key}' has {tensor.numel()} elements: too large")
        if tensor.dtype.is_floating_point:
            if tensor.numel() and not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(f"{where} entry '{key}' holds NaN or infinite values")
        elif tensor.dtype in (torch.int64, torch.int32) and key.endswith(INTEGER_KEYS_ENDING):
            continue
        else:
            raise CheckpointError(f"{where} entry '{key}' has dtype {str(tensor.dtype).replace('torch.', '')}, not floating point")


def check_whole_number(value: Any, where: str, minimum: int = 0) -> int:
    """A metadata counter (epoch, step): an int (not a bool) of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CheckpointError(f"{where} must be a whole number of at least {minimum}, got {value!r}")
    return value


def finite_json(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None (json.dumps would write invalid JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value


REFUSED_CODE = "refused: this file would run code when loaded"


def is_torchscript(path) -> bool:
    """Whether `path` is a TorchScript archive (a zip with compiled code, which torch.load would run)."""
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    return any(name.endswith("constants.pkl") or "/code/" in name for name in names)


SAFE_GLOBAL_PREFIXES = ("torch.", "collections.OrderedDict", "_codecs.encode", "numpy.")


def _code_global(path) -> "re.Match | None":
    """In a plain (not zip) pickle, the first global outside torch and plain containers, as a match."""
    import pickletools
    import re

    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_YAML_BYTES * 64)
        strings: list[str] = []
        for opcode, argument, _ in pickletools.genops(data):
            if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(argument)
            name = None
            if opcode.name in ("GLOBAL", "INST"):
                name = argument.replace(" ", ".")
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                name = f"{strings[-2]}.{strings[-1]}"
            if name and not name.startswith(SAFE_GLOBAL_PREFIXES):
                return re.match(r"(.*)", f"{name}")
    except Exception:  # noqa: BLE001 - not a pickle at all: nothing that names code
        return None
    return None


def load_torch_data(path, what: str = "checkpoint") -> Any:
    """`torch.load(path, weights_only=True)` on the CPU, with one-line CheckpointErrors.

    A file that needs anything but tensors and plain containers is refused with
    REFUSED_CODE (torch's own message advises turning the safety off); TorchScript
    archives are named as such.
    """
    import pickle
    import re
    import warnings
    from pathlib import Path

    import torch

    path = Path(path)
    if is_torchscript(path):
        raise CheckpointError(f"{what} {path.name} is a TorchScript archive, which would run code when loaded: refused (use a state_dict)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol notes from torch about files we refuse anyway
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error)) or _code_global(path)
        if found:
            named = f" (it references {found.group(1)})" if found else ""
            raise CheckpointError(f"{what} {path.name} {REFUSED_CODE}{named}; nothing in it was run") from None
        raise CheckpointError(f"{what} {path.name} is not a PyTorch checkpoint (corrupt or another kind of file)") from None
    except MemoryError:
        raise CheckpointError(f"{what} {path.name} is too large to load") from None
    except Exception:  # noqa: BLE001 - garbage bytes make torch's unpickler fail in many ways
        raise CheckpointError(f"{what} {path.name} is not a PyTorch checkpoint (corrupt or another kind of file)") from None
