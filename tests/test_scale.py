"""Scale-out on Ray: `fakelab detect DIR --ray` and `fakelab dataset prepare --ray` against their
serial runs, the ledger's resume after a kill -9, and bad input. One local Ray (2 CPUs, no
dashboard) serves the whole module; the CLI runs in this process (it reuses that session),
except for the run that is killed, which connects to it by address."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, shared_path
from fakelab.cli import main
from fakelab.detection.checkpoint import pretrained_lite0_detector, save_detector
from fakelab.detection.pipeline import media_files, ready_for_inference, scan
from fakelab.detection.checkpoint import load_detector
from fakelab.scale import Ledger, LedgerError
from fakelab.scale.samples import cut_clips

ray = pytest.importorskip("ray")

CLIPS = 20
FRAMES = "2"  # frames scored per clip: the tests are about bookkeeping, not about scores


@pytest.fixture(scope="module")
def ray_address():
    # Ray's workers inherit this environment: they must find fakelab whatever their folder.
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), saved]))
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    videos = [shared_path("media", f"{name}.mp4") for name in ("d0", "d11", "d12", "d18")]
    cut_clips(videos, folder, CLIPS, frames=6, size=192, broken=1)
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    detector = pretrained_lite0_detector()  # ImageNet features: scores that differ from face to face
    torch.nn.init.normal_(detector.classifier.weight, std=0.5)
    path = tmp_path_factory.mktemp("detector") / "lite0.pt"
    save_detector(detector, path)
    return path


@pytest.fixture(scope="module")
def serial(clips, checkpoint):
    """The serial scan, and a threshold at its median score so that both verdicts occur."""
    detector = ready_for_inference(load_detector(checkpoint))
    result = scan(detector, media_files(clips), frames=int(FRAMES))
    scores = np.sort([score.score for score in result.scores])
    middle = len(scores) // 2
    # Halfway between two scores near the median, so that both verdicts occur and float noise
    # (the actors run torch on one thread, the serial scan on all) cannot flip one.
    gaps = [(scores[i + 1] - scores[i], i) for i in range(middle - 3, middle + 3)]
    gap, index = max(gaps)
    assert gap > 1e-4
    threshold = float(scores[index] + gap / 2)
    return result, threshold


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ledger_entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def test_ray_scan_gives_the_serial_verdicts_and_records_the_broken_file(ray_address, clips, checkpoint, serial, capsys, tmp_path):
    result, threshold = serial
    ledger = tmp_path / "scan.jsonl"
    code, out, err = run_cli(
        capsys, "detect", clips, "--checkpoint", checkpoint, "--frames", FRAMES, "--threshold", threshold,
        "--ray", "--ledger", ledger, "--json",
    )
    assert code == 0, err
    document = json.loads(out)
    by_file = {entry["file"]: entry for entry in document["results"]}
    assert len(by_file) == CLIPS - 1 == len(result.scores)
    for score in result.scores:
        ray_entry = by_file[str(score.source)]
        assert ray_entry["score"] == pytest.approx(score.score, abs=1e-5)
        assert ray_entry["verdict"] == ("fake" if score.score >= threshold else "real")
    assert {entry["verdict"] for entry in by_file.values()} == {"fake", "real"}
    # Provenance as the serial folder scan reports it: these cut clips carry no mark.
    assert all(e["made_by_fakelab"] is False and e["provenance"]["watermark"]["found"] is False for e in by_file.values())
    [failure] = document["failures"]
    assert failure["file"].endswith(f"clip-{CLIPS - 1:03d}.mp4") and "not a readable video" in failure["error"]
    assert [f.source.name for f in result.failures] == [Path(failure["file"]).name]
    assert len(ledger_entries(ledger)) == CLIPS  # every file once, the broken one included


def test_the_ray_task_reads_a_marked_file_as_fakelab(clips, tmp_path):
    from fakelab.provenance import Payload, Watermarker
    from fakelab.scale.commands import _summary
    from fakelab.scale.detect import file_provenance
    from fakelab.video import VideoWriter, iter_frames

    marked = tmp_path / "marked.mp4"
    # A fixed payload: on clips this small (6 frames of 192 px) 28 of 30 random payloads read
    # back, and a test must not depend on the draw.
    watermarker = Watermarker(Payload(content_id=0x1234ABCD, version=(0, 1)))
    with VideoWriter(marked, 25) as writer:
        for frame in iter_frames(clips / "clip-000.mp4"):
            writer.write(watermarker.mark(frame))
    fields = file_provenance(marked)
    assert fields["made_by_fakelab"] and fields["provenance"]["watermark"]["found"]
    entry = {"file": str(marked), "verdict": "real", "score": 0.1, "frames_scored": 6, **fields}
    assert _summary(entry).endswith("MADE BY FAKELAB (provenance), whatever the score says")
    assert file_provenance(clips / "clip-000.mp4")["made_by_fakelab"] is False


def test_a_killed_scan_resumes_without_rescoring(ray_address, clips, checkpoint, capsys, tmp_path):
    ledger = tmp_path / "killed.jsonl"
    command = [sys.executable, "-m", "fakelab", "detect", str(clips), "--checkpoint", str(checkpoint), "--frames", FRAMES,
               "--ray", ray_address, "--ledger", str(ledger)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and child.poll() is None:
            if ledger.exists() and len(ledger.read_text().splitlines()) > 1 + CLIPS // 3:
                break
            time.sleep(0.2)
        assert child.poll() is None, f"the scan ended before it could be killed: {child.stderr.read().decode()[-2000:]}"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    before = ledger.read_bytes()
    finished = ledger_entries(ledger) if before.endswith(b"\n") else ledger_entries(ledger)[:-1]
    assert CLIPS // 3 <= len(finished) < CLIPS

    code, out, err = run_cli(capsys, "detect", clips, "--checkpoint", checkpoint, "--frames", FRAMES, "--ray", "--ledger", ledger)
    assert code == 0, err
    assert f"resumed: {len(finished)} file(s)" in err
    entries = ledger_entries(ledger)
    assert entries[: len(finished)] == finished  # the finished files' lines are untouched...
    assert sorted(e["file"] for e in entries) == sorted(str(p) for p in media_files(clips))  # ...and none twice
    printed = [line for line in out.splitlines() if line.startswith(str(clips))]
    skipped = [line for line in err.splitlines() if line.startswith("skipped")]
    assert len(printed) + len(skipped) == CLIPS - len(finished)  # only the rest were scored

    # A third run has nothing left to do: it does not even need Ray.
    code, out, err = run_cli(capsys, "detect", clips, "--checkpoint", checkpoint, "--frames", FRAMES, "--ray", "--ledger", ledger)
    assert code == 0 and f"resumed: {CLIPS} file(s)" in err and ledger.read_text().count("\n") == CLIPS + 1

def test_ray_prepare_writes_the_serial_dataset(ray_address, clips, tmp_path, capsys):
    videos = [clips / "clip-000.mp4", clips / "clip-001.mp4"]
    args = ["--size", "64", "--min-frames", "4", "--format", "mp4", "--split", "train"]
    assert main(["dataset", "prepare", *map(str, videos), "-o", str(tmp_path / "serial"), *args]) == 0
    assert main(["dataset", "prepare", *map(str, videos), "-o", str(tmp_path / "ray"), *args, "--ray"]) == 0
    serial_clips = sorted(p.name for p in (tmp_path / "serial" / "train").iterdir())
    assert serial_clips and serial_clips == sorted(p.name for p in (tmp_path / "ray" / "train").iterdir())
    for name in serial_clips:
        assert (tmp_path / "serial" / "train" / name).read_bytes() == (tmp_path / "ray" / "train" / name).read_bytes()
    capsys.readouterr()

def _cells(folder: Path) -> dict[str, list[dict]]:
    return {p.name: json.loads(p.read_text())["results"] for p in sorted((folder / "cells").iterdir())}

def test_ray_stress_sweep_gives_the_serial_cells_and_resumes(ray_address, clips, checkpoint, tmp_path, capsys):
    real, fake = tmp_path / "real", tmp_path / "fake"
    for folder, names in ((real, ("clip-000", "clip-001")), (fake, ("clip-002", "clip-003"))):
        folder.mkdir()
        for name in names:
            (folder / f"{name}.mp4").write_bytes((clips / f"{name}.mp4").read_bytes())
    argv = ["stress", "detection", "--real", real, "--fake", fake, "--checkpoint", checkpoint, "--frames", FRAMES,
            "--perturbation", "compression", "--levels", "2,5"]
    code, _, err = run_cli(capsys, *argv, "-o", tmp_path / "serial")
    assert code == 0, err
    code, _, err = run_cli(capsys, *argv, "-o", tmp_path / "ray", "--ray")
    assert code == 0, err
    serial, spread = _cells(tmp_path / "serial"), _cells(tmp_path / "ray")
    assert list(serial) == list(spread) == ["clean-0.json", "compression-2.json", "compression-5.json"]
    for name in serial:
        ordered = [sorted(records, key=lambda r: r["file"]) for records in (serial[name], spread[name])]
        assert [r["file"] for r in ordered[0]] == [r["file"] for r in ordered[1]]
        # Actors run torch on one thread, the serial sweep on two: float noise only.
        assert np.allclose([r["score"] for r in ordered[0]], [r["score"] for r in ordered[1]], atol=1e-5), name
    # A sweep stopped part way resumes on Ray without recomputing the cells it has.
    (tmp_path / "ray" / "cells" / "compression-5.json").unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray" / "cells").iterdir()}
    code, _, err = run_cli(capsys, *argv, "-o", tmp_path / "ray", "--ray")
    assert code == 0 and "3 cells (2 already done)" in err
    assert stamps.items() <= {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray" / "cells").iterdir()}.items()
    assert (tmp_path / "ray" / "cells" / "compression-5.json").exists()

def test_bad_ray_input_is_one_line(checkpoint, clips, tmp_path, capsys):
    """None of these start Ray: they fail before."""
    ledger = tmp_path / "other.jsonl"
    ledger.write_text(json.dumps({"job": {"command": "detect", "checkpoint": "elsewhere"}}) + "\n")
    before = ledger.read_bytes()
    cases = [
        (["--ray-cpus", "0"], "--ray-cpus: must be at least 1"),
        (["--report", str(tmp_path / "r.html")], "--report needs the crops"),
        (["--ledger", str(ledger)], "records another job"),
        (["--ledger", str(tmp_path)], "is a folder"),
    ]
    for extra, message in cases:
        code, out, err = run_cli(capsys, "detect", clips, "--checkpoint", checkpoint, "--ray", *extra)
        assert code != 0 and message in err and "Traceback" not in err and err.count("\n") == 1, err
    code, _, err = run_cli(capsys, "detect", clips / "clip-000.mp4", "--checkpoint", checkpoint, "--ray")
    assert code != 0 and "scans folders" in err
    assert ledger.read_bytes() == before
    assert not (tmp_path / "r.html").exists()
    code = main(["dataset", "prepare", str(clips / "clip-000.mp4"), "-o", str(tmp_path / "data"), "--ray", "--ray-cpus", "0"])
    err = capsys.readouterr().err
    assert code != 0 and "--ray-cpus: must be at least 1" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.jsonl"]


def test_ledger_drops_a_partial_last_line_and_refuses_another_job(tmp_path):
    path = tmp_path / "ledger.jsonl"
    with Ledger(path, {"a": 1}) as ledger:
        assert ledger.open() == set()
        ledger.record({"file": "x", "score": 0.5})
        ledger.record({"file": "y", "score": 0.25})
    path.write_bytes(path.read_bytes() + b'{"file": "z", "sco')  # killed mid-line
    with Ledger(path, {"a": 1}) as ledger:
        assert ledger.open() == {"x", "y"}
        ledger.record({"file": "z", "score": 1.0})
    assert [json.loads(line)["file"] for line in path.read_text().splitlines()[1:]] == ["x", "y", "z"]
    with pytest.raises(LedgerError, match="records another job"):
        Ledger(path, {"a": 2}).open()
    with Ledger(path, {"a": 2}) as ledger:
        assert ledger.open(restart=True) == set()
    assert path.read_text().splitlines() == [json.dumps({"job": {"a": 2}})]
