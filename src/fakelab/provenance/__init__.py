"""Provenance on everything fakelab makes: an invisible watermark in the frames and a signed
C2PA manifest on the file, and the check that reads both back.

For code that writes media (animate, attacks, and later pix2pix and live recordings):

    stamp = Stamp.new()                      # or Stamp.new(enabled=False) for --no-provenance
    with VideoWriter(path, fps) as writer:
        for frame in stamp.frames(frames):   # the watermark, a frame filter
            writer.write(frame)
    stamp.sign(path, inputs=[source, driving], parameters={"model": "fomm"})   # the manifest

`mark_frames(frames, payload)` and `sign_output(path, inputs, ...)` are the two halves on
their own; `check_file(path)` reads both.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from fakelab.provenance.c2pa_manifest import (
    COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
    TRAINED_ALGORITHMIC_MEDIA,
    ManifestReading,
    ProvenanceError,
    can_sign,
    read_manifest,
    sign_output,
    signing_identity,
)
from fakelab.provenance.watermark import Payload, Watermarker, WatermarkReading, mark_frames, read_file, read_frames

__all__ = [
    "COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA",
    "TRAINED_ALGORITHMIC_MEDIA",
    "ManifestReading",
    "Payload",
    "ProvenanceError",
    "ProvenanceReport",
    "Stamp",
    "Watermarker",
    "WatermarkReading",
    "check_file",
    "mark_frames",
    "read_file",
    "read_frames",
    "read_manifest",
    "sign_output",
    "signing_identity",
]


class Stamp:
    """The provenance of one output: one payload for its frames, one manifest for its file."""

    def __init__(self, payload: Payload | None, enabled: bool = True, watermark: bool = True):
        self.enabled = enabled
        self.payload = payload
        self._marker = Watermarker(payload) if enabled and watermark and payload is not None else None

    @staticmethod
    def new(enabled: bool = True) -> "Stamp":
        return Stamp(Payload.new() if enabled else None, enabled)

    @staticmethod
    def for_edit_of(video: str | os.PathLike, enabled: bool = True) -> "Stamp":
        """For an output made by editing `video`: a fakelab mark already in it is kept as it is
        (a second mark over it would garble both); an unmarked video gets a new one."""
        if not enabled:
            return Stamp(None, False)
        reading = read_file(video)
        if reading.found:
            return Stamp(reading.payload, True, watermark=False)
        return Stamp.new()

    def mark(self, frame: np.ndarray) -> np.ndarray:
        return self._marker.mark(frame) if self._marker is not None else frame

    def frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        if self._marker is None:
            return iter(frames)
        return self._marker.frames(frames)

    def sign(
        self,
        path: str | os.PathLike,
        inputs: Iterable[str | os.PathLike | object] = (),
        *,
        action: str = "c2pa.created",
        source_type: str = TRAINED_ALGORITHMIC_MEDIA,
        description: str = "",
        parameters: dict | None = None,
    ) -> dict | None:
        """Sign `path` (already written). Inputs that are not files (arrays) are skipped.

        A format C2PA cannot carry (.mkv) keeps the watermark only, with a note on stderr.
        If signing fails the output is removed: fakelab leaves no unlabelled file behind.
        """
        if not self.enabled:
            return None
        if not can_sign(path):
            print(f"note: {Path(path).name} carries the watermark but no C2PA manifest (C2PA does not cover {Path(path).suffix})",
                  file=sys.stderr)
            return None
        files = [Path(item) for item in inputs if isinstance(item, (str, os.PathLike)) and Path(item).is_file()]
        try:
            return sign_output(path, files, action=action, source_type=source_type, description=description,
                               parameters=parameters, content_id=self.payload.content_hex if self.payload else None)
        except BaseException:
            Path(path).unlink(missing_ok=True)
            raise


@dataclass
class ProvenanceReport:
    path: Path
    watermark: WatermarkReading | None
    manifest: ManifestReading
    watermark_error: str | None = None

    @property
    def made_by_fakelab(self) -> bool:
        return bool(self.watermark and self.watermark.found) or self.manifest.made_by_fakelab

    def verdict(self) -> str:
        if self.made_by_fakelab:
            return "made by fakelab"
        if self.manifest.present and not self.manifest.valid and self.manifest.fakelab is not None:
            return "claims to be made by fakelab, but the manifest is invalid (edited after signing?)"
        return "no fakelab provenance found"

    def describe(self) -> str:
        watermark = self.watermark.describe() if self.watermark else f"watermark: not read ({self.watermark_error})"
        return "\n".join([f"provenance: {self.verdict()}", "  " + watermark, "  " + self.manifest.describe()])

    def to_json(self) -> dict:
        return {
            "file": str(self.path),
            "verdict": self.verdict(),
            "made_by_fakelab": self.made_by_fakelab,
            "watermark": self.watermark.to_json() if self.watermark else {"error": self.watermark_error},
            "c2pa": self.manifest.to_json(),
        }


def check_file(path: str | os.PathLike, frames: int | None = None) -> ProvenanceReport:
    """Read the watermark and the C2PA manifest of a video or image."""
    from fakelab.errors import InputError
    from fakelab.provenance.watermark import DETECT_FRAMES

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    watermark, problem = None, None
    try:
        watermark = read_file(path, frames or DETECT_FRAMES)
    except InputError as error:
        problem = str(error)
    manifest = read_manifest(path)
    if watermark is None and not manifest.present:
        raise InputError(problem or f"{path} is neither a readable video nor an image")
    return ProvenanceReport(path, watermark, manifest, problem)
