"""Adversarial attacks on detectors: the attacks on tensors, `fakelab attack` on a video,
and the pieces they rest on (differentiable JPEG, SSIM, lossless video, PGD training).

The fake clip is made here: the landmark-warp animator moves the face of d0's first frame
with d12's motion (and carries d12's audio); the real faces are d0's own frames, cropped
the same way. Two detectors are trained here to call that clip fake, since no trained
deepfake detector ships with the project:

- "Lite0": EfficientNet-Lite0 with its shipped ImageNet backbone (the detection
  package's `pretrained_lite0_detector`) and its single-logit head fitted, by logistic
  regression on the frozen features, to tell the clip's face crops from real ones;
- "tiny": a three-layer CNN on 64-pixel crops trained end to end on the same crops. It
  answers a query in well under a millisecond, which is what lets the black-box NES
  attack (thousands of queries per frame) run in a test.

Each test first checks that its detector calls at least 90% of the clip's frames fake.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from conftest import shared_path
from fakelab.animation.api import animate
from fakelab.animation.landmark_warp import LandmarkWarpAnimator
from fakelab.attacks.commands import intensity
from fakelab.attacks.jpeg import jpeg_approximation
from fakelab.attacks.methods import AttackConfig, pgd, project, random_start, run_attack, to_uint8
from fakelab.attacks.quality import psnr, ssim
from fakelab.attacks.scoring import DetectorScorer, to_detector_input
from fakelab.attacks.evaluation import evaluate_detection_under_attack, evaluate_under_attack
from fakelab.attacks.training import adversarial_batch
from fakelab.attacks.transforms import GaussianBlur, GaussianNoise, H264, Identity, Jpeg, Rescale, TransformRanges, Translate
from fakelab.attacks.video import attack_crop, attack_video, report_paths
from fakelab.cli import main
from fakelab.detection.checkpoint import pretrained_lite0_detector, save_detector
from fakelab.detection.evaluate import evaluate_detection
from fakelab.detection.pipeline import score_frames, video_faces
from fakelab.detection.spec import DeepfakeDetector, InputSpec
from fakelab.detection.train import TrainingConfig
from fakelab.errors import ConfigError, InputError
from fakelab.faces.crop import crop_frame, crop_video
from fakelab.video import VideoWriter, iter_frames, probe_video

FAKE_FRAMES = 8
REAL_FRAMES = 16


class TinyDetector(DeepfakeDetector):
    arch = "tiny-test-cnn"
    input_spec = InputSpec(64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(64, 1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(embedding)[:, 0]

    def fake_logit(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(images))

    def cam_layer(self) -> nn.Module:
        return self.features[4]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    media = shared_path("media")
    folder = tmp_path_factory.mktemp("clips")
    source = next(iter_frames(media / "d0.mp4"))
    driving = list(islice(iter_frames(media / "d12.mp4"), FAKE_FRAMES))
    fake = folder / "fake.mp4"
    # No provenance: its watermark carries a random content id, which would make the fake
    # frames, and the detectors trained on them, differ from run to run.
    animate(source, driving, fake, animator=LandmarkWarpAnimator(), crop=True, fps=25, audio=media / "d12.mp4",
            provenance=False)
    with VideoWriter(folder / "d0-start.mp4", 25) as writer:
        for frame in islice(iter_frames(media / "d0.mp4"), REAL_FRAMES):
            writer.write(frame)
    real = folder / "real.mp4"
    crop_video(folder / "d0-start.mp4", real, size=256)
    return {"fake": fake, "real": real}


def face_crops(video: Path, size: int) -> list[np.ndarray]:
    return video_faces(video, size, frames=REAL_FRAMES).crops


def native_face_crops(video: Path) -> list[np.ndarray]:
    """The face crops `fakelab detect` takes, at the video's own resolution."""
    faces = video_faces(video, 64, frames=FAKE_FRAMES)
    frames = list(iter_frames(video))
    return [frames[i][top:bottom, left:right] for i, (left, top, right, bottom) in zip(faces.frame_indices, faces.boxes)]


def fake_rate(detector: DeepfakeDetector, crops: list[np.ndarray]) -> float:
    return float(np.mean(score_frames(detector, crops) >= 0))


@pytest.fixture(scope="module")
def tiny_detector(clips) -> TinyDetector:
    torch.manual_seed(0)
    detector = TinyDetector()
    spec = detector.input_spec
    fake, real = face_crops(clips["fake"], spec.size), face_crops(clips["real"], spec.size)
    images = spec.prepare(fake + real)
    labels = torch.tensor([1.0] * len(fake) + [0.0] * len(real))
    optimizer = torch.optim.Adam(detector.parameters(), lr=3e-3)
    for _ in range(300):
        logits = detector.fake_logit(images)
        # Stop once every crop is on its side by 3 log-odds, short of overconfidence.
        if (torch.where(labels > 0, logits, -logits) > 3).all():
            break
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    detector.eval()
    assert fake_rate(detector, fake) >= 0.9
    return detector


@pytest.fixture(scope="module")
def lite0_detector(clips) -> DeepfakeDetector:
    torch.manual_seed(0)
    detector = pretrained_lite0_detector().eval()
    spec = detector.input_spec
    fake, real = face_crops(clips["fake"], spec.size), face_crops(clips["real"], spec.size)
    with torch.no_grad():
        features = detector.embed(spec.prepare(fake + real))
    labels = torch.tensor([1.0] * len(fake) + [0.0] * len(real))
    optimizer = torch.optim.Adam(detector.classifier.parameters(), lr=1e-2)
    for _ in range(200):
        loss = F.binary_cross_entropy_with_logits(detector.classify(features), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert fake_rate(detector, fake) >= 0.9
    return detector


def attacked_crops(detector, crops, method, config=AttackConfig()):
    results = [attack_crop(crop, detector, method, replace(config, seed=i)) for i, crop in enumerate(crops)]
    return [adversarial for adversarial, _ in results], [result for _, result in results]


# ---- the attacks on a detector -----------------------------------------------------


def test_ifgsm_at_16_makes_lite0_call_the_fake_clip_real(clips, lite0_detector):
    crops = native_face_crops(clips["fake"])
    size = lite0_detector.input_spec.size
    before = fake_rate(lite0_detector, [crop_frame(c, [0, 0, c.shape[1], c.shape[0]], size) for c in crops])
    adversarial, results = attacked_crops(lite0_detector, crops, "ifgsm")
    after = fake_rate(lite0_detector, [crop_frame(a, [0, 0, a.shape[1], a.shape[0]], size) for a in adversarial])
    quality = [psnr(c, a) for c, a in zip(crops, adversarial)]
    print(f"\nifgsm eps 16/255 on Lite0: frames called fake {before:.0%} -> {after:.0%}; "
          f"PSNR {np.mean(quality):.2f} dB; iterations {[int(r.iterations[0]) for r in results]}")
    assert before >= 0.9
    assert 1 - after >= 0.95
    assert all(np.abs(c.astype(int) - a.astype(int)).max() <= 16 for c, a in zip(crops, adversarial))


def test_nes_fools_the_tiny_detector_from_scores_alone(clips, tiny_detector):
    crops = native_face_crops(clips["fake"])[:6]
    config = AttackConfig()
    adversarial, results = attacked_crops(tiny_detector, crops, "nes", config)
    crops_in = [crop_frame(a, [0, 0, a.shape[1], a.shape[0]], 64) for a in adversarial]
    fooled = 1 - fake_rate(tiny_detector, crops_in)
    queries = [int(r.queries[0]) for r in results]
    print(f"\nnes on the tiny CNN: {fooled:.0%} of {len(crops)} frames called real; queries per frame {queries}, "
          f"total {sum(queries)}; PSNR {np.mean([psnr(c, a) for c, a in zip(crops, adversarial)]):.2f} dB")
    assert fooled >= 0.8
    # One query for the look at each iterate, `nes_samples` for each gradient estimate.
    for result in results:
        steps = int(result.iterations[0])
        assert int(result.queries[0]) == (steps + 1) + steps * config.nes_samples


def test_random_noise_of_the_same_budget_does_not_fool_the_tiny_detector(clips, tiny_detector):
    # The control for the NES test: its success comes from the estimated gradient.
    generator = torch.Generator().manual_seed(0)
    crops = native_face_crops(clips["fake"])[:6]
    noisy = []
    for crop in crops:
        signs = torch.randint(0, 2, crop.shape, generator=generator).numpy() * 2 - 1
        noisy.append(np.clip(crop.astype(int) + 16 * signs, 0, 255).astype(np.uint8))
    assert fake_rate(tiny_detector, [crop_frame(n, [0, 0, n.shape[1], n.shape[0]], 64) for n in noisy]) >= 0.5


@pytest.mark.parametrize("method", ["pgd", "robust", "nes-robust"])
def test_every_method_stays_in_budget_and_lowers_the_fake_score(clips, tiny_detector, method):
    crop = native_face_crops(clips["fake"])[0]
    config = AttackConfig(max_iterations=6, eot_samples=3, nes_samples=8)
    image = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
    result = run_attack(method, tiny_detector, image, config)
    assert (result.adversarial - image).abs().max() <= config.eps + 1e-6
    assert 0 <= result.adversarial.min() and result.adversarial.max() <= 1
    assert result.logits_after[0] < result.logits_before[0]


def test_an_image_already_called_real_with_the_margin_costs_one_look(clips, tiny_detector):
    crop = face_crops(clips["real"], 64)[0]
    image = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
    result = run_attack("ifgsm", tiny_detector, image, AttackConfig(margin=0.5))
    assert result.logits_before[0] < -0.5
    assert result.iterations.tolist() == [0] and result.queries.tolist() == [1]
    assert torch.equal(result.adversarial, image)


def test_attacks_can_push_towards_fake_and_take_any_callable():
    weights = torch.linspace(-1, 1, 3 * 8 * 8).view(1, 3, 8, 8)

    def linear(images: torch.Tensor) -> torch.Tensor:
        return ((images - 0.5) * weights).sum(dim=(1, 2, 3))

    images = torch.full((2, 3, 8, 8), 0.5)
    result = run_attack("ifgsm", linear, images, AttackConfig(max_iterations=3, margin=100), torch.tensor([True, False]))
    assert result.logits_after[0] > 0 > result.logits_after[1]
    # Three signed steps of 1/255 against the sign of each weight: the exact optimum.
    step = 3 / 255 * torch.sign(weights[0])
    assert torch.allclose(result.adversarial[0], 0.5 + step) and torch.allclose(result.adversarial[1], 0.5 - step)


def test_nes_estimate_points_along_the_true_gradient():
    weights = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))

    def linear(images: torch.Tensor) -> torch.Tensor:
        return (images * weights).sum(dim=(1, 2, 3))

    from fakelab.attacks.methods import _nes_gradient

    image = torch.full((1, 3, 8, 8), 0.5)
    config = AttackConfig(nes_samples=400, nes_tile=1).for_method("nes")
    estimate, queries = _nes_gradient(
        linear, image, torch.tensor([-1.0]), config, False, np.random.default_rng(0), torch.Generator().manual_seed(0)
    )
    # Towards "real" the loss grows with the logit, so its gradient is along the weights.
    cosine = F.cosine_similarity(estimate.flatten(), weights.flatten(), dim=0)
    assert queries == 400 and cosine > 0.6


def test_a_noise_transformation_is_one_realization_for_the_whole_batch():
    # NES scores x + s*u and x - s*u through one transformation: with noise drawn per image
    # the pair's difference would measure the noise, not the probe.
    image = torch.full((1, 3, 8, 8), 0.5)
    noisy = GaussianNoise(0.05, seed=3)(torch.cat([image, image]))
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], image[0])


def test_each_method_gets_its_own_nes_scale_unless_one_is_given():
    assert AttackConfig().for_method("nes").nes_sigma == 0.001
    # Above the 8-bit step, which H.264 and JPEG round away.
    assert AttackConfig().for_method("nes-robust").nes_sigma > 1 / 255
    assert AttackConfig(nes_sigma=0.05).for_method("nes").nes_sigma == 0.05


def test_attack_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="antithetic pairs"):
        AttackConfig(nes_samples=5)
    with pytest.raises(ConfigError, match="eps and step"):
        AttackConfig(eps=0)
    with pytest.raises(ConfigError, match="momentum must be in"):
        AttackConfig(nes_momentum=1.0)
    with pytest.raises(ConfigError, match="unknown attack 'fgsm'"):
        run_attack("fgsm", lambda x: x.sum(dim=(1, 2, 3)), torch.zeros(1, 3, 4, 4))


# ---- budget and rounding -----------------------------------------------------------


def test_pgd_random_start_is_on_the_uint8_grid_inside_the_ball():
    images = torch.randint(0, 256, (2, 3, 16, 16)).float() / 255
    config = AttackConfig(eps=4 / 255)
    start = random_start(images, config)
    levels = start * 255 - images * 255
    assert torch.allclose(levels, levels.round(), atol=1e-3) and levels.abs().max() <= 4 + 1e-3
    assert 0 <= start.min() and start.max() <= 1 and not torch.equal(start, images)


def test_uint8_rounding_never_exceeds_a_fractional_budget():
    images = torch.randint(0, 256, (1, 3, 32, 32)).float() / 255
    eps = 10.5 / 255
    adversarial = project(images + (torch.rand_like(images) * 2 - 1) * eps, images, eps)
    rounded = to_uint8(images, adversarial, eps)
    assert (rounded - images * 255).abs().max() <= 10
    assert torch.equal(rounded, rounded.round())


def test_pgd_of_a_fractional_budget_stays_in_it_after_the_uint8_round_trip(clips, tiny_detector):
    crop = native_face_crops(clips["fake"])[1]
    config = AttackConfig(eps=10.5 / 255, step=1.5 / 255, max_iterations=10)
    adversarial, result = attack_crop(crop, tiny_detector, "pgd", config)
    assert adversarial.dtype == np.uint8
    assert np.abs(adversarial.astype(int) - crop.astype(int)).max() == 10


# ---- fakelab attack on a video -----------------------------------------------------


def test_attack_video_changes_only_the_face_crop_within_eps(clips, tiny_detector, tmp_path):
    output = tmp_path / "attacked.mp4"
    config = AttackConfig(eps=10.5 / 255)
    # Without provenance: its watermark would change the whole frame.
    report = attack_video(clips["fake"], tiny_detector, output, "ifgsm", config, frames=4, recompress=(23,), provenance=False)
    source = list(islice(iter_frames(clips["fake"]), 4))
    written = list(iter_frames(report.lossless))
    assert len(written) == 4 and report.lossless.name == "attacked.lossless.mkv"
    for frame, attacked, record in zip(source, written, report.frames):
        left, top, right, bottom = record.box
        outside = np.ones(frame.shape[:2], dtype=bool)
        outside[top:bottom, left:right] = False
        assert np.array_equal(frame[outside], attacked[outside])
        change = np.abs(frame.astype(int) - attacked.astype(int))
        assert change.max() <= 10 and record.linf == change.max()
        assert record.logit_before >= 0
    info = probe_video(output)
    assert info.frame_count == 4 and info.has_audio
    assert probe_video(tmp_path / "attacked.crf23.mp4").frame_count == 4

    data = json.loads(report_paths(output)[0].read_text())
    overall = data["overall"]
    assert overall["before"]["frames_called_fake"] == 1.0
    assert overall["after"]["frames_called_fake"] < 0.5 and overall["after"]["video_fooled"]
    assert set(overall["recompressed"]) == {"18", "23"}
    assert overall["max_linf"] <= 10 and 25 < overall["mean_psnr_db"] < 60 and 0.5 < overall["mean_ssim"] <= 1
    assert [f["index"] for f in data["frames"]] == [0, 1, 2, 3]
    assert set(data["frames"][0]) >= {"p_fake_before", "p_fake_after", "success", "iterations", "queries", "psnr_db", "ssim"}
    markdown = report_paths(output)[1].read_text()
    assert "| after, H.264 CRF 23 |" in markdown and "frames called fake" in markdown


def test_fakelab_attack_command(clips, lite0_detector, tmp_path, capsys):
    from copy import deepcopy

    from fakelab.attacks.video import face_boxes

    # The probe fitted on other crops scores these two frames near its threshold: shift its
    # bias so that both are called fake by 2 log-odds, which the attack then has to undo.
    # No provenance: this few-shot probe moved by several log-odds under the watermark.
    detector = deepcopy(lite0_detector)
    boxes, _ = face_boxes(clips["fake"], 2)
    frames = list(islice(iter_frames(clips["fake"]), 2))
    logits = score_frames(detector, [crop_frame(f, box, detector.input_spec.size) for f, box in zip(frames, boxes)])
    with torch.no_grad():
        detector.classifier.bias += 2.0 - float(np.min(logits))
    checkpoint = tmp_path / "lite0.safetensors"
    save_detector(detector, checkpoint)
    output = tmp_path / "out.mp4"
    code = main([
        "attack", str(clips["fake"]), "--detector", str(checkpoint), "-o", str(output),
        "--frames", "2", "--eps", "8", "--recompress", "30", "--no-provenance",
    ])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "ifgsm: frames called fake 100% -> 0%" in printed and "CRF 30" in printed
    data = json.loads(report_paths(output)[0].read_text())
    assert data["config"]["eps"] == pytest.approx(8 / 255) and data["detector"] == "efficientnet-lite0"
    assert output.exists() and (tmp_path / "out.lossless.mkv").exists() and (tmp_path / "out.crf30.mp4").exists()


def test_fakelab_attack_reports_bad_input_in_one_line(clips, tmp_path, capsys):
    missing = tmp_path / "missing.pt"
    code = main(["attack", str(clips["fake"]), "--detector", str(missing), "-o", str(tmp_path / "o.mp4")])
    error = capsys.readouterr().err.strip()
    assert code == 1 and error == f"fakelab attack: error: detector checkpoint {missing} does not exist"
    with pytest.raises(InputError, match="is the input"):
        attack_video(clips["fake"], TinyDetector(), clips["fake"])
    with pytest.raises(InputError, match="CRF values run from 0 to 51"):
        attack_video(clips["fake"], TinyDetector(), tmp_path / "o.mp4", recompress=(60,))
    assert not (tmp_path / "o.mp4").exists()


def test_attack_options_reach_the_attack_config(monkeypatch, clips, tmp_path):
    import fakelab.attacks.commands as commands

    seen = {}
    (tmp_path / "d.pt").write_bytes(b"checked to exist only: load_detector is replaced")

    def fake_attack_video(video, detector, output, method, config, **options):
        seen.update(method=method, config=config)
        raise KeyboardInterrupt  # stop before any reporting

    monkeypatch.setattr(commands, "load_detector", lambda path, arch: TinyDetector())
    monkeypatch.setattr(commands, "attack_video", fake_attack_video)
    code = main([
        "attack", str(clips["fake"]), "--detector", str(tmp_path / "d.pt"), "-o", str(tmp_path / "o.mp4"), "--method", "nes-robust",
        "--eps", "8", "--steps", "7", "--eot-samples", "3", "--nes-samples", "6", "--nes-sigma", "0.01",
        "--nes-tile", "4", "--nes-momentum", "0.5", "--seed", "9",
    ])
    assert code == 130 and seen["method"] == "nes-robust"
    assert seen["config"] == AttackConfig(
        eps=8 / 255, max_iterations=7, eot_samples=3, nes_samples=6, nes_sigma=0.01, nes_tile=4, nes_momentum=0.5, seed=9
    )


def test_eps_reads_fractions_decimals_and_uint8_levels():
    assert intensity("16/255") == intensity("16") == pytest.approx(16 / 255)
    assert intensity("0.03") == pytest.approx(0.03)


# ---- what the attacks rest on ------------------------------------------------------


def test_the_scorer_sees_what_the_detection_pipeline_sees(clips):
    spec = InputSpec(64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    for crop in native_face_crops(clips["fake"])[:2] + [np.zeros((40, 40, 3), np.uint8) + 90]:
        side = crop.shape[0]
        pipeline = spec.prepare([crop_frame(crop, [0, 0, side, side], spec.size)])
        ours = to_detector_input(torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255, spec)
        # The pipeline's crop is rounded to uint8: half a level, in normalised units.
        assert (ours - pipeline).abs().max() <= 0.5 / 255 / 0.5 + 1e-4


@pytest.mark.parametrize("quality", [30, 75])
def test_jpeg_approximation_matches_libjpeg(quality):
    frame = next(iter_frames(shared_path("media", "d0.mp4")))[120:290, 170:331]
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, "JPEG", quality=quality, subsampling=2)
    reference = np.asarray(Image.open(buffer)).astype(np.float64) / 255
    image = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    exact = jpeg_approximation(image, quality, rounding=torch.round)[0].permute(1, 2, 0).numpy()
    # What is left is mostly libjpeg's integer arithmetic and its rounding of the decoded
    # pixels, under a level on average; the compression itself is far larger.
    untouched = np.abs(frame / 255 - reference).mean()
    assert np.abs(exact - reference).mean() < 0.5 * untouched
    assert np.abs(exact - reference).mean() * 255 < 1.2
    image.requires_grad_()
    jpeg_approximation(image, quality).sum().backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


def test_transforms_keep_the_shape_and_pass_gradients():
    image = torch.rand(2, 3, 37, 41, requires_grad=True)
    transforms = (Identity(), GaussianNoise(0.02, 3), GaussianBlur(1.0), Translate(2, -3), Rescale(0.5), Jpeg(60), H264(23, 5, 3))
    for transform in transforms:
        out = transform(image)
        assert out.shape == image.shape
        assert torch.equal(out, transform(image))
        (grad,) = torch.autograd.grad(out.sum(), image)
        assert grad.abs().sum() > 0
    shifted = Translate(2, -3)(image)
    assert torch.equal(shifted[..., 0:34, 2:], image[..., 3:37, :39])


def test_h264_view_is_the_writer_and_reader_round_trip_with_the_gradient_passed_through(tmp_path):
    frame = next(iter_frames(shared_path("media", "d0.mp4")))[100:260, 150:310]
    with VideoWriter(tmp_path / "one.mp4", 25, crf=28) as writer:
        writer.write(frame)
    expected = next(iter_frames(tmp_path / "one.mp4"))
    image = (torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255).requires_grad_()
    coded = H264(28)(image)
    assert torch.equal((coded[0] * 255).round().byte().permute(1, 2, 0), torch.from_numpy(expected))
    (grad,) = torch.autograd.grad((coded * 2).sum(), image)
    assert torch.equal(grad, torch.full_like(image, 2.0))
    with pytest.raises(ConfigError, match="EOT transformations are among"):
        TransformRanges(kinds=("jpeg", "mpeg2"))


def test_ssim_and_psnr_agree_with_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(0)
    frame = next(iter_frames(shared_path("media", "d0.mp4")))[100:220, 150:290]
    noisy = np.clip(frame.astype(int) + rng.integers(-12, 13, frame.shape), 0, 255).astype(np.uint8)
    expected = structural_similarity(
        frame, noisy, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim(frame, noisy) == pytest.approx(expected, abs=1e-9)
    assert psnr(frame, noisy) == pytest.approx(peak_signal_noise_ratio(frame, noisy, data_range=255))
    assert psnr(frame, frame) == math.inf and ssim(frame, frame) == pytest.approx(1.0)


def test_lossless_video_decodes_to_exactly_the_frames_written(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (35, 47, 3), dtype=np.uint8) for _ in range(3)]
    with VideoWriter(tmp_path / "exact.mkv", 25, lossless=True) as writer:
        for frame in frames:
            writer.write(frame)
    assert all(np.array_equal(a, b) for a, b in zip(frames, iter_frames(tmp_path / "exact.mkv")))
    with pytest.raises(InputError, match="cannot be lossless"):
        VideoWriter(tmp_path / "x.gif", 25, lossless=True)


# ---- the defence -------------------------------------------------------------------


def test_adversarial_batch_attacks_towards_the_wrong_class(clips, tiny_detector):
    spec = tiny_detector.input_spec
    fake, real = face_crops(clips["fake"], 64)[:3], face_crops(clips["real"], 64)[:3]
    batch = spec.prepare(fake + real)
    labels = torch.tensor([1, 1, 1, 0, 0, 0])
    gradients = [None if p.grad is None else p.grad.clone() for p in tiny_detector.parameters()]
    tiny_detector.train()
    attacked = adversarial_batch(tiny_detector, batch, labels, fraction=2 / 3)
    assert tiny_detector.training
    tiny_detector.eval()
    for parameter, gradient in zip(tiny_detector.parameters(), gradients):
        assert (parameter.grad is None and gradient is None) or torch.equal(parameter.grad, gradient)
    pixels = lambda normalised: normalised * 0.5 + 0.5  # noqa: E731
    assert (pixels(attacked) - pixels(batch)).abs().max() <= 4 / 255 + 1e-5
    assert torch.equal(attacked[4:], batch[4:])
    with torch.no_grad():
        before, after = tiny_detector.fake_logit(batch), tiny_detector.fake_logit(attacked)
    assert (after[:3] < before[:3]).all() and after[3] > before[3]


def test_accuracy_under_attack(clips, tiny_detector):
    crops = face_crops(clips["fake"], 64)[:4] + face_crops(clips["real"], 64)[:4]
    result = evaluate_under_attack(tiny_detector, crops, [1] * 4 + [0] * 4, "pgd", AttackConfig(max_iterations=20))
    print("\n" + result.summary())
    assert result.clean_accuracy == 1.0 and result.attacked_accuracy <= 0.25
    assert result.to_json()["per_class"]["fake"]["faces"] == 4


def test_evaluation_of_folders_under_attack(clips, tiny_detector, tmp_path):
    folders = {}
    for kind in ("real", "fake"):
        folders[kind] = tmp_path / kind
        folders[kind].mkdir()
        (folders[kind] / f"{kind}.mp4").symlink_to(clips[kind])
    clean = evaluate_detection(tiny_detector, folders["real"], folders["fake"], frames=4)
    attacked = evaluate_detection_under_attack(
        tiny_detector, folders["real"], folders["fake"], "ifgsm", AttackConfig(), frames=4
    )
    assert clean.metrics("frame").accuracy == 1.0
    assert attacked.metrics("frame").accuracy == 0.0
    assert [len(s.score.logits) for s in attacked.scores] == [4, 4]


def test_train_detector_with_adversarial_pgd(clips, tmp_path, capsys, monkeypatch):
    import fakelab.detection.train as training

    calls = []

    def spy(detector, batch, labels, config):
        calls.append((len(batch), config.eps))
        return adversarial_batch(detector, batch, labels, config)

    monkeypatch.setattr(training, "adversarial_batch", spy)
    for kind, frames in (("real", REAL_FRAMES), ("fake", FAKE_FRAMES)):
        folder = tmp_path / kind
        folder.mkdir()
        video = list(iter_frames(clips[kind]))
        for half in range(2):
            with VideoWriter(folder / f"{kind}{half}.mp4", 25) as writer:
                for frame in video[half * frames // 2 : (half + 1) * frames // 2]:
                    writer.write(frame)
    output = tmp_path / "adversarial.safetensors"
    code = main([
        "train-detector", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"), "-o", str(output),
        "--adversarial", "pgd", "--adversarial-eps", "2/255", "--epochs", "1", "--frames-per-video", "2", "--batch-size", "4", "--no-augment",
    ])
    assert code == 0, capsys.readouterr().err
    assert output.exists() and calls and all(size >= 2 and eps == 2 / 255 for size, eps in calls)
    with pytest.raises(ConfigError, match="unknown adversarial training"):
        TrainingConfig(adversarial="fgsm").check()


def test_fakelab_evaluate_detection_with_attack(clips, lite0_detector, tmp_path, capsys):
    checkpoint = tmp_path / "lite0.safetensors"
    save_detector(lite0_detector, checkpoint)
    for kind in ("real", "fake"):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / f"{kind}.mp4").symlink_to(clips[kind])
    arguments = ["evaluate", "detection", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"),
                 "--checkpoint", str(checkpoint), "--frames", "3"]
    assert main([*arguments, "-o", str(tmp_path / "clean")]) == 0
    assert main([*arguments, "-o", str(tmp_path / "attacked"), "--attack", "ifgsm", "--eps", "8/255"]) == 0
    clean = json.loads((tmp_path / "clean" / "metrics.json").read_text())
    attacked = json.loads((tmp_path / "attacked" / "metrics.json").read_text())
    assert clean["frame"]["accuracy"] == 1.0 and attacked["frame"]["accuracy"] == 0.0
    capsys.readouterr()
