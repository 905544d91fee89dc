"""The strict seccomp profile is Podman's default minus namespaces, mounts, keyctl, bpf, ptrace."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from nosgrid.node.executor.seccomp import (
    CLONE_NAMESPACE_FLAGS,
    CLONE_NAMESPACE_MASK,
    DENIED_SYSCALLS,
    PODMAN_DEFAULT_PROFILE,
    strict_profile,
    write_strict_profile,
)

BASE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "syscalls": [
        {"names": ["read", "write", "clone", "clone3", "unshare", "mount", "keyctl"],
         "action": "SCMP_ACT_ALLOW", "args": []},
        {"names": ["bpf", "setns"], "action": "SCMP_ACT_ALLOW", "args": [],
         "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "args": []},
    ],
}  # fmt: skip


def rules_for(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in profile["syscalls"] if name in r["names"]]


def test_mask_is_the_namespace_bits() -> None:
    assert CLONE_NAMESPACE_MASK == 0x7E020000 == 2114060288
    assert len(CLONE_NAMESPACE_FLAGS) == 7


def test_base_is_not_modified() -> None:
    before = copy.deepcopy(BASE)
    strict_profile(BASE)
    assert before == BASE


def test_denied_syscalls_are_never_allowed_unconditionally() -> None:
    profile = strict_profile(BASE)
    for name in DENIED_SYSCALLS:
        for rule in rules_for(profile, name):
            if rule["action"] == "SCMP_ACT_ALLOW":
                assert name == "clone" and rule["args"], rule
    assert rules_for(profile, "read")[0]["action"] == "SCMP_ACT_ALLOW"
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"


def test_rules_left_empty_are_dropped() -> None:
    profile = strict_profile(BASE)
    assert all(r["names"] for r in profile["syscalls"])
    assert not any(r.get("includes", {}).get("caps") for r in profile["syscalls"])


def test_clone_is_allowed_only_without_namespace_flags() -> None:
    rules = [r for r in rules_for(strict_profile(BASE), "clone") if "includes" not in r]
    allow = [r for r in rules if r["action"] == "SCMP_ACT_ALLOW"]
    assert allow == [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
            "comment": "nosgrid: clone without namespace flags",
            "excludes": {"arches": ["s390", "s390x"]},
        }
    ]
    deny_bits = sorted(r["args"][0]["value"] for r in rules if r["action"] == "SCMP_ACT_ERRNO")
    assert deny_bits == sorted(CLONE_NAMESPACE_FLAGS.values())
    for rule in rules:
        if rule["action"] == "SCMP_ACT_ERRNO":
            arg = rule["args"][0]
            assert rule["errnoRet"] == 1
            assert (arg["op"], arg["value"]) == ("SCMP_CMP_MASKED_EQ", arg["valueTwo"])


def test_clone3_is_enosys_and_the_rest_eperm() -> None:
    profile = strict_profile(BASE)
    (clone3,) = rules_for(profile, "clone3")
    assert (clone3["action"], clone3["errnoRet"]) == ("SCMP_ACT_ERRNO", 38)
    for name in set(DENIED_SYSCALLS) - {"clone", "clone3"}:
        (rule,) = rules_for(profile, name)
        assert (rule["action"], rule["errnoRet"], rule["args"]) == ("SCMP_ACT_ERRNO", 1, [])


@pytest.mark.skipif(not PODMAN_DEFAULT_PROFILE.is_file(), reason="podman's seccomp.json missing")
def test_podmans_own_profile_becomes_strict(tmp_path: Path) -> None:
    path = write_strict_profile(tmp_path / "strict.json")
    profile = json.loads(path.read_text())
    allowed = {
        n
        for r in profile["syscalls"]
        if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
        for n in r["names"]
    }
    assert not allowed & set(DENIED_SYSCALLS)
    assert {"read", "execve", "socket"} & allowed
    assert write_strict_profile(tmp_path / "strict.json") == path  # idempotent
