"""`fakelab demo` (what `make demo` runs) writes a real animation from shipped portraits."""

from fakelab.cli import main
from fakelab.demo import FPS, SECONDS, SIZE
from fakelab.faces import find_faces
from fakelab.video import iter_frames, probe_video


def test_demo_writes_the_animated_mp4_and_prints_its_path(tmp_path, capsys):
    output = tmp_path / "demo" / "demo.mp4"
    assert main(["demo", "-o", str(output)]) == 0
    printed = capsys.readouterr().out
    assert str(output) in printed
    info = probe_video(output)
    assert (info.width, info.height) == (SIZE, SIZE)
    assert info.frame_count == round(SECONDS * FPS)
    frames = list(iter_frames(output))
    assert len(frames) == info.frame_count
    assert find_faces(frames[len(frames) // 2])  # still a face
    motion = max(abs(frame.astype(int) - frames[0]).mean() for frame in frames)
    assert motion > 2  # and it moves
    driving = tmp_path / "demo" / "demo-driving.mp4"
    assert str(driving) in printed and probe_video(driving).frame_count == info.frame_count
