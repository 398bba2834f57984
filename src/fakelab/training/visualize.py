"""A picture of a training batch: source, driving, warped source, prediction, occlusion.

One row per sample (up to `max_rows`); keypoints are drawn as coloured dots,
the same colour for the same keypoint in every column.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch
import torch.nn.functional as F

from fakelab.animation.engine import tensor_to_frames


def keypoint_colours(count: int) -> np.ndarray:
    return np.array([colorsys.hsv_to_rgb(i / max(count, 1), 1.0, 1.0) for i in range(count)]) * 255


def draw_keypoints(image: np.ndarray, keypoints: np.ndarray, radius: int) -> np.ndarray:
    """Dots at (K, 2) keypoints given in [-1, 1] (x, y)."""
    out = image.copy()
    height, width = image.shape[:2]
    ys, xs = np.mgrid[:height, :width]
    for (x, y), colour in zip(keypoints, keypoint_colours(len(keypoints))):
        centre_x, centre_y = (x + 1) / 2 * (width - 1), (y + 1) / 2 * (height - 1)
        disc = (xs - centre_x) ** 2 + (ys - centre_y) ** 2 <= radius**2
        out[disc] = colour.astype(np.uint8)
    return out


def _resized(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return F.interpolate(images.float(), size=(height, width), mode="bilinear", align_corners=False)


def batch_picture(source: torch.Tensor, driving: torch.Tensor, generated: dict, max_rows: int = 4) -> np.ndarray:
    """An HxWx3 uint8 grid of the first samples of a batch and what the model made of them."""
    rows = min(max_rows, source.shape[0])
    height, width = source.shape[2:]
    radius = max(1, round(width / 64))
    kp_source = generated["kp_source"].value[:rows].detach().float().cpu().numpy()
    kp_driving = generated["kp_driving"].value[:rows].detach().float().cpu().numpy()
    columns = [
        [draw_keypoints(frame, kp, radius) for frame, kp in zip(tensor_to_frames(source[:rows].detach()), kp_source)],
        [draw_keypoints(frame, kp, radius) for frame, kp in zip(tensor_to_frames(driving[:rows].detach()), kp_driving)],
    ]
    for key in ("deformed", "prediction", "occlusion_map"):
        if key in generated:
            columns.append(tensor_to_frames(_resized(generated[key][:rows].detach(), height, width)))
    return np.concatenate([np.concatenate(row, axis=1) for row in zip(*columns)], axis=0)
