"""A strict seccomp profile: Podman's default minus user namespaces, mounts, keyctl, bpf, ptrace."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Final

PODMAN_DEFAULT_PROFILE: Final = Path("/usr/share/containers/seccomp.json")

#: Removed from every rule of the base profile, then re-added below as EPERM
#: (``clone`` comes back allowed without namespace flags; ``clone3`` as ENOSYS).
DENIED_SYSCALLS: Final[tuple[str, ...]] = (
    "unshare",
    "setns",
    "mount",
    "umount",
    "umount2",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "pivot_root",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "userfaultfd",
    "perf_event_open",
    "ptrace",
    "clone",
    "clone3",
)

CLONE_NAMESPACE_FLAGS: Final[dict[str, int]] = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
#: 0x7E020000 == 2114060288: any of these bits in clone's flags is refused.
CLONE_NAMESPACE_MASK: Final = sum(CLONE_NAMESPACE_FLAGS.values())
EPERM: Final = 1
ENOSYS: Final = 38
# clone's flags are argument 0 everywhere but s390, where they are argument 1.
_S390: Final = ["s390", "s390x"]


def _clone_rules(flags_index: int, arches: dict[str, Any]) -> list[dict[str, Any]]:
    allow = {
        "names": ["clone"],
        "action": "SCMP_ACT_ALLOW",
        "args": [
            {
                "index": flags_index,
                "value": CLONE_NAMESPACE_MASK,
                "valueTwo": 0,
                "op": "SCMP_CMP_MASKED_EQ",
            }
        ],
        "comment": "nosgrid: clone without namespace flags",
        **arches,
    }
    deny = [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": EPERM,
            "args": [
                {"index": flags_index, "value": bit, "valueTwo": bit, "op": "SCMP_CMP_MASKED_EQ"}
            ],
            "comment": f"nosgrid: no {flag}",
            **arches,
        }
        for flag, bit in CLONE_NAMESPACE_FLAGS.items()
    ]
    return [allow, *deny]


def strict_profile(base: dict[str, Any]) -> dict[str, Any]:
    """Podman's seccomp profile ``base`` made strict for untrusted jobs (pure; base is unchanged).

    Every syscall in ``DENIED_SYSCALLS`` is removed from every rule; ``clone`` is allowed
    only when its flags hold no namespace bit (``CLONE_NAMESPACE_MASK``) and fails with
    EPERM otherwise; ``clone3`` fails with ENOSYS so glibc falls back to ``clone``
    (EPERM would break Python threads); the rest fail with EPERM.

    Example::

        base = json.loads(PODMAN_DEFAULT_PROFILE.read_text())
        profile = strict_profile(base)
    """
    profile = copy.deepcopy(base)
    denied = set(DENIED_SYSCALLS)
    rules: list[dict[str, Any]] = []
    for rule in profile.get("syscalls") or []:
        names = [n for n in rule.get("names") or [] if n not in denied]
        if rule.get("name") in denied:
            continue
        if not names and "name" not in rule:
            continue
        rule["names"] = names
        rules.append(rule)
    rules += _clone_rules(0, {"excludes": {"arches": _S390}})
    rules += _clone_rules(1, {"includes": {"arches": _S390}})
    rules.append(
        {
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": ENOSYS,
            "args": [],
            "comment": "nosgrid: seccomp cannot read clone3 flags; glibc falls back to clone",
        }
    )
    rules.append(
        {
            "names": sorted(denied - {"clone", "clone3"}),
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": EPERM,
            "args": [],
            "comment": "nosgrid: no namespaces, mounts, keyrings, bpf, ptrace",
        }
    )
    profile["syscalls"] = rules
    return profile


def write_strict_profile(path: Path, base_path: Path = PODMAN_DEFAULT_PROFILE) -> Path:
    """Generate the strict profile from ``base_path`` and write it to ``path`` atomically.

    Example::

        profile = write_strict_profile(state_dir / "seccomp-strict.json")
        # podman run --security-opt seccomp=<profile> ...
    """
    base = json.loads(base_path.read_text())
    text = json.dumps(strict_profile(base), indent=1, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path
