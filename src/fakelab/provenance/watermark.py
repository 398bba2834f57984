"""An invisible watermark in the frames: a 64-bit payload meant to survive H.264, rescaling and crops.

Scheme (spread spectrum over a tiled, smooth pattern; no secret: anyone can check):
- The payload is 64 bits: version (8), content id (32), CRC-24 keyed with "fakelab" (24).
  It is sent with a rate-1/2 convolutional code (constraint length 7) as 140 channel bits.
- A pilot and each channel bit own a pattern on a 64x64 tile: orthonormal on a 16x16 grid
  (QR of a seeded Gaussian matrix), upsampled to cells of 4 px and smoothed, so the mark
  lives in the low-to-mid frequencies that H.264 and downscaling keep. The mark
  W = pilot + sum_k b_k P_k (b_k = +-1) is tiled over the frame, scaled by the local texture
  (strong where the picture is busy, weak on flat areas) and added to the luma; then a small
  uniform correction cancels what the picture itself projects onto the patterns (informed
  embedding). Frames larger than 256 px get larger tiles (64 px per 256 px of the short
  side), so the mark keeps its size relative to the picture.
- Detection needs neither the tile size nor where the picture was cut: the luma of the
  frames is resampled for each candidate period (24 to 1024 px, 1.2% steps) to 64 px tiles,
  high-passed at that scale, folded
  onto one 64x64 tile (every tile of every frame averaged) and cross-correlated with the
  pilot at every cyclic shift. The period and shift with the sharpest pilot peak give the
  tile's scale and origin; the 140 correlations there are decoded by soft Viterbi, and the
  keyed checksum decides whether the payload is a fakelab mark.
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
PAYLOAD_BITS = 64  # version 8, content id 32, checksum 24
BITS = 2 * (PAYLOAD_BITS + 6)  # channel bits: the payload and the encoder's tail, at code rate 1/2
CRC_KEY = b"fakelab"
# Unmarked pictures decode to some code word too (about 80% of their channel bits agree
# with it), so it is the keyed 24-bit checksum that tells a mark from chance: a false
# alarm once in 16.7 million readings, once in 1.9 million files (9 alignments are decoded).
MIN_AGREEMENT = 0.7
PATTERN_SEED = 0x5EED_FA4E
STRENGTH = 3.0  # luma levels (std of the mark where the picture is of average texture), at 256 px
BASE_SIZE = 256  # frames up to this short side get 64 px tiles
HIGH_PASS_SIGMA = 1.5
DETECT_FRAMES = 24  # frames of a video looked at
MIN_PERIOD, MAX_PERIOD = 24, 1024
PERIOD_STEP = 0.012  # relative step of the coarse period search
SEARCH_FRAMES = 6
CORRECTION_LIMIT = 3.0  # the correction of the picture's own interference, at most this many times the target
PILOT_WEIGHT = 8.0  # the pilot's weight against one bit's: half of the mark's energy


@dataclass(frozen=True)
class Payload:
    """What the mark says: which tool made the file (fakelab: the checksum is keyed with its
    name), its version, and an id of this output."""

    content_id: int  # 32 bits
    version: tuple[int, int]  # (major, minor), 4 bits each

    @staticmethod
    def new(version: str | None = None) -> "Payload":
        from fakelab import __version__

        major, minor = (int(part) for part in (version or __version__).split(".")[:2])
        return Payload(content_id=secrets.randbits(32), version=(major, minor))

    @property
    def content_hex(self) -> str:
        return f"{self.content_id:08x}"

    def _data(self) -> bytes:
        major, minor = self.version
        return bytes([((major & 15) << 4) | (minor & 15)]) + (self.content_id & 0xFFFFFFFF).to_bytes(4, "big")

    def to_bits(self) -> np.ndarray:
        """The PAYLOAD_BITS information bits: version, content id, CRC-24 keyed with "fakelab"."""
        data = self._data()
        word = (int.from_bytes(data, "big") << 24) | crc24(CRC_KEY + data)
        return np.array([(word >> (PAYLOAD_BITS - 1 - i)) & 1 for i in range(PAYLOAD_BITS)], dtype=np.uint8)

    @staticmethod
    def from_bits(bits: Sequence[int]) -> "Payload | None":
        """The payload these bits spell, or None when the keyed checksum disagrees."""
        word = 0
        for bit in bits:
            word = (word << 1) | int(bit)
        value, check = word >> 24, word & 0xFFFFFF
        data = value.to_bytes(5, "big")
        if crc24(CRC_KEY + data) != check:
            return None
        return Payload(content_id=value & 0xFFFFFFFF, version=(data[0] >> 4, data[0] & 15))

    def describe(self) -> str:
        return f"fakelab {self.version[0]}.{self.version[1]}, content id {self.content_hex}"


def crc24(data: bytes) -> int:
    """CRC-24 of OpenPGP (RFC 4880)."""
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


# The payload is sent with the rate-1/2 convolutional code of constraint length 7
# (generators 171 and 133 octal, as in 802.11 and deep-space links) and decoded by soft
# Viterbi: the reader weighs each channel bit by how clearly it was read.
GENERATORS = (0o171, 0o133)
MEMORY = 6


def _parity(value: int) -> int:
    return bin(value).count("1") & 1


@lru_cache(maxsize=1)
def _trellis() -> tuple[np.ndarray, np.ndarray]:
    """next_state[state, bit] and outputs[state, bit, 2] of the encoder."""
    states = 1 << MEMORY
    next_state = np.zeros((states, 2), np.int64)
    outputs = np.zeros((states, 2, 2), np.int64)
    for state in range(states):
        for bit in (0, 1):
            register = (bit << MEMORY) | state
            next_state[state, bit] = register >> 1
            outputs[state, bit] = [_parity(register & g) for g in GENERATORS]
    return next_state, outputs


def encode(bits: Sequence[int]) -> np.ndarray:
    next_state, outputs = _trellis()
    state, coded = 0, []
    for bit in [*map(int, bits), *[0] * MEMORY]:  # the tail returns the encoder to state 0
        coded.extend(outputs[state, bit])
        state = next_state[state, bit]
    return np.array(coded, dtype=np.uint8)


def viterbi(soft: np.ndarray) -> np.ndarray:
    """The information bits whose code word best matches `soft` (positive: a 1 was read)."""
    next_state, outputs = _trellis()
    signs = outputs * 2 - 1  # (states, 2, 2)
    steps = len(soft) // 2
    metric = np.full(1 << MEMORY, -np.inf)
    metric[0] = 0.0
    back = np.zeros((steps, 1 << MEMORY, 2), np.int64)  # (previous state, bit) of the survivor
    for step in range(steps):
        branch = metric[:, None] + signs @ soft[2 * step : 2 * step + 2]  # (states, bit)
        new = np.full(1 << MEMORY, -np.inf)
        for bit in (0, 1):
            targets = next_state[:, bit]
            better = branch[:, bit] > new[targets]
            # Each target state is reached from exactly two (state, bit) pairs; keep the better.
            for state in np.nonzero(better)[0]:
                target = targets[state]
                if branch[state, bit] > new[target]:
                    new[target] = branch[state, bit]
                    back[step, target] = (state, bit)
        metric = new
    state, bits = 0, []
    for step in range(steps - 1, -1, -1):
        state, bit = back[step, state]
        bits.append(bit)
    return np.array(bits[::-1][: steps - MEMORY], dtype=np.uint8)


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
    return _combine(_coefficients(bits), _all_patterns())


# einsum rather than tensordot/matmul: these products are small, and a threaded BLAS on a
# busy machine made them a hundred times slower.
def _combine(weights: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    return np.einsum("k,kij->ij", weights.astype(np.float32), patterns)


def _project(patterns: np.ndarray, tile: np.ndarray) -> np.ndarray:
    return np.einsum("kij,ij->k", patterns, tile.astype(np.float32)).astype(np.float64)


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
        channel = encode(payload.to_bits())
        self._weights = _coefficients(channel)
        self._tile = tile_for(channel)
        self._planes: dict[tuple[int, int, int], np.ndarray] = {}

    def _tiled(self, tile: np.ndarray, height: int, width: int, unit: int) -> np.ndarray:
        if unit > 1:
            tile = cv2.resize(tile, (TILE * unit, TILE * unit), interpolation=cv2.INTER_CUBIC)
        reps = (-(-height // tile.shape[0]), -(-width // tile.shape[1]))
        return np.tile(tile, reps)[:height, :width]

    def mark(self, frame: np.ndarray) -> np.ndarray:
        """The frame (HxWx3 uint8 RGB) with the mark added to its luma."""
        height, width = frame.shape[:2]
        unit = _tile_unit(height, width)
        luma = _luma(frame)
        mean = cv2.GaussianBlur(luma, (0, 0), 2.0 * unit)
        texture = np.sqrt(np.maximum(cv2.GaussianBlur(luma * luma, (0, 0), 2.0 * unit) - mean * mean, 0))
        # Busy areas hide more; flat areas (skin, sky) get a third of the average strength.
        mask = np.clip(texture / 6.0, 0.35, 2.0)
        plane = self._planes.get((height, width, unit))
        if plane is None:
            plane = self._tiled(self._tile, height, width, unit)
            self._planes = {(height, width, unit): plane}  # one size per stream: keep one plane
        # The same strength at every size: the reader resamples to the tile's scale before it
        # high-passes (see _fold), so a large tile keeps its energy. (Divided by `unit`, as it
        # once was, frames of 512 px and more were mostly unreadable.)
        strength = self.strength
        delta = strength * mask * plane
        # What the detector would read from this frame, and the correction that gives the pilot
        # and every bit the margin they would have on a flat picture. Twice: borders and
        # clipping make one step inexact.
        period = (float(TILE * unit), float(TILE * unit))
        target = self._weights * strength * float(mask.mean()) * _high_pass_gain()
        for _ in range(2):
            marked = np.clip(luma + delta, 0, 255)
            folded, count = _fold(marked, period)
            projections = _project(_all_patterns(), folded / np.maximum(count, 1))
            limit = CORRECTION_LIMIT * np.abs(target)
            correction = np.clip(target - projections, -limit, limit) / _high_pass_gain()
            delta += self._tiled(_combine(correction, _all_patterns()), height, width, unit)
        return np.clip(np.rint(frame.astype(np.float32) + delta[..., None]), 0, 255).astype(np.uint8)

    def frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for frame in frames:
            yield self.mark(frame)


def _tile_unit(height: int, width: int) -> int:
    """Tile side in 64 px units for a frame of this size: 1 up to a short side of 383 px, then one
    more per 256 px, so the mark keeps its size relative to the picture."""
    return max(1, round(min(height, width) / BASE_SIZE))


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
    bits: np.ndarray  # the PAYLOAD_BITS decoded, whether or not they form a payload
    agreement: float  # share of the channel bits read that agree with the decoded code word
    confidence: float  # mean |z| of the 64 bit correlations where the pilot is (about 0.8 for noise)
    sync: float  # the pilot's peak-to-sidelobe ratio (about 4 without a mark)
    period: tuple[float, float]  # tile period found in x and y, pixels
    frames: int

    def bit_accuracy(self, payload: Payload) -> float:
        return float(np.mean(self.bits == payload.to_bits()))

    def describe(self) -> str:
        if self.found:
            return (f"watermark: {self.payload.describe()} ({PAYLOAD_BITS}-bit payload decoded with a valid checksum; "
                    f"{self.agreement:.0%} of the {BITS} channel bits agree)")
        return f"watermark: none found ({self.agreement:.0%} of the channel bits agree with the best code word, in {self.frames} frame(s))"

    def to_json(self) -> dict:
        return {
            "found": self.found,
            "tool": "fakelab" if self.found else None,
            "version": f"{self.payload.version[0]}.{self.payload.version[1]}" if self.found else None,
            "content_id": self.payload.content_hex if self.found else None,
            "bits": "".join(str(int(b)) for b in self.bits),
            "confidence": round(self.confidence, 3),
            "agreement": round(self.agreement, 3),
            "sync": round(self.sync, 2),
            "period_px": [round(p, 2) for p in self.period],
            "frames": self.frames,
        }


def _high_pass(luma: np.ndarray) -> np.ndarray:
    return luma - cv2.GaussianBlur(luma, (0, 0), HIGH_PASS_SIGMA)


def _fold(luma: np.ndarray, period: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the high-passed luma over every tile and the count, at the tile's own scale.

    The luma is resampled to a 64 px period first and high-passed there: the pattern then
    meets the same filter at every frame size. (High-passed at full resolution, a mark on
    tiles of 128 px or more lost three quarters of its energy to the filter, and the marker,
    calibrated at 64 px, under-corrected: frames of 512 px and more were often unreadable.)"""
    height, width = luma.shape
    new_width = max(TILE, round(width * TILE / period[0]))
    new_height = max(TILE, round(height * TILE / period[1]))
    shrinking = new_width < width
    resized = cv2.resize(luma, (new_width, new_height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    resized = _high_pass(resized)
    pad_y, pad_x = -new_height % TILE, -new_width % TILE
    padded = np.pad(resized, ((0, pad_y), (0, pad_x)))
    weights = np.pad(np.ones_like(resized), ((0, pad_y), (0, pad_x)))
    shape = (padded.shape[0] // TILE, TILE, padded.shape[1] // TILE, TILE)
    return padded.reshape(shape).sum(axis=(0, 2)), weights.reshape(shape).sum(axis=(0, 2))


def _folded_tile(lumas: Sequence[np.ndarray], period: float) -> np.ndarray:
    total = np.zeros((TILE, TILE), np.float64)
    count = np.zeros((TILE, TILE), np.float64)
    for luma in lumas:
        folded, weight = _fold(luma, (period, period))
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
    lumas = [_luma(frame) for frame in frames]  # high-passed by `_fold`, at each period's scale
    height, width = lumas[0].shape
    # Coarse search on a few frames, then a fine one around the best periods on all of them.
    probe = lumas[:: max(1, len(lumas) // SEARCH_FRAMES)][:SEARCH_FRAMES]
    coarse = sorted(
        ((_pilot_peak(_folded_tile(probe, period))[0], period) for period in _candidate_periods(height, width)),
        reverse=True,
    )
    best = (-np.inf, float(TILE), np.zeros((TILE, TILE)), (0, 0), 1.0)
    # The period the marker uses at this very size is tried exactly: a file read as it was
    # written (not rescaled) is the common case, and on small frames (3 tiles a side) the
    # 0.4% grid of the fine search can miss it by enough to lose the payload.
    native = float(TILE * _tile_unit(height, width))
    fine = [period for _, around in coarse[:3] for period in around * (1 + np.linspace(-PERIOD_STEP, PERIOD_STEP, 7))]
    for period in [native, *fine]:
            tile = _folded_tile(lumas, period)
            ratio, shift, spread = _pilot_peak(tile)
            if ratio > best[0]:
                best = (ratio, float(period), tile, shift, spread)
    ratio, best_period, tile, (dy, dx), spread = best
    # The pilot is smooth, so its correlation peak is a pixel or two wide and the picture can
    # tip it to a neighbour of the true origin (on 192 px clips, half the time). The code is
    # sharper: decode at the peak and its eight neighbours and keep the reading whose channel
    # bits agree best with their code word.
    readings = []
    for ey in (-1, 0, 1):
        for ex in (-1, 0, 1):
            z = _project(bit_patterns(), np.roll(tile, (-(dy + ey), -(dx + ex)), axis=(0, 1))) / spread
            bits = viterbi(z)
            readings.append((float(np.mean(encode(bits) == (z > 0))), ey == ex == 0, bits, z))
    agreement, _, bits, best_z = max(readings, key=lambda reading: reading[:2])
    payload = Payload.from_bits(bits) if agreement >= MIN_AGREEMENT else None
    return WatermarkReading(
        found=payload is not None,
        agreement=agreement,
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
