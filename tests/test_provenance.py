"""Provenance: the watermark round trip, the signed C2PA manifest of an animated mp4, the check command."""

from __future__ import annotations

import subprocess
import sys
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest

import fakelab
from fakelab.animation.landmark_warp import LandmarkWarpAnimator
from fakelab.provenance import Payload, Watermarker, check_file, read_frames, read_manifest
from fakelab.video import VideoWriter, iter_frames


@pytest.fixture(scope="module")
def talking_frames():
    from tests.conftest import shared_path

    frames = islice(iter_frames(shared_path("media", "d11.mp4")), 0, 48, 4)
    return [cv2.resize(frame, (256, 256), interpolation=cv2.INTER_AREA) for frame in frames]


def test_payload_bits_round_trip_and_checksum():
    payload = Payload(content_id=0xDEADBEEF, version=(0, 1))
    bits = payload.to_bits()
    assert len(bits) == 64 and Payload.from_bits(bits) == payload
    assert Payload.from_bits(bits[::-1]) is None
    flipped = bits.copy()
    flipped[20] ^= 1
    assert Payload.from_bits(flipped) is None


def test_watermark_round_trip_survives_downscale_and_crop(talking_frames):
    payload = Payload(content_id=0x1234ABCD, version=(0, 1))
    marked = [Watermarker(payload).mark(frame) for frame in talking_frames]
    difference = np.array(marked, float) - np.array(talking_frames, float)
    assert 10 * np.log10(255**2 / np.mean(difference**2)) > 36  # PSNR: invisible at normal viewing

    assert read_frames(marked).payload == payload
    half = [cv2.resize(frame, (128, 128), interpolation=cv2.INTER_AREA) for frame in marked]
    assert read_frames(half).payload == payload
    cropped = [frame[26:230, 26:230] for frame in marked]
    assert read_frames(cropped).payload == payload
    clean = read_frames(talking_frames)
    assert not clean.found and clean.payload is None


@pytest.mark.parametrize("portrait", ["s4.jpg", "s7.jpg"])
def test_the_mark_reads_back_at_native_portrait_sizes(portrait):
    # 720 and 852 px: tiles of 192 px. The detector high-passes at the tile's own scale; at
    # full resolution it lost most of such a mark and these frames were unreadable.
    from fakelab.video import load_image
    from tests.conftest import shared_path

    image = load_image(shared_path("media", portrait))
    payload = Payload(content_id=0x0BADCAFE, version=(0, 1))
    marked = Watermarker(payload).mark(image)
    assert 10 * np.log10(255**2 / np.mean((marked.astype(float) - image) ** 2)) > 30
    assert read_frames([marked]).payload == payload
    half = cv2.resize(marked, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    assert read_frames([half]).payload == payload
    assert not read_frames([image]).found


@pytest.fixture(scope="module")
def animated(tmp_path_factory, talking_frames):
    from tests.conftest import shared_path

    folder = tmp_path_factory.mktemp("animated")
    driving = folder / "driving.mp4"
    with VideoWriter(driving, 25) as writer:
        for frame in talking_frames:
            writer.write(frame)
    output = folder / "animated.mp4"
    fakelab.animate(shared_path("media", "s7.jpg"), driving, output, animator=LandmarkWarpAnimator(), crop=True)
    return output, driving


def test_animated_mp4_carries_a_valid_manifest_and_the_watermark(animated):
    output, driving = animated
    manifest = read_manifest(output)
    assert manifest.present and manifest.state == "Trusted", manifest.problems  # the local root is trusted here
    assert manifest.signer.startswith("fakelab signer")
    (action,) = manifest.claims
    assert action["action"] == "c2pa.created"
    assert action["digitalSourceType"].endswith("/trainedAlgorithmicMedia")
    from fakelab.provenance.c2pa_manifest import sha256_file

    inputs = {item["name"]: item["sha256"] for item in manifest.fakelab["inputs"]}
    assert inputs["driving.mp4"] == sha256_file(driving) and "s7.jpg" in inputs
    report = check_file(output)
    assert report.made_by_fakelab and report.watermark.found
    assert report.watermark.payload.content_hex == manifest.fakelab["content_id"]


def test_editing_one_byte_of_the_video_invalidates_the_manifest(animated, tmp_path):
    output, _ = animated
    data = bytearray(output.read_bytes())
    data[data.find(b"mdat") + 64] ^= 0x01  # one byte of the H.264 data
    edited = tmp_path / "edited.mp4"
    edited.write_bytes(data)
    manifest = read_manifest(edited)
    assert manifest.present and manifest.state == "Invalid" and not manifest.valid
    assert any("mismatch" in problem or "hash" in problem.lower() for problem in manifest.problems)


def test_no_provenance_leaves_the_output_unmarked(tmp_path, talking_frames):
    from tests.conftest import shared_path

    output = tmp_path / "plain.mp4"
    fakelab.animate(shared_path("media", "s7.jpg"), talking_frames[:6], output, animator=LandmarkWarpAnimator(),
                    crop=True, provenance=False)
    report = check_file(output)
    assert not report.made_by_fakelab and not report.manifest.present and not report.watermark.found


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fakelab", *args], capture_output=True, text=True, timeout=300)


def test_check_command_reports_a_real_clip_as_unmarked():
    from tests.conftest import shared_path

    result = run_cli("provenance", "check", str(shared_path("media", "d18.mp4")), "--frames", "8")
    assert result.returncode == 0, result.stderr
    assert "no fakelab provenance found" in result.stdout and "C2PA manifest: none" in result.stdout


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.mp4", "does not exist"),
        (lambda d: (d / "notes.mp4").write_text("not a video") and d / "notes.mp4", "not a readable video"),
    ],
)
def test_check_command_bad_input(tmp_path, make, message):
    path = make(tmp_path)
    before = sorted(tmp_path.iterdir())
    result = run_cli("provenance", "check", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert sorted(tmp_path.iterdir()) == before


def test_check_command_refuses_zero_frames(tmp_path):
    result = run_cli("provenance", "check", str(tmp_path), "--frames", "0")
    assert result.returncode == 2 and "argument --frames: must be at least 1, got 0" in result.stderr
    assert result.stderr.count("\n") == 1


def test_detect_reports_provenance_before_the_score(animated, tmp_path):
    from fakelab.detection.checkpoint import save_detector
    from fakelab.detection.efficientnet import efficientnet_lite0

    checkpoint = tmp_path / "lite0.safetensors"
    save_detector(efficientnet_lite0(), checkpoint)
    output, _ = animated
    result = run_cli("detect", str(output), "--checkpoint", str(checkpoint), "--frames", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "provenance: made by fakelab"
    assert lines[3] == f"{output}: MADE BY FAKELAB (provenance), whatever the detector below says"
    assert lines[4].startswith(f"{output}: ")  # the detector's own verdict comes after


def test_detect_folder_reports_provenance_per_file(animated, tmp_path):
    """`fakelab detect DIR`: each file's provenance beside its score (JSON entry and text line),
    for the CNN scan and for the cue detector; an unreadable file is a failure with none."""
    import json
    import shutil

    from fakelab.detection.checkpoint import save_detector
    from fakelab.detection.efficientnet import efficientnet_lite0

    output, driving = animated
    folder = tmp_path / "scan"
    folder.mkdir()
    shutil.copy(output, folder / "a-animated.mp4")
    shutil.copy(driving, folder / "b-driving.mp4")
    (folder / "c-broken.mp4").write_bytes(b"not a video")
    checkpoint = tmp_path / "lite0.safetensors"
    save_detector(efficientnet_lite0(), checkpoint)

    result = run_cli("detect", str(folder), "--checkpoint", str(checkpoint), "--frames", "2", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    made = {Path(entry["file"]).name: entry["made_by_fakelab"] for entry in document["results"] + document["failures"]}
    assert made == {"a-animated.mp4": True, "b-driving.mp4": False, "c-broken.mp4": False}
    animated_entry = next(e for e in document["results"] if e["file"].endswith("a-animated.mp4"))
    assert animated_entry["provenance"]["verdict"] == "made by fakelab"
    assert animated_entry["provenance"]["c2pa"]["valid"] is True
    assert document["failures"][0]["provenance"] is None

    result = run_cli("detect", str(folder), "--method", "cues")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"{folder / 'a-animated.mp4'}: MADE BY FAKELAB (provenance), whatever the score says" in lines
    assert f"{folder / 'b-driving.mp4'}: provenance: no fakelab provenance found" in lines
    assert f"{folder / 'c-broken.mp4'}: provenance: not readable" in lines
