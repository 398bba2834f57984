"""The First Order Motion Model (Siarohin et al., NeurIPS 2019) as plain nn.Modules.

Module and parameter names follow the official release so that its checkpoints
load unchanged; see `fakelab.animation.checkpoint`.
"""

from fakelab.animation.fomm.dense_motion import DenseMotionNetwork
from fakelab.animation.fomm.discriminator import MultiScaleDiscriminator
from fakelab.animation.fomm.generator import OcclusionAwareGenerator, PreparedSource
from fakelab.animation.fomm.keypoint_detector import KPDetector
from fakelab.animation.fomm.keypoints import Keypoints

__all__ = [
    "DenseMotionNetwork",
    "KPDetector",
    "Keypoints",
    "MultiScaleDiscriminator",
    "OcclusionAwareGenerator",
    "PreparedSource",
]
