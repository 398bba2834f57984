"""An invisible watermark in the frames: a 64-bit payload that survives H.264, rescaling and crops.

Scheme (spread spectrum over a tiled, smooth pattern; no secret: anyone can check):
- The payload is 64 bits: tool code (8), version (8), content id (32), CRC-16 (16).
- Each bit k owns a pattern P_k on a 64x64 tile: 64 patterns made orthonormal on a 16x16
  grid (QR of a seeded Gaussian matrix), upsampled to cells of 4 px and smoothed, so the
  mark lives in the low-to-mid frequencies that H.264 keeps. The mark is
  W = sum_k b_k P_k (b_k = +-1), tiled over the frame, scaled by the local texture of the
  frame (strong where the picture is busy, weak on flat areas) and added to the luma.
  Frames larger than 256 px get larger tiles (64 px per 256 px of the short side), so the
  mark keeps its size relative to the picture.
- Detection needs neither the tile size nor where the picture was cut: the tiling makes the
  high-passed luma periodic, so the autocorrelation of the frames has peaks at the period
  in x and in y. The frames are resampled so that the period becomes 64 px, folded onto one
  tile (every tile averaged, over all frames looked at), and cross-correlated with each P_k
  at every cyclic shift; the shift where the 64 correlations are strongest is where the
  tile starts, and the signs there are the bits. The tool code and the CRC decide whether
  the payload is a fakelab mark (a chance match is about 1 in 16 million per file).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

TILE = 64  # pixels per tile side at the detector's scale
GRID = 16  # independent cells per tile side
BITS = 64
TOOL_CODE = 0xFA  # "fakelab"
PATTERN_SEED = 0x5EED_FA4E
STRENGTH = 3.0  # luma levels (std of the mark where the picture is of average texture)
BASE_SIZE = 256  # frames up to this short side get 64 px tiles
HIGH_PASS_SIGMA = 1.5
DETECT_FRAMES = 24  # frames of a video looked at
MIN_PERIOD, MAX_PERIOD = 24, 1024
PERIOD_STEP = 0.012  # relative step of the coarse period search
SEARCH_FRAMES = 6
PILOT_WEIGHT = 8.0  # the pilot's weight against one bit's: half of the mark's energy


@dataclass(frozen=True)
class Payload:
    """What the mark says: which tool made the file, its version, and an id of this output."""

    content_id: int  # 32 bits
    version: tuple[int, int]  # (major, minor), 4 bits each
    tool: int = TOOL_CODE

    @staticmethod
    def new(version: str | None = None) -> "Payload":
        from fakelab import __version__

        major, minor = (int(part) for part in (version or __version__).split(".")[:2])
        return Payload(content_id=secrets.randbits(32), version=(major, minor))

    @property
    def content_hex(self) -> str:
        return f"{self.content_id:08x}"

    def to_bits(self) -> np.ndarray:
        major, minor = self.version
        value = (self.tool << 40) | ((major & 15) << 36) | ((minor & 15) << 32) | (self.content_id & 0xFFFFFFFF)
        data = value.to_bytes(6, "big")
        word = (value << 16) | crc16(data)
        return np.array([(word >> (BITS - 1 - i)) & 1 for i in range(BITS)], dtype=np.uint8)

    @staticmethod
    def from_bits(bits: Sequence[int]) -> "Payload | None":
        """The payload these bits spell, or None when the CRC or the tool code disagree."""
        word = 0
        for bit in bits:
            word = (word << 1) | int(bit)
        value, check = word >> 16, word & 0xFFFF
        if crc16(value.to_bytes(6, "big")) != check or (value >> 40) != TOOL_CODE:
            return None
        return Payload(content_id=value & 0xFFFFFFFF, version=((value >> 36) & 15, (value >> 32) & 15))

    def describe(self) -> str:
        return f"fakelab {self.version[0]}.{self.version[1]}, content id {self.content_hex}"


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


@lru_cache(maxsize=1)
def _all_patterns() -> np.ndarray:
    """(1 + BITS, TILE, TILE) float32: the pilot, then one pattern per bit.

    Orthonormal on the 16x16 grid, then upsampled to 4 px cells and smoothed across the
    tile's edges (the tile repeats), so they stay nearly orthonormal.
    """
    rng = np.random.default_rng(PATTERN_SEED)
    basis, _ = np.linalg.qr(rng.standard_normal((GRID * GRID, BITS + 1)))
    cells = basis.T.reshape(BITS + 1, GRID, GRID)
    cell = TILE // GRID
    patterns = np.repeat(np.repeat(cells, cell, axis=1), cell, axis=2).astype(np.float32)
    for index, pattern in enumerate(patterns):
        wrapped = np.pad(pattern, TILE, mode="wrap")
        patterns[index] = cv2.GaussianBlur(wrapped, (0, 0), cell / 2.5)[TILE:-TILE, TILE:-TILE]
    patterns -= patterns.mean(axis=(1, 2), keepdims=True)
    patterns /= np.linalg.norm(patterns, axis=(1, 2), keepdims=True)
    return patterns


def bit_patterns() -> np.ndarray:
    return _all_patterns()[1:]


def pilot_pattern() -> np.ndarray:
    return _all_patterns()[0]


def _coefficients(bits: np.ndarray) -> np.ndarray:
    """Weights of the pilot and the 64 bit patterns in a tile of unit pixel std."""
    weights = np.concatenate([[PILOT_WEIGHT], bits.astype(np.float32) * 2 - 1])
    return weights * TILE / np.linalg.norm(weights)


def tile_for(bits: np.ndarray) -> np.ndarray:
    return np.tensordot(_coefficients(bits), _all_patterns(), axes=1).astype(np.float32)


def _luma(frame: np.ndarray) -> np.ndarray:
    rgb = frame.astype(np.float32)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


class Watermarker:
    """Adds the mark of one payload to frames of any size; a frame filter for writers.

    Informed embedding (after Malvar & Florencio's improved spread spectrum): once the
    texture-shaped mark is added, the frame is read back as the detector reads it, and a
    small uniform correction along the 64 patterns cancels what the picture itself
    contributes, so every bit leaves the marker with the same margin. The picture then
    hardly interferes with the reading, in this frame and, nearly, in its re-encodings.
    """

    def __init__(self, payload: Payload, strength: float = STRENGTH):
        self.payload = payload
        self.strength = strength
        self._weights = _coefficients(payload.to_bits())
        self._tile = tile_for(payload.to_bits())
        self._planes: dict[tuple[int, int, int], np.ndarray] = {}

    def _tiled(self, tile: np.ndarray, height: int, width: int, unit: int) -> np.ndarray:
        if unit > 1:
            tile = cv2.resize(tile, (TILE * unit, TILE * unit), interpolation=cv2.INTER_CUBIC)
        reps = (-(-height // tile.shape[0]), -(-width // tile.shape[1]))
        return np.tile(tile, reps)[:height, :width]

    def mark(self, frame: np.ndarray) -> np.ndarray:
        """The frame (HxWx3 uint8 RGB) with the mark added to its luma."""
        height, width = frame.shape[:2]
        unit = max(1, round(min(height, width) / BASE_SIZE))
        luma = _luma(frame)
        mean = cv2.GaussianBlur(luma, (0, 0), 2.0 * unit)
        texture = np.sqrt(np.maximum(cv2.GaussianBlur(luma * luma, (0, 0), 2.0 * unit) - mean * mean, 0))
        # Busy areas hide more; flat areas (skin, sky) get a third of the average strength.
        mask = np.clip(texture / 6.0, 0.35, 2.0)
        plane = self._planes.get((height, width, unit))
        if plane is None:
            plane = self._tiled(self._tile, height, width, unit)
            self._planes = {(height, width, unit): plane}  # one size per stream: keep one plane
        delta = self.strength * mask * plane
        # What the detector would read from this frame, and the correction that gives the pilot
        # and every bit the margin they would have on a flat picture. Twice: borders and
        # clipping make one step inexact.
        period = (float(TILE * unit), float(TILE * unit))
        target = self._weights * self.strength * float(mask.mean()) * _high_pass_gain()
        for _ in range(2):
            marked = np.clip(luma + delta, 0, 255)
            folded, count = _fold(_high_pass(marked), period)
            projections = np.tensordot(_all_patterns(), folded / np.maximum(count, 1), axes=([1, 2], [0, 1]))
            correction = np.clip(target - projections, -3 * np.abs(target), 3 * np.abs(target)) / _high_pass_gain()
            delta += self._tiled(np.tensordot(correction, _all_patterns(), axes=1).astype(np.float32), height, width, unit)
        return np.clip(np.rint(frame.astype(np.float32) + delta[..., None]), 0, 255).astype(np.uint8)

    def frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for frame in frames:
            yield self.mark(frame)


@lru_cache(maxsize=1)
def _high_pass_gain() -> float:
    """How much of a pattern the detector's high-pass keeps (the patterns are alike in spectrum)."""
    patterns = bit_patterns()
    tiled = np.tile(patterns[0], (3, 3))
    kept = _high_pass(tiled)[TILE : 2 * TILE, TILE : 2 * TILE]
    return float((kept * patterns[0]).sum())


def mark_frames(frames: Iterable[np.ndarray], payload: Payload | None = None) -> Iterator[np.ndarray]:
    """Mark every frame with `payload` (a new one when None)."""
    return Watermarker(payload or Payload.new()).frames(frames)


@dataclass(frozen=True)
class WatermarkReading:
    """What the detector read from a file or frames."""

    found: bool
    payload: Payload | None
    bits: np.ndarray  # the 64 bits read, whether or not they form a payload
    confidence: float  # mean |z| of the 64 bit correlations where the pilot is (about 0.8 for noise)
    sync: float  # the pilot's peak-to-sidelobe ratio (about 4 without a mark)
    period: tuple[float, float]  # tile period found in x and y, pixels
    frames: int

    def bit_accuracy(self, payload: Payload) -> float:
        return float(np.mean(self.bits == payload.to_bits()))

    def describe(self) -> str:
        if self.found:
            return f"watermark: {self.payload.describe()} ({BITS}/{BITS} bits with a valid checksum, confidence {self.confidence:.1f})"
        return f"watermark: none found (confidence {self.confidence:.1f} in {self.frames} frame(s))"

    def to_json(self) -> dict:
        return {
            "found": self.found,
            "tool": "fakelab" if self.found else None,
            "version": f"{self.payload.version[0]}.{self.payload.version[1]}" if self.found else None,
            "content_id": self.payload.content_hex if self.found else None,
            "bits": "".join(str(int(b)) for b in self.bits),
            "confidence": round(self.confidence, 3),
            "sync": round(self.sync, 2),
            "period_px": [round(p, 2) for p in self.period],
            "frames": self.frames,
        }


def _high_pass(luma: np.ndarray) -> np.ndarray:
    return luma - cv2.GaussianBlur(luma, (0, 0), HIGH_PASS_SIGMA)


def _fold(residual: np.ndarray, period: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the residual over every tile (after resampling to a 64 px period) and the count."""
    height, width = residual.shape
    new_width = max(TILE, round(width * TILE / period[0]))
    new_height = max(TILE, round(height * TILE / period[1]))
    shrinking = new_width < width
    resized = cv2.resize(residual, (new_width, new_height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    pad_y, pad_x = -new_height % TILE, -new_width % TILE
    padded = np.pad(resized, ((0, pad_y), (0, pad_x)))
    weights = np.pad(np.ones_like(resized), ((0, pad_y), (0, pad_x)))
    shape = (padded.shape[0] // TILE, TILE, padded.shape[1] // TILE, TILE)
    return padded.reshape(shape).sum(axis=(0, 2)), weights.reshape(shape).sum(axis=(0, 2))


def _folded_tile(residuals: Sequence[np.ndarray], period: float) -> np.ndarray:
    total = np.zeros((TILE, TILE), np.float64)
    count = np.zeros((TILE, TILE), np.float64)
    for residual in residuals:
        folded, weight = _fold(residual, (period, period))
        total += folded
        count += weight
    tile = total / np.maximum(count, 1)
    return tile - tile.mean()


def _pilot_peak(tile: np.ndarray) -> tuple[float, tuple[int, int], float]:
    """Where the pilot starts in a folded tile: (peak-to-sidelobe ratio, shift, noise std).

    The ratio is (peak - mean) / std of the pilot's correlation over all 4096 cyclic
    shifts: about 4 at the best shift of a picture without a mark.
    """
    # correlation[dy, dx] = sum over the tile of tile(y + dy, x + dx) * pilot(y, x)
    correlation = np.fft.ifft2(np.fft.fft2(tile) * _pilot_spectrum()).real
    best = int(correlation.argmax())
    dy, dx = np.unravel_index(best, correlation.shape)
    spread = float(correlation.std()) + 1e-12
    return (float(correlation.flat[best]) - float(correlation.mean())) / spread, (int(dy), int(dx)), spread


@lru_cache(maxsize=1)
def _pilot_spectrum() -> np.ndarray:
    return np.conj(np.fft.fft2(pilot_pattern()))


def _candidate_periods(height: int, width: int) -> np.ndarray:
    """Tile periods to try: the marker's own (64 px per 256 px of the short side) at any scale."""
    longest = min(MAX_PERIOD, min(height, width) / 1.5)
    return np.exp(np.arange(np.log(MIN_PERIOD), np.log(max(longest, MIN_PERIOD)) + 1e-9, np.log(1 + PERIOD_STEP)))


def read_frames(frames: Sequence[np.ndarray]) -> WatermarkReading:
    """Read the mark from frames of one stream (same size; any scale and crop of the marked ones)."""
    if not frames:
        raise ValueError("no frames to read a watermark from")
    residuals = [_high_pass(_luma(frame)) for frame in frames]
    height, width = residuals[0].shape
    # Coarse search on a few frames, then a fine one around the best periods on all of them.
    probe = residuals[:: max(1, len(residuals) // SEARCH_FRAMES)][:SEARCH_FRAMES]
    coarse = sorted(
        ((_pilot_peak(_folded_tile(probe, period))[0], period) for period in _candidate_periods(height, width)),
        reverse=True,
    )
    best = (-np.inf, float(TILE), np.zeros((TILE, TILE)), (0, 0), 1.0)
    for _, around in coarse[:3]:
        for period in around * (1 + np.linspace(-PERIOD_STEP, PERIOD_STEP, 7)):
            tile = _folded_tile(residuals, period)
            ratio, shift, spread = _pilot_peak(tile)
            if ratio > best[0]:
                best = (ratio, float(period), tile, shift, spread)
    ratio, best_period, tile, (dy, dx), spread = best
    aligned = np.roll(tile, (-dy, -dx), axis=(0, 1))
    best_z = np.tensordot(bit_patterns(), aligned, axes=([1, 2], [0, 1])) / spread
    bits = (best_z > 0).astype(np.uint8)
    payload = Payload.from_bits(bits)
    return WatermarkReading(
        found=payload is not None,
        payload=payload,
        bits=bits,
        confidence=float(np.abs(best_z).mean()),
        sync=float(ratio),
        period=(best_period, best_period),
        frames=len(frames),
    )


def sample_frames(path: str | os.PathLike, count: int = DETECT_FRAMES) -> list[np.ndarray]:
    """Up to `count` frames spread through a video (the image itself for a still)."""
    from fakelab.detection.pipeline import IMAGE_SUFFIXES
    from fakelab.video import iter_frames, load_image, probe_video

    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [load_image(path)]
    total = max(1, probe_video(path).frame_count)
    wanted = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist())
    return [frame for index, frame in enumerate(islice(iter_frames(path), total)) if index in wanted]


def read_file(path: str | os.PathLike, frames: int = DETECT_FRAMES) -> WatermarkReading:
    """Read the mark of a video or image file."""
    return read_frames(sample_frames(path, frames))
