"""Metadata capture: a real training process in a real Git checkout; URLs, command lines, hints."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path

import pytest

from tests.daemon.helpers import TRAINER, GitRepo, StartTrainer, run_git
from tracklog.v1 import records_pb2
from tracklogd import capture_metadata, strip_credentials
from tracklogd._git import Git
from tracklogd._gpu import Gpus
from tracklogd._metadata import _PACKAGES_SCRIPT, detect_container, split_python_command
from tracklogd._records import file_records
from tracklogd.testing import FakeCounters, FakeGpu, FakeNvml

WALL = 1_700_000_000.0


def test_a_dirty_checkout_gives_commit_branch_stripped_remote_and_a_diff_that_applies_to_the_commit(
    git_repo: GitRepo, start_trainer: StartTrainer, tmp_path: Path
) -> None:
    trainer = start_trainer(git_repo.root, "train.py", "--lr", "0.1")

    captured = capture_metadata(trainer.pid, str(tmp_path), started_at=WALL)

    metadata = captured.metadata
    assert metadata["git"] == {
        "remote": "https://git.example.com/team/repo.git",
        "branch": "main",
        "commit": git_repo.commit,
        "dirty": True,
    }
    assert "s3cret" not in json.dumps(metadata)
    root = os.path.realpath(git_repo.root)
    assert metadata["program"] == os.path.join(root, "train.py")
    assert metadata["codePath"] == "train.py"
    assert metadata["args"] == ["--lr", "0.1"]
    assert metadata["cwd"] == root

    patch = captured.files["diff.patch"]
    assert b"notes.txt" not in patch  # untracked files stay out of the diff
    clean = tmp_path / "clean"
    run_git(tmp_path, "clone", "-q", str(git_repo.root), str(clean))
    run_git(clean, "checkout", "-q", git_repo.commit)
    (tmp_path / "diff.patch").write_bytes(patch)
    run_git(clean, "apply", "--check", str(tmp_path / "diff.patch"))
    run_git(clean, "apply", str(tmp_path / "diff.patch"))
    for name in ("train.py", "weights.bin", "README"):
        assert (clean / name).read_bytes() == (git_repo.root / name).read_bytes(), name


def test_the_metadata_describes_the_training_interpreter_and_the_machine(
    git_repo: GitRepo, start_trainer: StartTrainer, tmp_path: Path
) -> None:
    trainer = start_trainer(git_repo.root, "train.py")

    metadata = capture_metadata(trainer.pid, str(tmp_path), started_at=WALL).metadata

    assert metadata["executable"] == sys.executable  # the venv's interpreter, not the resolved binary
    assert metadata["python"] == platform.python_version()
    assert metadata["python_implementation"] == platform.python_implementation()
    assert metadata["os"] == platform.platform()
    assert metadata["host"] == platform.node()
    assert metadata["username"]
    assert metadata["startedAt"] == "2023-11-14T22:13:20.000000Z"
    assert metadata["pid"] == trainer.pid
    assert isinstance(metadata["cpu_count_logical"], int)
    assert metadata["cpu_count_logical"] >= 1
    assert metadata["cpu_model"]
    assert metadata["memory"]["total"] > 0  # type: ignore[index]
    assert metadata["disk"]["total"] > 0  # type: ignore[index]
    assert metadata["tracklog_version"] == "0.1.0"
    assert "gpu" not in metadata  # no NVML here


def test_requirements_txt_lists_the_packages_of_the_training_interpreter(
    git_repo: GitRepo, start_trainer: StartTrainer, tmp_path: Path
) -> None:
    trainer = start_trainer(git_repo.root, "train.py")

    captured = capture_metadata(trainer.pid, str(tmp_path), started_at=WALL)

    lines = captured.files["requirements.txt"].decode().splitlines()
    assert [line for line in lines if line.startswith("pytest==")] == [f"pytest=={pytest.__version__}"]
    names = [re.sub(r"[-_.]+", "-", line.split("==")[0]).lower() for line in lines]
    assert names == sorted(set(names))  # by normalised name, each once


def test_the_package_probe_reads_the_same_names_and_versions_as_importlib_metadata() -> None:
    # The probe reads the METADATA headers itself (the email parser is slow); it must agree with it.
    expected: dict[str, str] = {}
    for dist in importlib_metadata.distributions():
        name, version = dist.metadata["Name"], dist.metadata["Version"]
        if name:
            expected.setdefault(re.sub(r"[-_.]+", "-", name).lower(), f"{name}=={version}")
    out = subprocess.run(
        [sys.executable, "-P", "-c", _PACKAGES_SCRIPT], capture_output=True, check=True, timeout=60
    ).stdout

    packages = json.loads(out)["packages"]

    assert packages == [expected[key] for key in sorted(expected)]
    assert len(packages) > 10


def test_a_directory_that_is_not_a_checkout_gives_empty_git_fields_and_no_diff(
    start_trainer: StartTrainer, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.py").write_text(TRAINER)
    trainer = start_trainer(plain, "train.py")

    captured = capture_metadata(trainer.pid, str(tmp_path), started_at=WALL)

    assert captured.metadata["git"] == {"remote": "", "branch": "", "commit": "", "dirty": False}
    assert captured.metadata["codePath"] == ""
    assert "diff.patch" not in captured.files
    assert "requirements.txt" in captured.files


def test_a_missing_git_binary_gives_empty_git_fields(
    git_repo: GitRepo, start_trainer: StartTrainer, tmp_path: Path
) -> None:
    trainer = start_trainer(git_repo.root, "train.py")

    captured = capture_metadata(
        trainer.pid, str(tmp_path), started_at=WALL, git=Git(git="tracklog-test-no-such-git")
    )

    assert captured.metadata["git"] == {"remote": "", "branch": "", "commit": "", "dirty": False}
    assert "diff.patch" not in captured.files


def test_slurm_and_container_hints_come_from_the_training_processs_environment(
    git_repo: GitRepo, start_trainer: StartTrainer, tmp_path: Path
) -> None:
    trainer = start_trainer(
        git_repo.root,
        "train.py",
        SLURM_JOB_ID="77",
        SLURM_JOB_NAME="train",
        KUBERNETES_SERVICE_HOST="10.0.0.1",
    )

    metadata = capture_metadata(trainer.pid, str(tmp_path), started_at=WALL).metadata

    assert metadata["slurm"] == {"job_id": "77", "job_name": "train"}
    container = metadata["container"]
    assert isinstance(container, dict)
    assert container["runtime"] == "kubernetes"
    assert "KUBERNETES_SERVICE_HOST" in container["hints"]


def test_a_process_that_cannot_be_read_still_gives_the_machine_and_the_gpus(tmp_path: Path) -> None:
    nvml = FakeNvml(FakeGpu(name="Fake A100"), FakeGpu(name="Fake A100"), driver="550.54.15", cuda=12040)

    captured = capture_metadata(
        4242, str(tmp_path), started_at=WALL, source=FakeCounters(cores=8), gpus=Gpus(nvml)
    )

    metadata = captured.metadata
    assert (metadata["program"], metadata["args"], metadata["executable"]) == ("", [], "")
    assert (metadata["cpu_count"], metadata["cpu_count_logical"]) == (4, 8)
    assert metadata["gpu"] == "Fake A100"
    assert metadata["gpu_count"] == 2
    assert metadata["gpu_devices"] == [
        {"index": 0, "name": "Fake A100", "memory_total": 16 << 30},
        {"index": 1, "name": "Fake A100", "memory_total": 16 << 30},
    ]
    assert metadata["cuda_version"] == "12.4"
    assert metadata["nvidia_driver_version"] == "550.54.15"
    assert captured.files == {}


@pytest.mark.parametrize(
    ("url", "stripped"),
    [
        ("https://user:token@github.com/org/repo.git", "https://github.com/org/repo.git"),
        ("https://ghp_abcdef@github.com/org/repo.git", "https://github.com/org/repo.git"),
        ("https://github.com/org/repo.git", "https://github.com/org/repo.git"),
        ("http://u:p@host.example:8080/r.git?private_token=x#top", "http://host.example:8080/r.git"),
        ("ssh://git@github.com/org/repo.git", "ssh://git@github.com/org/repo.git"),
        ("ssh://git:pw@github.com:2222/org/repo.git", "ssh://github.com:2222/org/repo.git"),
        ("git+ssh://deploy@host.example/repo", "git+ssh://deploy@host.example/repo"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
        ("user:pw@host.example:org/repo.git", "host.example:org/repo.git"),
        ("../sibling/repo.git", "../sibling/repo.git"),
        ("", ""),
    ],
)
def test_credentials_are_stripped_from_remote_urls(url: str, stripped: str) -> None:
    assert strip_credentials(url) == stripped


@pytest.mark.parametrize(
    ("cmdline", "program", "args"),
    [
        (["python", "train.py", "--lr", "1"], "train.py", ["--lr", "1"]),
        (["python", "-u", "-W", "ignore", "-Xdev", "train.py"], "train.py", []),
        (
            ["python", "-m", "torch.distributed.run", "--nproc", "2"],
            "-m torch.distributed.run",
            ["--nproc", "2"],
        ),
        (["python", "-um", "pkg.main", "a"], "-m pkg.main", ["a"]),
        (["python", "-c", "import x", "a"], "-c", ["a"]),
        (["python", "-", "a"], "-", ["a"]),
        (["python"], "", []),
    ],
)
def test_the_program_and_its_arguments_are_found_in_a_python_command_line(
    cmdline: list[str], program: str, args: list[str]
) -> None:
    assert split_python_command(cmdline) == (program, args)


def test_container_hints_come_from_marker_files_cgroups_and_the_environment() -> None:
    def nothing(path: str) -> bool:
        return False

    assert detect_container({}, "0::/user.slice", exists=nothing) is None
    assert detect_container({}, "0::/", exists=lambda path: path == "/.dockerenv") == {
        "runtime": "docker",
        "hints": ["/.dockerenv"],
    }
    assert detect_container({}, "12:pids:/kubepods/besteffort/pod1", exists=nothing) == {
        "runtime": "kubernetes",
        "hints": ["cgroup:kubepods"],
    }
    podman = detect_container({}, "0::/", exists=lambda path: path == "/run/.containerenv")
    assert podman is not None
    assert podman["runtime"] == "podman"


def test_a_file_is_sent_as_chunks_of_at_most_a_mebibyte_with_its_digest_in_the_last() -> None:
    data = os.urandom((5 << 20) // 2)

    chunks = [records_pb2.Record.FromString(p).file for p in file_records("diff.patch", data)]

    assert [c.offset for c in chunks] == [0, 1 << 20, 2 << 20]
    assert [c.last for c in chunks] == [False, False, True]
    assert all(c.name == "diff.patch" and c.version == 1 and c.size == len(data) for c in chunks)
    assert [c.sha256 for c in chunks] == ["", "", hashlib.sha256(data).hexdigest()]
    assert b"".join(c.data for c in chunks) == data
    (empty,) = [records_pb2.Record.FromString(p).file for p in file_records("requirements.txt", b"")]
    assert (empty.last, empty.size, empty.data) == (True, 0, b"")
