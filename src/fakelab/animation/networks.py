"""Build the FOMM networks a config describes."""

from __future__ import annotations

from torch import nn

from fakelab.animation.config import FommConfig, as_kwargs
from fakelab.animation.fomm import KPDetector, MultiScaleDiscriminator, OcclusionAwareGenerator

#: Checkpoint sections, in the reference layout's names.
NETWORK_NAMES = ("kp_detector", "generator", "discriminator")


class FommNetworks(nn.Module):
    """The keypoint detector, generator and (for training) discriminator of one config.

    Its state_dict keys are `<network>.<official key>`, the flat layout of our
    safetensors files.
    """

    def __init__(self, config: FommConfig, with_discriminator: bool = False):
        super().__init__()
        params = config.model_params
        common = as_kwargs(params.common_params)
        self.config = config
        self.kp_detector = KPDetector(**as_kwargs(params.kp_detector_params), **common)
        self.generator = OcclusionAwareGenerator(**as_kwargs(params.generator_params), **common)
        self.discriminator = (
            MultiScaleDiscriminator(
                **as_kwargs(params.discriminator_params),
                num_kp=params.common_params.num_kp,
                num_channels=params.common_params.num_channels,
            )
            if with_discriminator
            else None
        )

    def present(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in NETWORK_NAMES if getattr(self, name) is not None}
