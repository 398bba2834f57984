"""`fakelab demo` (what `make demo` runs) writes a real animation from shipped portraits."""

from conftest import shared_path

from fakelab.cli import main
from fakelab.demo import FPS, SECONDS
from fakelab.faces import find_faces
from fakelab.video import iter_frames, probe_video


def test_demo_writes_the_animated_mp4_and_prints_its_path(tmp_path, capsys):
    output = tmp_path / "demo" / "demo.mp4"
    assert main(["demo", "-o", str(output)]) == 0
    printed = capsys.readouterr().out
    assert str(output) in printed
    info = probe_video(output)
    assert (info.width, info.height) == (512, 512)  # the astronaut's own size: the portrait model's output
    assert info.frame_count == round(SECONDS * FPS)
    frames = list(iter_frames(output))
    assert len(frames) == info.frame_count
    assert find_faces(frames[len(frames) // 2])  # still a face
    motion = max(abs(frame.astype(int) - frames[0]).mean() for frame in frames)
    assert motion > 2  # and it moves
    driving = tmp_path / "demo" / "demo-driving.mp4"
    assert str(driving) in printed and probe_video(driving).frame_count == info.frame_count


def test_demo_also_animates_with_a_fomm_checkpoint(tmp_path, capsys):
    fomm = shared_path("fixtures", "fomm")
    output = tmp_path / "demo.mp4"
    args = ["demo", "-o", str(output), "--checkpoint", str(fomm / "tiny-vox-cpk.pth.tar")]
    assert main([*args, "--config", str(fomm / "tiny-vox.yaml")]) == 0
    fomm_output = tmp_path / "demo-fomm.mp4"
    assert str(fomm_output) in capsys.readouterr().out
    assert probe_video(fomm_output).frame_count == round(SECONDS * FPS)
