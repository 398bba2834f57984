"""Load any still image as upright 8-bit RGB, and save RGB images atomically."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from fakelab.atomic import atomic_output
from fakelab.errors import InputError
from fakelab.video.reader import PathLike

SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
WHITE = (255, 255, 255, 255)
# Largest image decoded, read from the header before any pixel is: 40 MP (e.g. 7300x5500)
# is a 120 MB RGB array; the face pipeline's copies keep the whole job well under 2 GB.
MAX_IMAGE_PIXELS = 40_000_000


def load_image(path: PathLike) -> np.ndarray:
    """Return the image at `path` as an HxWx3 uint8 RGB array, turned as its EXIF says.

    Transparent pixels are composited over white; 16-bit images are scaled to 8 bits.
    """
    if not Path(path).is_file():
        reason = "no such file" if not Path(path).exists() else "not a regular file"
        raise InputError(f"{path} is not a readable image ({reason})")
    try:
        with warnings.catch_warnings():
            # Our own limit below is lower; Pillow's warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise InputError(
                    f"{path} is {width}x{height} pixels ({width * height / 1e6:.0f} MP); fakelab reads images "
                    f"up to {MAX_IMAGE_PIXELS / 1e6:.0f} MP: downscale it first"
                )
            if width < 1 or height < 1:
                raise InputError(f"{path} is an empty image ({width}x{height})")
            upright = ImageOps.exif_transpose(image)
            upright.load()
    except Image.DecompressionBombError:
        raise InputError(f"{path} has more pixels than Pillow will decode; fakelab reads images up to "
                         f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP: downscale it first") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports bad data with any of these, depending on the format.
        raise InputError(f"{path} is not a readable image ({exc})") from None
    return _to_rgb(upright)


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in SIXTEEN_BIT_MODES:
        gray = np.asarray(image, dtype=np.float64)
        # 65535 / 255 = 257: full 16-bit white maps to 255, and rounding keeps levels centred.
        gray8 = np.clip(np.rint(gray / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(gray8[:, :, None], 3, axis=2)
    if image.has_transparency_data:
        background = Image.new("RGBA", image.size, WHITE)
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.array(image.convert("RGB"))


def save_image(path: PathLike, image: np.ndarray) -> None:
    """Write an HxWx3 (or HxW grey) uint8 array to `path`, in the format its suffix names."""
    image_format = Image.registered_extensions().get(Path(path).suffix.lower())
    if image_format is None:
        raise InputError(f"cannot save an image to {path} (unknown image suffix)")
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.shape[2:] not in ((), (3,)) or array.ndim not in (2, 3):
        raise ValueError(f"images must be HxWx3 or HxW uint8, got {array.shape} {array.dtype}")
    options = {"quality": 95} if image_format == "JPEG" else {}
    with atomic_output(path) as temp_path:
        Image.fromarray(array).save(temp_path, format=image_format, **options)
