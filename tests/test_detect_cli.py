"""`fakelab detect` and `fakelab evaluate detection` end to end, with an untrained Lite0:
the output formats, the report, and one-line messages for bad inputs."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shared_path
from fakelab.cli import main
from fakelab.detection.checkpoint import save_detector
from fakelab.detection.efficientnet import efficientnet_b4_att, efficientnet_lite0
from fakelab.detection.gradcam import heatmap_kind, heatmaps
from fakelab.video import iter_frames, load_image

VOID_TAGS = {"meta", "img", "br", "hr", "link", "input"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("detector") / "lite0.pt"
    save_detector(efficientnet_lite0(), path)
    return path


@pytest.fixture(scope="module")
def scan_folder(tmp_path_factory) -> Path:
    """A good video, a truncated one, and a portrait with an alpha channel."""
    folder = tmp_path_factory.mktemp("scan")
    media = shared_path("media")
    shutil.copy(media / "d0.mp4", folder / "a_good.mp4")
    (folder / "b_broken.mp4").write_bytes((media / "d12.mp4").read_bytes()[:4000])
    portrait = Image.open(media / "s7.jpg").convert("RGBA")
    alpha = np.full(portrait.size[::-1], 255, dtype=np.uint8)
    alpha[:60] = 0  # a transparent band along the top
    portrait.putalpha(Image.fromarray(alpha))
    portrait.save(folder / "c_alpha.png")
    return folder


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_detect_json_schema(capsys, checkpoint, media):
    code, out, err = run_cli(capsys, "detect", media / "d0.mp4", "--checkpoint", checkpoint, "--frames", "3", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["scoring"] == "video score = sigmoid(mean of the frame logits)"
    assert document["arch"] == "efficientnet-lite0" and document["threshold"] == 0.5
    assert document["failures"] == []
    (result,) = document["results"]
    assert set(result) == {
        "file", "kind", "verdict", "score", "mean_logit", "threshold", "arch",
        "frames_in_video", "frames_sampled", "frames_scored", "faces_followed", "frames",
    }  # fmt: skip
    assert result["kind"] == "video" and result["frames_in_video"] == 78
    assert result["frames_sampled"] == result["frames_scored"] == 3
    assert [frame["index"] for frame in result["frames"]] == [0, 38, 77]
    assert set(result["frames"][0]) == {"index", "time", "logit", "probability", "face_found"}
    logits = np.array([frame["logit"] for frame in result["frames"]])
    assert result["mean_logit"] == pytest.approx(logits.mean())
    assert result["score"] == pytest.approx(1 / (1 + np.exp(-logits.mean())))
    assert result["verdict"] == ("fake" if result["score"] >= 0.5 else "real")
    assert result["frames"][1]["time"] == pytest.approx(38 / 25)


class _Structure(HTMLParser):
    """Checks that tags nest and close, and collects the images."""

    def __init__(self):
        super().__init__()
        self.open: list[str] = []
        self.images: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag not in VOID_TAGS:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
        else:
            self.open.pop()


def test_folder_scan_skips_a_broken_file_and_reports_the_rest(capsys, checkpoint, scan_folder, tmp_path):
    report = tmp_path / "report.html"
    code, out, err = run_cli(
        capsys, "detect", scan_folder, "--checkpoint", checkpoint, "--frames", "3", "--report", report, "--top", "2"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{scan_folder / 'a_good.mp4'}: ") and "over 3 frames" in lines[0]
    # Each file's provenance follows its score (or its failure), a broken file's too.
    assert lines[1] == f"{scan_folder / 'a_good.mp4'}: provenance: no fakelab provenance found"
    assert lines[2] == f"{scan_folder / 'b_broken.mp4'}: provenance: not readable"
    assert lines[3].startswith(f"{scan_folder / 'c_alpha.png'}: ") and "probability fake" in lines[3]
    assert lines[4] == f"{scan_folder / 'c_alpha.png'}: provenance: no fakelab provenance found"
    assert err.strip() == f"skipped {scan_folder / 'b_broken.mp4'}: {scan_folder / 'b_broken.mp4'} is not a readable video (Invalid data found when processing input)"

    text = report.read_text()
    assert text.startswith("<!DOCTYPE html>")
    parser = _Structure()
    parser.feed(text)
    parser.close()
    assert parser.errors == [] and parser.open == []
    # One timeline for the video, then crop+heatmap images: 2 for the video, 1 for the image.
    assert len(parser.images) == 4
    for source in parser.images:
        assert source.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
        assert image.format == "PNG" and image.width > 100
    assert "b_broken.mp4" in text and "Not scored" in text and "Grad-CAM" in text


def test_an_image_with_alpha_is_scored_on_white(checkpoint, scan_folder):
    image = load_image(scan_folder / "c_alpha.png")
    assert image.shape[2] == 3 and (image[:60] == 255).all()


def test_checkpoint_of_another_architecture_is_one_clear_line(capsys, checkpoint, media):
    code, out, err = run_cli(capsys, "detect", media / "s7.jpg", "--checkpoint", checkpoint, "--arch", "efficientnet-b4")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"fakelab detect: error: {checkpoint} does not fit efficientnet-b4: ")
    assert "its keys are those of efficientnet-lite0" in err


def test_no_face_is_one_clear_line(capsys, checkpoint, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (120, 90), (200, 180, 160)).save(blank)
    code, out, err = run_cli(capsys, "detect", blank, "--checkpoint", checkpoint)
    assert (code, out) == (1, "")
    assert err == f"fakelab detect: error: no face found in {blank}\n"


def test_a_missing_input_and_a_bad_threshold_are_clear(capsys, checkpoint, tmp_path):
    code, _, err = run_cli(capsys, "detect", tmp_path / "nope.mp4", "--checkpoint", checkpoint)
    assert code == 1 and err == f"fakelab detect: error: {tmp_path / 'nope.mp4'} does not exist\n"
    code, _, err = run_cli(capsys, "detect", tmp_path, "--checkpoint", checkpoint, "--threshold", "2")
    assert code == 2 and "between 0 and 1" in err


def test_evaluate_detection_prints_and_saves_metrics(capsys, checkpoint, media, tmp_path):
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir(), fake.mkdir()
    shutil.copy(media / "s7.jpg", real / "s7.jpg")
    Image.fromarray(next(iter_frames(media / "d0.mp4"))).save(real / "d0_first.png")
    shutil.copy(media / "s4.jpg", fake / "s4.jpg")
    (fake / "broken.jpg").write_bytes(b"not a jpeg")
    out_dir = tmp_path / "evaluation"
    code, out, err = run_cli(
        capsys, "evaluate", "detection", "--real", real, "--fake", fake, "--checkpoint", checkpoint, "-o", out_dir
    )
    assert code == 0, err
    assert f"skipped {fake / 'broken.jpg'}: {fake / 'broken.jpg'} is not a readable image" in err
    assert out.splitlines()[0].split() == ["level", "ACC", "AUC", "EER", "AP", "real", "fake"]
    assert out.splitlines()[1].split()[-2:] == ["2", "1"]
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["video"]["reals"] == 2 and metrics["video"]["fakes"] == 1
    assert metrics["frame"] == metrics["video"]  # images: one frame each
    assert [f["file"] for f in metrics["failures"]] == [str(fake / "broken.jpg")]
    rows = (out_dir / "scores.csv").read_text().splitlines()
    assert rows[0] == "file,label,score,verdict,frames_scored" and len(rows) == 4
    assert Image.open(out_dir / "roc.png").format == "PNG"


def test_heatmaps_are_grad_cam_or_the_attention_map(media):
    crop = np.array(Image.open(media / "s7.jpg").convert("RGB").resize((112, 112)))
    torch.manual_seed(0)
    lite0 = efficientnet_lite0()
    (cam,) = heatmaps(lite0, [crop])
    assert heatmap_kind(lite0) == "Grad-CAM" and cam.shape == (112, 112)
    assert 0 <= cam.min() < 0.05 and 0.9 < cam.max() <= 1
    assert all(p.grad is None for p in lite0.parameters())
    attention_model = efficientnet_b4_att()
    (attention,) = heatmaps(attention_model, [crop])
    assert heatmap_kind(attention_model) == "attention map" and attention.shape == (112, 112)
    assert 0 <= attention.min() <= attention.max() <= 1
