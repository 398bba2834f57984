"""The shared checks and error handling of `fakelab.cli`: number types, paths, OS errors, signals, modes."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import stat

import pytest
import torch

from conftest import shared_path
from fakelab import cli_checks
from fakelab.atomic import all_or_nothing, atomic_output
from fakelab.cli import INTERNAL_ERROR_EXIT_CODE, main
from fakelab.cli_checks import Terminated, check_paths, integer, number
from fakelab.errors import CheckpointError, FakelabError, InputError
from fakelab.safe_load import check_tensors, finite_json, load_yaml


@pytest.mark.parametrize(
    "parse,text,expected",
    [
        (integer(1), "3", 3),
        (integer(0, 5), " 5 ", 5),
        (number(0, 1), "0.25", 0.25),
        (number(above=0, fractions=True), "16/255", 16 / 255),
    ],
)
def test_number_types_accept_values_in_range(parse, text, expected):
    assert parse(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "parse,text,message",
    [
        (integer(1), "0", "at least 1"),
        (integer(1), "1.5", "not a whole number"),
        (integer(0, 5), "6", "between 0 and 5"),
        (number(0, 1), "nan", "finite"),
        (number(0, 1), "-inf", "finite"),
        (number(), "1e400", "finite"),
        (number(above=0), "0", "above 0"),
        (number(maximum=2), "3", "at most 2"),
        (number(fractions=True), "1/0", "not a number"),
    ],
)
def test_number_types_refuse_bad_values(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse(text)


def test_check_paths_names_inputs_and_refuses_duplicate_and_side_outputs(tmp_path):
    video = tmp_path / "in.mp4"
    video.write_bytes(b"x")
    with pytest.raises(InputError, match="^checkpoint .* does not exist"):
        check_paths(inputs={"video": video, "checkpoint": tmp_path / "none.pt"})
    with pytest.raises(InputError, match="is given twice"):
        check_paths(outputs=[tmp_path / "a.mp4", tmp_path / "." / "a.mp4"])
    (tmp_path / "a.report.md").write_text("mine")
    with pytest.raises(InputError, match="a.report.md already exists"):
        check_paths(outputs=[tmp_path / "a.mp4"], side_outputs=[tmp_path / "a.report.md"])
    (tmp_path / "a.mp4").write_bytes(b"an earlier result")  # then the side file is an earlier run's too
    check_paths(inputs=[video], outputs=[tmp_path / "a.mp4"], side_outputs=[tmp_path / "a.report.md"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "a.report.md", "in.mp4"]  # the probe is gone


def test_free_space_is_checked_where_known(tmp_path, monkeypatch):
    usage = type("Usage", (), {"free": 1000, "total": 10**9, "used": 0})
    monkeypatch.setattr(cli_checks.shutil, "disk_usage", lambda _: usage)
    with pytest.raises(InputError, match="not enough free space"):
        check_paths(outputs=[tmp_path / "out.mp4"])


@pytest.mark.parametrize(
    "raised,expected,code",
    [
        (OSError(errno.ENOSPC, "No space left on device", "/data/out.mp4"), "no space left on the device: /data/out.mp4", 1),
        (PermissionError(errno.EACCES, "Permission denied", "/data/x"), "permission denied: /data/x", 1),
        (OSError(errno.ENAMETOOLONG, "File name too long", "/data/xxx"), "file name too long: /data/xxx", 1),
        (OSError(errno.ELOOP, "Too many levels of symbolic links", "/a"), "symlink loop", 1),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/data"), "is a folder, not a file: /data", 1),
        (OSError(errno.EROFS, "Read-only file system", "/ro/x"), "read-only file system: /ro/x", 1),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk quota exceeded", 1),
        (MemoryError(), "out of memory", 1),
        (RecursionError("deep"), "nested too deeply", 1),
        (RuntimeError("boom\nsecond line"), "internal error (RuntimeError: boom)", INTERNAL_ERROR_EXIT_CODE),
        (KeyboardInterrupt(), "interrupted; unfinished outputs were removed", 130),
        (Terminated(signal.SIGTERM), "stopped by SIGTERM", 128 + signal.SIGTERM),
        (Terminated(signal.SIGHUP), "stopped by SIGHUP", 128 + signal.SIGHUP),
    ],
)
def test_errors_become_one_line_and_an_exit_code(raised, expected, code, monkeypatch, capsys, tmp_path):
    def failing_demo(*_args, **_kwargs):
        raise raised

    monkeypatch.delenv("FAKELAB_DEBUG", raising=False)
    monkeypatch.setattr("fakelab.faces.commands.run_demo", failing_demo)
    assert main(["demo", "-o", str(tmp_path / "demo.mp4")]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err, err


def test_debug_variable_gives_the_traceback_back(monkeypatch, tmp_path):
    def failing_demo(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setenv("FAKELAB_DEBUG", "1")
    monkeypatch.setattr("fakelab.faces.commands.run_demo", failing_demo)
    with pytest.raises(RuntimeError, match="boom"):
        main(["demo", "-o", str(tmp_path / "demo.mp4")])


def test_a_failed_command_leaves_none_of_its_outputs(monkeypatch, tmp_path, capsys):
    def writes_two_then_fails(output, *_args):
        for name in ("first.mp4", "second.mp4"):
            with atomic_output(tmp_path / "new" / "deeper" / name) as tmp:
                tmp.write_bytes(b"done")
        raise InputError("the third output failed")

    monkeypatch.setattr("fakelab.faces.commands.run_demo", writes_two_then_fails)
    assert main(["demo", "-o", str(tmp_path / "new" / "demo.mp4")]) == 1
    assert list(tmp_path.iterdir()) == []
    with all_or_nothing():  # and a successful block keeps them
        with atomic_output(tmp_path / "kept.txt") as tmp:
            tmp.write_text("kept")
    assert (tmp_path / "kept.txt").read_text() == "kept"


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_outputs_get_the_mode_the_umask_gives(umask, mode, tmp_path, capsys):
    previous = os.umask(umask)
    try:
        output = tmp_path / "converted.safetensors"
        assert main(["convert", str(shared_path("fixtures", "fomm", "tiny-vox-cpk.pth.tar")), str(output)]) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(output.stat().st_mode) == mode


def test_yaml_alias_bomb_fails_fast_and_plain_yaml_loads():
    levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for index, name in enumerate("bcdefghi"):
        levels.append(f"{name}: &{name} [{', '.join(['*' + 'abcdefghi'[index]] * 9)}]")
    with pytest.raises(Exception, match="alias bomb"):
        load_yaml("\n".join(levels), "bomb")
    assert load_yaml("a: &x [1, 2]\nb: *x\n", "fine") == {"a": [1, 2], "b": [1, 2]}


def test_tensor_checks():
    check_tensors({"w": torch.ones(2), "bn.num_batches_tracked": torch.tensor(3)}, "ok")
    for state, message in [
        ({"w": torch.ones(2, dtype=torch.float16).fill_(float("nan"))}, "NaN"),
        ({"w": torch.ones(1).expand(10)}, "stride-0"),
        ({"w": torch.ones(2, dtype=torch.uint8)}, "dtype uint8"),
        ({"w": 3.0}, "not a tensor"),
        ({"w": torch.ones(2).to_sparse()}, "not a plain dense tensor"),
    ]:
        with pytest.raises(CheckpointError, match=message):
            check_tensors(state, "bad")


def test_finite_json_replaces_nan_and_infinity():
    assert finite_json({"a": [1.0, float("nan")], "b": float("inf"), "c": "x"}) == {"a": [1.0, None], "b": None, "c": "x"}


def test_detector_nan_scores_are_refused_not_reported_as_real(monkeypatch, tmp_path):
    import numpy as np

    from fakelab.detection import pipeline

    monkeypatch.setattr(pipeline, "score_frames", lambda detector, crops: np.array([0.3, float("nan")]))
    faces = type("Faces", (), {"crops": [None, None], "source": tmp_path / "clip.mp4"})()
    with pytest.raises(InputError, match="non-finite scores on .*clip.mp4"):
        pipeline.score_faces(type("Detector", (), {"arch": "x"})(), faces)


def test_a_stop_that_surfaces_as_another_error_is_still_a_stop(monkeypatch, capsys):
    # A SIGHUP during a C extension's import reaches main as ImportError("initialization failed").
    import argparse
    import os
    import signal

    from fakelab import cli

    def import_hit_by_a_signal(_args):
        try:
            os.kill(os.getpid(), signal.SIGHUP)
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None

    def parser_with(handler):
        parser = argparse.ArgumentParser()
        parser.set_defaults(handler=handler, command="x")
        return parser

    monkeypatch.setattr(cli, "build_parser", lambda: parser_with(import_hit_by_a_signal))
    assert cli.main([]) == 128 + signal.SIGHUP
    assert capsys.readouterr().err == "fakelab x: stopped by SIGHUP; unfinished outputs were removed\n"

    def plain_failure(_args):
        raise FakelabError("bad input")

    # The next run in the same process is judged on its own.
    monkeypatch.setattr(cli, "build_parser", lambda: parser_with(plain_failure))
    assert cli.main([]) == 1
    assert capsys.readouterr().err == "fakelab x: error: bad input\n"
