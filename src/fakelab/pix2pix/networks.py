"""The pix2pix networks (Isola et al. 2017) with the public pytorch-CycleGAN-and-pix2pix key names.

`UnetGenerator` nests `UnetSkipConnectionBlock`s from the outermost level in,
so its state_dict keys read `model.model.1.model.3...`, and `NLayerDiscriminator`
is one `Sequential` (`model.0`, `model.2`, ...): a `latest_net_G.pth` /
`latest_net_D.pth` of that release loads here unchanged, and ours load there.

Two details matter for numerical parity with the release:
- each inner block starts with an in-place LeakyReLU on its input, and that
  same (now activated) tensor is what the block concatenates as its skip;
- convolutions followed by BatchNorm have no bias; with InstanceNorm (no affine
  parameters, no running statistics) they do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fakelab.errors import CheckpointError

NORMS = ("batch", "instance")
# unet_256 halves 256 px eight times down to 1x1; unet_128 seven times from 128 px.
GENERATORS = {"unet_256": 8, "unet_128": 7}


def norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    raise ValueError(f"unknown norm '{norm}': use one of {', '.join(NORMS)}")


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down-sample, the inner levels, up-sample; the input is passed on as a skip."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "batch",
        use_dropout: bool = False,
    ):
        super().__init__()
        self.outermost = outermost
        use_bias = norm == "instance"
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.LeakyReLU(0.2, True)
        uprelu = nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [downrelu, downconv, uprelu, upconv, norm_layer(norm, outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [downrelu, downconv, norm_layer(norm, inner_nc), submodule, uprelu, upconv, norm_layer(norm, outer_nc)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        # The in-place LeakyReLU at the head of self.model has already activated x here.
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net from `input_nc` to `output_nc` channels with `num_downs` levels (8 for 256 px, 7 for 128 px).

    The `num_downs - 5` levels just outside the innermost one carry dropout
    (three for unet_256, two for unet_128), as in the release.
    """

    def __init__(
        self, input_nc: int = 3, output_nc: int = 3, num_downs: int = 8, ngf: int = 64, norm: str = "batch", use_dropout: bool = True
    ):
        super().__init__()
        if num_downs < 5:
            raise ValueError("a U-Net generator needs at least 5 levels")
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: `n_layers` 3 scores overlapping 70x70 patches (30x30 scores for 256 px input)."""

    def __init__(self, input_nc: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        use_bias = norm == "instance"
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            previous, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * previous, ndf * mult, kernel_size=4, stride=stride, padding=1, bias=use_bias),
                norm_layer(norm, ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@dataclass(frozen=True)
class GeneratorSpec:
    """What a generator's state_dict says about its architecture."""

    name: str  # unet_256 or unet_128
    input_nc: int
    output_nc: int
    ngf: int
    norm: str

    @property
    def size(self) -> int:
        return 2 ** GENERATORS[self.name]

    def build(self, use_dropout: bool = True) -> UnetGenerator:
        return UnetGenerator(self.input_nc, self.output_nc, GENERATORS[self.name], self.ngf, self.norm, use_dropout)


def build_generator(name: str = "unet_256", ngf: int = 64, norm: str = "batch", input_nc: int = 3, output_nc: int = 3, use_dropout: bool = True) -> UnetGenerator:
    if name not in GENERATORS:
        raise ValueError(f"unknown generator '{name}': use one of {', '.join(GENERATORS)}")
    return UnetGenerator(input_nc, output_nc, GENERATORS[name], ngf, norm, use_dropout)


def generator_spec(state: dict[str, torch.Tensor]) -> GeneratorSpec:
    """Read a U-Net generator's architecture off its state_dict (the release stores nothing else)."""
    first = state.get("model.model.0.weight")
    last = state.get("model.model.3.weight")
    if first is None or last is None or first.ndim != 4 or last.ndim != 4:
        raise CheckpointError("not a pix2pix U-Net generator state_dict (no model.model.0.weight / model.model.3.weight)")
    depth = 1
    # Level k + 1 is the submodule of level k: at index 1 of the outermost block, at index 3 inside.
    while any(key.startswith("model.model.1." + "model.3." * (depth - 1) + "model.") for key in state):
        depth += 1
    name = next((n for n, downs in GENERATORS.items() if downs == depth), None)
    if name is None:
        raise CheckpointError(f"a U-Net generator with {depth} levels is neither unet_256 (8) nor unet_128 (7)")
    return GeneratorSpec(name, int(first.shape[1]), int(last.shape[1]), int(first.shape[0]), _norm_of(state))


def discriminator_spec(state: dict[str, torch.Tensor]) -> tuple[int, int, int, str]:
    """(input_nc, ndf, n_layers, norm) of a PatchGAN state_dict."""
    first = state.get("model.0.weight")
    if first is None or first.ndim != 4:
        raise CheckpointError("not a pix2pix PatchGAN state_dict (no model.0.weight)")
    convs = sorted(int(key.split(".")[1]) for key in state if key.endswith(".weight") and state[key].ndim == 4)
    return int(first.shape[1]), int(first.shape[0]), len(convs) - 2, _norm_of(state)


def _norm_of(state: dict[str, torch.Tensor]) -> str:
    """BatchNorm has 1-d weights; the release's InstanceNorm has none (files from old PyTorch
    versions still carry its unused running statistics, so those do not tell)."""
    return "batch" if any(key.endswith(".weight") and value.ndim == 1 for key, value in state.items()) else "instance"


def _patched(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Files from PyTorch before 0.4 as the release patches them: no running statistics for
    InstanceNorm, and BatchNorm's `num_batches_tracked` (which eval mode does not use) filled in."""
    own = module.state_dict()
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    state = {key: value for key, value in state.items() if key in own or not key.endswith(statistics)}
    for key, value in own.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    return state


def load_state(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict strictly, with a one-line error naming the mismatch."""
    state = _patched(module, state)
    own = module.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    wrong = [key for key in own if key in state and tuple(state[key].shape) != tuple(own[key].shape)]
    if missing or unexpected or wrong:
        detail = (
            f"{len(missing)} missing (e.g. {missing[0]})" if missing
            else f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected
            else f"shape of {wrong[0]} is {tuple(state[wrong[0]].shape)}, expected {tuple(own[wrong[0]].shape)}"
        )
        raise CheckpointError(f"{what} does not fit the network: {detail}")
    module.load_state_dict(state)


def init_weights(module: nn.Module, gain: float = 0.02, generator: torch.Generator | None = None) -> None:
    """The release's `normal` init: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02), biases 0."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, 0.0, gain, generator=generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.normal_(layer.weight, 1.0, gain, generator=generator)
            nn.init.zeros_(layer.bias)
