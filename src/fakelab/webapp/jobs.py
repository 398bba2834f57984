"""Background jobs of the web app: each one runs a `fakelab` command in a child process.

Running the CLI (rather than the Python API in a thread) gives the page exactly the CLI's
input checks and one-line errors, a progress bar read from tqdm, and a cancel that works at
any moment: SIGTERM, after which the command's atomic outputs leave no partial file.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

PERCENT = re.compile(r"(\d{1,3})%\|")


@dataclass
class Job:
    id: str
    kind: str
    folder: Path
    steps: list[list[str]]  # fakelab commands, run one after the other
    finish: Callable[["Job"], dict] | None = None  # builds the result from the outputs
    measure: Callable[["Job"], float | None] | None = None  # progress read from the outputs (no tqdm bar)
    exclusive: bool = True  # waits for the jobs before it (a live preview runs beside them)
    stop_keeps_output: bool = False  # cancel is a normal stop (live: the recording is kept)
    partial_outputs: tuple[str, ...] = ()  # what a cancelled job leaves unfinished in its folder (removed)
    state: str = "queued"  # queued, running, done, failed, cancelled
    progress: float = 0.0  # 0..1 within the current step
    step: int = 0
    message: str = ""
    step_stdout: list[list[str]] = field(default_factory=list)  # each step's output lines
    may_fail: tuple[int, ...] = ()  # steps whose failure is noted in step_errors and the job goes on
    step_errors: dict[int, str] = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # shown while the job runs (live: where its stream is)
    result: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    _process: subprocess.Popen | None = None
    _process_code: int | None = None
    _cancelled: bool = False

    @property
    def stdout(self) -> list[str]:
        """Every step's output lines, in order."""
        return [line for lines in self.step_stdout for line in lines]

    def to_json(self) -> dict:
        steps = max(1, len(self.steps))
        if self.measure is not None and self.state == "running":
            measured = self.measure(self)
            if measured is not None:
                self.progress = measured
        return {"id": self.id, "kind": self.kind, "state": self.state,
                "progress": round(min(1.0, (self.step + self.progress) / steps), 3),
                "message": self.message, "result": self.result, "info": self.info,
                "seconds": round(time.time() - self.started, 1)}


class JobRunner:
    """Runs one job at a time (the machine's CPUs are better spent on one), the rest wait."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._turn = threading.Lock()

    def submit(self, kind: str, steps: list[list[str]], finish=None, folder: Path | None = None,
               job_id: str | None = None, **settings) -> Job:
        job_id = job_id or uuid.uuid4().hex[:12]
        folder = folder or self.folder_for(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        job = Job(job_id, kind, folder, steps, finish, **settings)
        with self._lock:
            self.jobs[job_id] = job
        threading.Thread(target=self._run, args=(job,), daemon=True).start()
        return job

    def folder_for(self, job_id: str) -> Path:
        return self.workdir / "jobs" / job_id

    def cancel(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        job._cancelled = True
        process = job._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
        return job

    def shutdown(self, wait_s: float = 10.0) -> None:
        """Stop every running job (the server is going away: no child may outlive it)."""
        running = [job for job in self.jobs.values() if job.state in ("queued", "running")]
        for job in running:
            self.cancel(job.id)
        deadline = time.monotonic() + wait_s
        for job in running:
            process = job._process
            if process is not None:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()

    def _run(self, job: Job) -> None:
        with self._turn if job.exclusive else contextlib.nullcontext():
            for index, command in enumerate(job.steps):
                if job._cancelled:
                    break
                job.state, job.step, job.progress = "running", index, 0.0
                code, error = self._run_step(job, command)
                if job._cancelled and not (job.stop_keeps_output and code == 0):
                    break
                if code != 0 and index in job.may_fail:
                    job.step_errors[index] = error or f"exit status {code}"
                elif code != 0:
                    job.state, job.message = "failed", error or f"the job failed (exit status {code})"
                    return
            if job._cancelled and not job.stop_keeps_output:
                for name in job.partial_outputs:  # a sweep's finished cells, say: half a result is none
                    shutil.rmtree(job.folder / name, ignore_errors=True)
                job.state, job.message = "cancelled", "cancelled; no output was kept"
                return
            if job._cancelled and job._process_code != 0:
                job.state, job.message = "cancelled", "stopped before it started"
                return
            try:
                job.result = job.finish(job) if job.finish else {}
            except Exception as error:  # a result that cannot be read is the job's failure, shown in the page
                job.state, job.message = "failed", f"could not read the results: {error}"
                return
            job.state, job.progress, job.step = "done", 1.0, len(job.steps) - 1
            job.message = job.message or "done"

    def _run_step(self, job: Job, command: list[str]) -> tuple[int, str]:
        # The child runs this very fakelab (jobs run in their own folder, so a relative PYTHONPATH would not do).
        package_root = str(Path(__file__).resolve().parents[2])
        paths = [package_root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(paths))
        process = subprocess.Popen(
            [sys.executable, "-m", "fakelab", *command], cwd=job.folder, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        job._process = process
        lines: list[str] = []
        job.step_stdout.append(lines)

        def read_stdout() -> None:
            for line in process.stdout:
                lines.append(line)

        reader = threading.Thread(target=read_stdout, daemon=True)
        reader.start()
        last_line = ""
        buffer = ""
        while True:
            chunk = process.stderr.read(256)
            if not chunk:
                break
            buffer = (buffer + chunk)[-2000:]
            for match in PERCENT.finditer(chunk):
                job.progress = int(match.group(1)) / 100
            # Complete lines only (the last piece may be half a progress bar), and no progress bars.
            lines = [line for line in re.split(r"[\r\n]", buffer)[:-1] if line.strip() and "%|" not in line]
            if lines:
                last_line = lines[-1]
                job.message = last_line[-300:]
        code = process.wait()
        reader.join(timeout=5)
        job._process, job._process_code = None, code
        errors = [line for line in re.split(r"[\r\n]", buffer) if "error:" in line]
        return code, (errors[-1].strip() if errors else last_line.strip())
