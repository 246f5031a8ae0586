"""What a run ran on, captured by the daemon once per training process, off the Attach path.

``capture_metadata(pid, run_dir, ...)`` looks at the TRAINING process (through psutil: its
executable, command line, working directory, environment), the machine, NVML and Git, and returns
the metadata object and the files to save with the run (``requirements.txt``; ``diff.patch`` when
the tree has uncommitted changes to tracked files, see ``_git``). Whatever cannot be read is
left empty; nothing raises.

The metadata keys (a JSON object; wandb-like names):

=========================  =====================================================================
key                        value
=========================  =====================================================================
``os``                     ``platform.platform()``, e.g. ``Linux-6.1.0-18-amd64-x86_64-with-glibc2.36``
``kernel``                 kernel release (``platform.release()``)
``python``                 the training interpreter's version, e.g. ``3.11.7``
``python_implementation``  ``CPython``, ``PyPy`` ...
``executable``             the training interpreter (its venv path, not the resolved binary)
``program``                the script (absolute), ``-m module``, ``-c`` or ``-`` (stdin)
``codePath``               the script relative to the Git checkout's top ("" outside one)
``args``                   the script's arguments (list of strings)
``cwd``                    the training process's working directory
``host``                   host name
``username``               the user running the training process
``startedAt``              when the run attached, ISO 8601 UTC (``2026-01-31T12:00:00.000000Z``)
``pid``                    the training process
``cpu_count``              physical cores
``cpu_count_logical``      logical CPUs
``cpu_model``              e.g. ``Intel(R) Xeon(R) ...`` (``/proc/cpuinfo``; platform elsewhere)
``memory``                 ``{"total": bytes}``
``disk``                   ``{"total": bytes, "used": bytes}`` of the run directory's filesystem
``gpu``                    name of GPU 0 (only with NVML and a GPU, as the next four)
``gpu_count``              number of NVIDIA GPUs
``gpu_devices``            ``[{"index", "name", "memory_total"}]``
``cuda_version``           CUDA version the driver supports, e.g. ``12.4``
``nvidia_driver_version``  e.g. ``550.54.15``
``container``              only when detected: ``{"runtime": "docker"|"podman"|"kubernetes"|...,
                           "hints": [...]}`` (/.dockerenv, /run/.containerenv, cgroup names,
                           KUBERNETES_SERVICE_HOST)
``slurm``                  only under SLURM: every ``SLURM_*`` variable of the training process,
                           lower-cased without the prefix (``{"job_id": "123", ...}``)
``tracklog_version``       the daemon's tracklog version
``git``                    ``{"remote", "branch", "commit", "dirty"}``; empty strings and false
                           outside a checkout. The remote carries no credentials.
=========================  =====================================================================

``requirements.txt`` lists ``name==version`` of every distribution the training interpreter sees
(sorted by normalised name; the first of a name on ``sys.path`` wins, as for the interpreter),
found by running that interpreter (``<executable> -P -c <script>`` with importlib.metadata, in the
training process's environment, with a timeout): the daemon's own interpreter may be another venv.
"""

from __future__ import annotations

import datetime
import getpass
import json
import logging
import os
import platform
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from tracklog import __version__
from tracklogd._git import Git, GitInfo
from tracklogd._gpu import Gpus
from tracklogd._sources import ProcessLike, PsutilLike, psutil_module

log = logging.getLogger(__name__)

T = TypeVar("T")

PACKAGES_TIMEOUT = 30.0
MAX_ENV_VALUE = 1000  # characters kept of one SLURM variable

# Runs in the training interpreter. -P keeps the working directory off sys.path, so a user's
# csv.py or email.py cannot shadow what importlib.metadata imports.
# Reads only the Name and Version headers at the top of each METADATA file: the email parser
# behind dist.metadata costs about 1 ms a distribution, which a venv of a few hundred packages
# (torch, its stack, the tools beside it) would spend beside the training loop. The probe also
# lowers its priority: listing packages must never compete with training.
_PACKAGES_SCRIPT = """\
import json, os, platform, re, sys
from importlib import metadata
try:
    os.nice(10)
except (AttributeError, OSError):
    pass
seen = {}
for dist in metadata.distributions():
    try:
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    except Exception:
        continue
    fields = {}
    for line in text.splitlines():
        if not line:
            break  # the end of the headers
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version") and key not in fields:
            fields[key] = value.strip()
            if len(fields) == 2:
                break
    name, version = fields.get("Name"), fields.get("Version")
    if name and version:
        seen.setdefault(re.sub(r"[-_.]+", "-", name).lower(), f"{name}=={version}")
json.dump({"python": platform.python_version(), "implementation": platform.python_implementation(),
           "packages": [seen[key] for key in sorted(seen)]}, sys.stdout)
"""
_PYTHON_NAME = re.compile(r"^(python|pypy)", re.IGNORECASE)
_CGROUP_RUNTIMES = (
    ("kubepods", "kubernetes"),
    ("libpod", "podman"),
    ("docker", "docker"),
    ("containerd", "containerd"),
    ("crio", "cri-o"),
    ("lxc", "lxc"),
)


@dataclass
class CapturedMetadata:
    metadata: dict[str, object]
    files: dict[str, bytes] = field(default_factory=dict)  # name -> content, in sending order


@dataclass
class ProcessInfo:
    exe: str = ""
    cmdline: list[str] = field(default_factory=list)
    cwd: str = ""
    environ: dict[str, str] = field(default_factory=dict)
    username: str = ""


def process_info(source: PsutilLike, pid: int) -> ProcessInfo:
    """What psutil may tell about the training process; each part it refuses stays empty."""
    if pid <= 0:
        return ProcessInfo()
    try:
        proc: ProcessLike = source.Process(pid)
    except Exception:
        return ProcessInfo()
    info = ProcessInfo()
    for name, read in (
        ("exe", proc.exe),
        ("cmdline", proc.cmdline),
        ("cwd", proc.cwd),
        ("environ", proc.environ),
        ("username", proc.username),
    ):
        try:
            setattr(info, name, read())
        except Exception as exc:  # AccessDenied, NoSuchProcess, a zombie
            log.debug("process %d %s: %s", pid, name, exc)
    return info


def interpreter_path(info: ProcessInfo) -> str:
    """The interpreter as the training process named it (a venv's ``bin/python``), when that is the
    same file as its executable; else the executable. ``/proc`` resolves symlinks, and running the
    resolved binary would list the base installation's packages instead of the venv's."""
    if not info.exe:
        return ""
    if info.cmdline:
        first = info.cmdline[0]
        if os.sep in first:
            candidate = os.path.join(info.cwd, first) if info.cwd else first
        else:
            candidate = shutil.which(first, path=info.environ.get("PATH")) or ""
        try:
            if candidate and os.path.samefile(candidate, info.exe):
                return os.path.abspath(candidate)
        except OSError:
            pass
    return info.exe


def looks_like_python(path: str) -> bool:
    return bool(path) and bool(_PYTHON_NAME.match(os.path.basename(os.path.realpath(path))))


def split_python_command(cmdline: list[str]) -> tuple[str, list[str]]:
    """``(program, args)`` of a Python command line: the script, ``-m module``, ``-c`` or ``-``,
    skipping the interpreter's own options; ``("", [])`` for an interactive interpreter."""
    i = 1
    while i < len(cmdline):
        arg = cmdline[i]
        if arg == "-" or not arg.startswith("-"):
            return arg, cmdline[i + 1 :]
        if arg == "--check-hash-based-pycs":
            i += 2
            continue
        if not arg.startswith("--"):
            for j, flag in enumerate(arg[1:], start=1):
                if flag not in "cmWX":
                    continue
                value = arg[j + 1 :]
                if not value:
                    i += 1
                    value = cmdline[i] if i < len(cmdline) else ""
                if flag == "c":
                    return "-c", cmdline[i + 1 :]
                if flag == "m":
                    return f"-m {value}", cmdline[i + 1 :]
                break  # -W / -X: the rest was their value
        i += 1
    return "", []


class InterpreterProbe:
    """Runs the training interpreter to learn its version and installed packages. ``start()``
    launches it and returns at once, so the Git commands run meanwhile; ``result()`` collects it
    (None on any failure: not startable, non-zero exit, timeout, unreadable output)."""

    def __init__(self, interpreter: str, info: ProcessInfo, timeout: float = PACKAGES_TIMEOUT) -> None:
        self._interpreter = interpreter
        self._info = info
        self._timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> InterpreterProbe:
        env = dict(self._info.environ) if self._info.environ else dict(os.environ)
        env["PYTHONIOENCODING"] = "utf-8"
        cwd = self._info.cwd
        try:
            self._proc = subprocess.Popen(
                [self._interpreter, "-P", "-c", _PACKAGES_SCRIPT],
                cwd=cwd if cwd and os.path.isdir(cwd) else None,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.info("cannot list the packages of %s: %s", self._interpreter, exc)
        return self

    def result(self) -> dict[str, object] | None:
        proc = self._proc
        if proc is None:
            return None
        with proc:
            try:
                out, err = proc.communicate(timeout=self._timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                log.info("listing the packages of %s took over %ss", self._interpreter, self._timeout)
                return None
        if proc.returncode != 0:
            log.info("listing the packages of %s failed: %s", self._interpreter, err[-500:])
            return None
        try:
            facts = json.loads(out)
        except ValueError:
            return None
        return facts if isinstance(facts, dict) else None

    def cancel(self) -> None:
        if self._proc is not None:
            with self._proc as proc:
                proc.kill()
            self._proc = None


def detect_container(
    environ: Mapping[str, str], cgroup: str, exists: Callable[[str], bool] = os.path.exists
) -> dict[str, object] | None:
    """``{"runtime", "hints"}`` when anything says the process runs in a container, else None."""
    hints: list[str] = []
    runtimes: list[str] = []
    if environ.get("KUBERNETES_SERVICE_HOST"):
        hints.append("KUBERNETES_SERVICE_HOST")
        runtimes.append("kubernetes")
    if exists("/run/.containerenv"):
        hints.append("/run/.containerenv")
        runtimes.append("podman")
    if exists("/.dockerenv"):
        hints.append("/.dockerenv")
        runtimes.append("docker")
    for needle, runtime in _CGROUP_RUNTIMES:
        if needle in cgroup:
            hints.append(f"cgroup:{needle}")
            runtimes.append(runtime)
    if not hints:
        return None
    return {"runtime": runtimes[0], "hints": hints}


def _cgroup(pid: int) -> str:
    for path in (f"/proc/{pid}/cgroup", "/proc/self/cgroup"):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read(64 * 1024)
        except OSError:
            continue
    return ""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _iso(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def capture_metadata(
    pid: int,
    run_dir: str,
    *,
    started_at: float,
    source: PsutilLike | None = None,
    gpus: Gpus | None = None,
    git: Git | None = None,
    packages_timeout: float = PACKAGES_TIMEOUT,
) -> CapturedMetadata:
    """The run's metadata and files (see the module docstring). Blocks for git and a subprocess:
    call it off the Attach path."""
    ps = source if source is not None else psutil_module()
    info = process_info(ps, pid)
    interpreter = interpreter_path(info)
    python = looks_like_python(interpreter)
    probe = InterpreterProbe(interpreter, info, packages_timeout).start() if python else None
    if python:
        program, args = split_python_command(info.cmdline)
        if program and not program.startswith("-"):
            program = os.path.normpath(os.path.join(info.cwd, program)) if info.cwd else program
    else:
        program, args = (info.cmdline[0], info.cmdline[1:]) if info.cmdline else ("", [])

    try:
        tool = git if git is not None else Git()
        repo = tool.info(info.cwd) if info.cwd else GitInfo()
        if not repo.root and os.path.isabs(program):
            repo = tool.info(os.path.dirname(program))
        diff = tool.diff(repo.root) if repo.commit and repo.dirty else b""
    except BaseException:
        if probe is not None:
            probe.cancel()
        raise
    code_path = ""
    if repo.root and os.path.isabs(program):
        relative = os.path.relpath(program, repo.root)
        code_path = "" if relative.startswith("..") else relative

    facts = probe.result() if probe is not None else None  # it ran alongside the Git commands
    metadata: dict[str, object] = {
        "os": platform.platform(),
        "kernel": platform.release(),
        "python": _str(facts, "python"),
        "python_implementation": _str(facts, "implementation"),
        "executable": interpreter,
        "program": program,
        "codePath": code_path,
        "args": args,
        "cwd": info.cwd,
        "host": socket.gethostname(),
        "username": info.username or _user(),
        "startedAt": _iso(started_at),
        "pid": pid,
        "cpu_count": _safe(lambda: ps.cpu_count(logical=False)),
        "cpu_count_logical": _safe(lambda: ps.cpu_count(logical=True)),
        "cpu_model": cpu_model(),
        "memory": {"total": _safe(lambda: ps.virtual_memory().total)},
    }
    disk = _safe(lambda: ps.disk_usage(run_dir))
    metadata["disk"] = {"total": disk.total, "used": disk.used} if disk is not None else {}
    if gpus is not None:
        metadata.update(gpus.describe())
    container = detect_container(info.environ, _cgroup(pid) if pid > 0 else "")
    if container is not None:
        metadata["container"] = container
    slurm = {
        key[len("SLURM_") :].lower(): value[:MAX_ENV_VALUE]
        for key, value in sorted(info.environ.items())
        if key.startswith("SLURM_")
    }
    if slurm:
        metadata["slurm"] = slurm
    metadata["tracklog_version"] = __version__
    metadata["git"] = repo.metadata()

    files: dict[str, bytes] = {}
    packages = facts.get("packages") if facts is not None else None
    if isinstance(packages, list):
        files["requirements.txt"] = "".join(
            f"{line}\n" for line in packages if isinstance(line, str)
        ).encode()
    if diff:
        files["diff.patch"] = diff
    return CapturedMetadata(metadata, files)


def _str(facts: dict[str, object] | None, key: str) -> str:
    value = facts.get(key) if facts is not None else None
    return value if isinstance(value, str) else ""


def _safe(read: Callable[[], T]) -> T | None:
    try:
        return read()
    except Exception:
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in the environment nor the password database
        return ""
