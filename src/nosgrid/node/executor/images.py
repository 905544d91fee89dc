"""Build the local test images (busybox, Debian Python) without any registry."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from nosgrid.node.executor.base import PodmanUnavailable
from nosgrid.node.executor.config import default_state_dir, podman_env

log = logging.getLogger(__name__)

BUSYBOX_IMAGE: Final = "localhost/nosgrid-busybox:test"
PYTHON_IMAGE: Final = "localhost/nosgrid-python:test"
#: The default image of `nosgrid ci run`: the Python image plus git, make and pip.
CI_IMAGE: Final = "localhost/nosgrid-ci:test"
CI_PACKAGES: Final = ("python3", "python3-pip", "python3-venv", "git", "make", "ca-certificates")
TEST_IMAGES: Final = (BUSYBOX_IMAGE, PYTHON_IMAGE)
DEBIAN_SUITE: Final = "bookworm"

_PASSWD: Final = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nosgrid:x:1000:1000:nosgrid job:/tmp:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
_GROUP: Final = "root:x:0:\nnosgrid:x:1000:\nnogroup:x:65534:\n"
_PRUNE: Final = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/locale",
    "usr/share/man",
    "usr/share/info",
    "var/log",
)


class ImageBuildError(PodmanUnavailable):
    """A local image could not be built; the message says which step failed."""

    code = "image_build_failed"
    default_message = "Building a local image failed; see the message for the failing step."


@dataclass(frozen=True)
class ImageInfo:
    """One local image as `nosgrid image list` shows it."""

    name: str
    image_id: str
    size_bytes: int
    created: str


def cache_dir() -> Path:
    """Where built root filesystems are cached: ``$XDG_CACHE_HOME/nosgrid/images``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "nosgrid" / "images"


# ---------------------------------------------------------------- apt mirror (pure parsing)


def parse_deb822_uris(text: str, suite: str = DEBIAN_SUITE) -> list[str]:
    """The ``URIs:`` of deb822 stanzas whose ``Suites:`` include ``suite`` exactly.

    Example::

        >>> parse_deb822_uris("Types: deb\\nURIs: http://m/debian\\nSuites: bookworm\\n")
        ['http://m/debian']
    """
    uris: list[str] = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if suite in fields.get("suites", "").split():
            uris.extend(fields.get("uris", "").split())
    return uris


def parse_sources_list(text: str, suite: str = DEBIAN_SUITE) -> list[str]:
    """The URIs of one-line ``deb`` entries for ``suite`` in a ``sources.list``.

    Example::

        >>> parse_sources_list("deb [arch=amd64] http://m/debian bookworm main\\n")
        ['http://m/debian']
    """
    uris: list[str] = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2 and words[1] == suite:
            uris.append(words[0])
    return uris


def apt_mirror(
    sources_dir: Path = Path("/etc/apt/sources.list.d"),
    sources_list: Path = Path("/etc/apt/sources.list"),
    suite: str = DEBIAN_SUITE,
) -> str:
    """The Debian mirror this machine's apt already uses for ``suite``.

    Example::

        mirror = apt_mirror()  # e.g. the URI in /etc/apt/sources.list.d/debian.sources
    """
    candidates: list[str] = []
    if sources_dir.is_dir():
        for path in sorted(sources_dir.glob("*.sources")):
            candidates += parse_deb822_uris(path.read_text(errors="replace"), suite)
        for path in sorted(sources_dir.glob("*.list")):
            candidates += parse_sources_list(path.read_text(errors="replace"), suite)
    if sources_list.is_file():
        candidates += parse_sources_list(sources_list.read_text(errors="replace"), suite)
    for uri in candidates:
        if uri.startswith(("http://", "https://", "file:/")):
            return uri
    raise ImageBuildError(
        f"no apt source for Debian {suite} found in {sources_dir} or {sources_list}; "
        "configure apt first (debootstrap uses the same mirror)"
    )


# ---------------------------------------------------------------- podman helpers


def _podman(args: list[str], state_dir: Path, *, stdin: bytes | None = None) -> str:
    if shutil.which("podman") is None:
        raise PodmanUnavailable(
            "podman is not installed; run `make system` (apt-get install podman)"
        )
    proc = subprocess.run(
        ["podman", *args],
        input=stdin,
        capture_output=True,
        env=podman_env(state_dir),
        check=False,
    )
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ImageBuildError(f"podman {args[0]} failed: {err[-1] if err else proc.returncode}")
    return proc.stdout.decode(errors="replace")


def image_exists(name: str, state_dir: Path | None = None) -> bool:
    """Whether podman has image ``name`` locally.

    Example::

        if not image_exists(BUSYBOX_IMAGE):
            build_busybox_image()
    """
    if shutil.which("podman") is None:
        return False
    proc = subprocess.run(
        ["podman", "image", "exists", name],
        capture_output=True,
        env=podman_env(state_dir or default_state_dir()),
        check=False,
    )
    return proc.returncode == 0


def list_images(state_dir: Path | None = None) -> list[ImageInfo]:
    """Every local image, newest first.

    Example::

        names = [i.name for i in list_images()]
    """
    import json

    out = _podman(["images", "--format", "json"], state_dir or default_state_dir())
    rows = json.loads(out or "[]")
    images: list[ImageInfo] = []
    for row in rows:
        names = row.get("Names") or ["<none>"]
        for name in names:
            images.append(
                ImageInfo(
                    name=str(name),
                    image_id=str(row.get("Id", ""))[:12],
                    size_bytes=int(row.get("Size", 0)),
                    created=str(row.get("CreatedAt", "")),
                )
            )
    return images


def _import(tar_path: Path, name: str, state_dir: Path) -> None:
    _podman(
        [
            "import",
            "--quiet",
            "--change",
            'CMD ["/bin/sh"]',
            "--change",
            "ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "--change",
            "WORKDIR /",
            str(tar_path),
            name,
        ],
        state_dir,
    )


def _write_users(root: Path, *, append: bool) -> None:
    etc = root / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    if append:
        passwd = (etc / "passwd").read_text()
        group = (etc / "group").read_text()
        if "\nnosgrid:" not in "\n" + passwd:
            (etc / "passwd").write_text(passwd + "nosgrid:x:1000:1000:nosgrid job:/tmp:/bin/sh\n")
        if "\nnosgrid:" not in "\n" + group:
            (etc / "group").write_text(group + "nosgrid:x:1000:\n")
    else:
        (etc / "passwd").write_text(_PASSWD)
        (etc / "group").write_text(_GROUP)


# ---------------------------------------------------------------- the two images


def build_busybox_image(
    name: str = BUSYBOX_IMAGE,
    *,
    busybox: Path = Path("/bin/busybox"),
    state_dir: Path | None = None,
) -> None:
    """Build ``name`` from the host's busybox-static: applet links, a uid 1000 user (~0.7 s).

    Example::

        build_busybox_image()  # then: podman run localhost/nosgrid-busybox:test sh -c 'id'
    """
    if not busybox.is_file():
        raise ImageBuildError(f"{busybox} is missing; apt-get install -y busybox-static")
    started = time.monotonic()
    applets = (
        subprocess.run([str(busybox), "--list"], capture_output=True, check=True)
        .stdout.decode()
        .split()
    )
    with tempfile.TemporaryDirectory(prefix="nosgrid-busybox-") as tmp:
        root = Path(tmp) / "rootfs"
        for sub in ("bin", "etc", "tmp", "work", "proc", "sys", "dev"):
            (root / sub).mkdir(parents=True)
        (root / "tmp").chmod(0o1777)
        shutil.copy2(busybox, root / "bin" / "busybox")
        for applet in applets:
            if applet != "busybox" and "/" not in applet:
                (root / "bin" / applet).symlink_to("busybox")
        for link in ("usr/bin", "sbin", "usr/sbin"):
            (root / link).parent.mkdir(parents=True, exist_ok=True)
            (root / link).symlink_to("/bin")
        _write_users(root, append=False)
        tar_path = Path(tmp) / "rootfs.tar"
        with tarfile.open(tar_path, "w") as tar:
            tar.add(root, arcname=".")
        _import(tar_path, name, state_dir or default_state_dir())
    log.info("built image", extra={"image": name, "seconds": round(time.monotonic() - started, 2)})


def python_rootfs_tarball(
    *,
    mirror: str | None = None,
    cache: Path | None = None,
    packages: tuple[str, ...] = ("python3",),
    flavour: str = "python",
) -> Path:
    """The cached Debian minbase + ``packages`` root filesystem tarball, built once (~70 s).

    Example::

        tar = python_rootfs_tarball()  # ~/.cache/nosgrid/images/python-bookworm.tar
    """
    cache = cache or cache_dir()
    tar_path = cache / f"{flavour}-{DEBIAN_SUITE}.tar"
    if tar_path.is_file():
        return tar_path
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed; apt-get install -y debootstrap")
    if os.geteuid() != 0:
        raise ImageBuildError("building the Python image needs root (debootstrap)")
    mirror = mirror or apt_mirror()
    cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nosgrid-python-", dir=cache) as tmp:
        root = Path(tmp) / "rootfs"
        proc = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(packages),
                DEBIAN_SUITE,
                str(root),
                mirror,
            ],
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = proc.stdout.decode(errors="replace").strip().splitlines()[-3:]
            raise ImageBuildError("debootstrap failed: " + " | ".join(tail))
        for rel in _PRUNE:
            target = root / rel
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir()
        _write_users(root, append=True)
        (root / "work").mkdir(exist_ok=True)
        # pip installs into the user's site (the root filesystem is read-only in a job)
        for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        partial = cache / (tar_path.name + ".partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(root, arcname=".")
        partial.replace(tar_path)
    log.info(
        "built python rootfs",
        extra={"path": str(tar_path), "seconds": round(time.monotonic() - started, 1)},
    )
    return tar_path


def build_python_image(
    name: str = PYTHON_IMAGE, *, mirror: str | None = None, state_dir: Path | None = None
) -> None:
    """Import the cached Debian + python3 rootfs as ``name`` (debootstrap only when not cached).

    Example::

        build_python_image()  # podman run localhost/nosgrid-python:test python3 -V
    """
    _import(python_rootfs_tarball(mirror=mirror), name, state_dir or default_state_dir())


def build_ci_image(
    name: str = CI_IMAGE, *, mirror: str | None = None, state_dir: Path | None = None
) -> None:
    """Build the default CI image: Debian + python3, pip, venv, git and make (~90 s once).

    Example::

        build_ci_image()  # podman run localhost/nosgrid-ci:test git --version
    """
    tar = python_rootfs_tarball(mirror=mirror, packages=CI_PACKAGES, flavour="ci")
    _import(tar, name, state_dir or default_state_dir())


def build_test_images(
    *, if_missing: bool = False, names: Iterable[str] = TEST_IMAGES, state_dir: Path | None = None
) -> list[str]:
    """Build the images tests and the demo use; return the names actually built.

    Example::

        build_test_images(if_missing=True)  # a fast no-op when both exist
    """
    built: list[str] = []
    for name in names:
        if if_missing and image_exists(name, state_dir):
            continue
        if name == BUSYBOX_IMAGE:
            build_busybox_image(name, state_dir=state_dir)
        elif name == PYTHON_IMAGE:
            build_python_image(name, state_dir=state_dir)
        else:
            raise ImageBuildError(f"unknown test image {name!r}; known: {', '.join(TEST_IMAGES)}")
        built.append(name)
    return built
