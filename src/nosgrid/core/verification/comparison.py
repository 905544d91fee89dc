"""How two runs' outputs compare, and who wins a dispute (pure).

**Comparison**: ``deterministic`` — bytes (so sha256) equal; ``tolerance`` — numbers in
JSON or ``.npy`` within ``abs_eps + rel_eps·max(|a|, |b|)``; ``none`` — never audited.
Whole results (``{"outputs": [{"path", "sha256"}…]}``) compare by their output hashes,
reading the blobs through ``read_blob`` only when numbers must be compared.

**Disputes**: a mismatch goes to a panel of ``tiebreakers`` runs. A side is wrong only
when the whole panel agrees with the other side; anything else is inconclusive and nobody
is slashed.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from nosgrid.core.errors import InvalidInput
from nosgrid.core.verification.sampling import DEFAULT_VERIFICATION, Mode, VerificationParams

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
_NPY_MAGIC: Final = b"\x93NUMPY"
#: reads an output blob by its sha256 (the coordinator's blob store)
ReadBlob = Callable[[str], bytes]


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Numbers match when ``|a − b| ≤ abs_eps + rel_eps · max(|a|, |b|)``."""

    abs_eps: float = DEFAULT_VERIFICATION.default_abs_eps
    rel_eps: float = DEFAULT_VERIFICATION.default_rel_eps

    @classmethod
    def of(cls, abs_eps: float | None, rel_eps: float | None,
           params: VerificationParams = DEFAULT_VERIFICATION) -> Tolerance:
        """From a spec's ``abs_eps``/``rel_eps`` (None → the defaults)."""
        return cls(params.default_abs_eps if abs_eps is None else abs_eps,
                   params.default_rel_eps if rel_eps is None else rel_eps)


@dataclass(frozen=True, slots=True)
class Comparison:
    match: bool
    reason: str = ""
    max_abs_error: float = 0.0


def within_tolerance(a: npt.ArrayLike, b: npt.ArrayLike, tol: Tolerance) -> BoolArray:
    """Elementwise tolerance test; NaN equals NaN, infinities must be equal.

    >>> within_tolerance([1.0, 1.0, float("nan")], [1.0 + 1e-9, 1.1, float("nan")],
    ...                  Tolerance()).tolist()
    [True, False, True]
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        bound = tol.abs_eps + tol.rel_eps * np.maximum(np.abs(x), np.abs(y))
        close = np.abs(x - y) <= bound
    out: BoolArray = close | (np.isnan(x) & np.isnan(y)) | (np.isinf(x) & (x == y))
    return out


def _parse(data: bytes) -> tuple[str, Any]:
    if data.startswith(_NPY_MAGIC):
        try:
            return "npy", np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError):
            return "bytes", data
    try:
        return "json", json.loads(data)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return "bytes", data


def _compare_arrays(a: npt.NDArray[Any], b: npt.NDArray[Any], tol: Tolerance) -> Comparison:
    if a.shape != b.shape:
        return Comparison(False, f"shapes differ: {a.shape} vs {b.shape}")
    numeric = all(np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_ for x in (a, b))
    if not numeric or np.iscomplexobj(a) or np.iscomplexobj(b):
        same = a.dtype == b.dtype and bool(np.array_equal(a, b))
        return Comparison(same, "" if same else "non-numeric arrays differ")
    ok = within_tolerance(a, b, tol)
    with np.errstate(invalid="ignore"):
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    err = float(np.nanmax(np.where(np.isfinite(diff), diff, 0.0), initial=0.0))
    if bool(ok.all()):
        return Comparison(True, "", err)
    return Comparison(False, f"{int((~ok).sum())} of {ok.size} values outside tolerance", err)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _compare_json(a: Any, b: Any, tol: Tolerance, path: str = "$") -> Comparison:
    if _is_number(a) and _is_number(b):
        if bool(within_tolerance(float(a), float(b), tol)):
            return Comparison(True, "", abs(float(a) - float(b)))
        return Comparison(False, f"{path}: {a!r} vs {b!r} outside tolerance",
                          abs(float(a) - float(b)))
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return Comparison(False, f"{path}: lengths differ ({len(a)} vs {len(b)})")
        if a and all(_is_number(x) for x in a) and all(_is_number(x) for x in b):
            return _compare_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64), tol)
        items: Iterable[tuple[str, Any, Any]] = (
            (f"{path}[{i}]", x, y) for i, (x, y) in enumerate(zip(a, b, strict=True)))
    elif isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return Comparison(False, f"{path}: keys differ")
        items = ((f"{path}.{k}", a[k], b[k]) for k in sorted(a))
    else:
        same = type(a) is type(b) and a == b
        return Comparison(same, "" if same else f"{path}: {a!r} vs {b!r}")
    worst = 0.0
    for sub, x, y in items:
        c = _compare_json(x, y, tol, sub)
        if not c.match:
            return c
        worst = max(worst, c.max_abs_error)
    return Comparison(True, "", worst)


def compare_outputs(mode: Mode, a: bytes, b: bytes, tol: Tolerance | None = None) -> Comparison:
    """Compare two runs' output bytes under a spec's verification ``mode``.

    >>> compare_outputs("deterministic", b"x", b"x").match
    True
    >>> compare_outputs("tolerance", b"[1.0, 2.0]", b"[1.0000000001, 2.0]").match
    True
    >>> compare_outputs("tolerance", b'{"loss": 0.5}', b'{"loss": 0.6}').match
    False
    """
    if mode == "none":
        return Comparison(True, "not verified")
    if mode == "deterministic" or a == b:
        same = hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
        return Comparison(same, "" if same else "output hashes differ")
    if mode != "tolerance":
        raise InvalidInput(f"unknown verification mode {mode!r}")
    tol = tol or Tolerance()
    (ka, va), (kb, vb) = _parse(a), _parse(b)
    if ka != kb or ka == "bytes":
        return Comparison(False, f"outputs are not comparable numbers ({ka} vs {kb})")
    if ka == "npy":
        return _compare_arrays(va, vb, tol)
    try:
        return _compare_json(va, vb, tol)
    except RecursionError:
        return Comparison(False, "output nesting too deep to compare")


def compare_output_sets(mode: Mode, a: Mapping[str, bytes], b: Mapping[str, bytes],
                        tol: Tolerance | None = None) -> Comparison:
    """Compare outputs file by file (same names required).

    >>> compare_output_sets("deterministic", {"o": b"1"}, {"o": b"1", "p": b""}).reason
    'output files differ'
    """
    if mode == "none":
        return Comparison(True, "not verified")
    if a.keys() != b.keys():
        return Comparison(False, "output files differ")
    worst = 0.0
    for name in sorted(a):
        c = compare_outputs(mode, a[name], b[name], tol)
        if not c.match:
            return replace(c, reason=f"{name}: {c.reason}")
        worst = max(worst, c.max_abs_error)
    return Comparison(True, "", worst)


# --------------------------------------------------------------------- disputes


class Verdict(StrEnum):
    AGREED = "agreed"  # the audit matched: pay the node
    NODE_WRONG = "node_wrong"  # the whole panel sided with the auditor
    AUDITOR_WRONG = "auditor_wrong"  # the whole panel sided with the node
    INCONCLUSIVE = "inconclusive"  # split panel or nobody reproduced: nobody slashed


@dataclass(frozen=True, slots=True)
class DisputeOutcome:
    verdict: Verdict
    votes_first: int = 0
    votes_audit: int = 0
    panel: int = 0


def resolve_dispute(mode: Mode, first: bytes, audit: bytes,
                    tiebreak: bytes | Sequence[bytes] = (),
                    tol: Tolerance | None = None) -> DisputeOutcome:
    """Who lied? A side loses only if *every* tiebreak run matches the other side only.

    >>> resolve_dispute("deterministic", b"good", b"good").verdict
    <Verdict.AGREED: 'agreed'>
    >>> resolve_dispute("deterministic", b"fake", b"good", [b"good"] * 3).verdict
    <Verdict.NODE_WRONG: 'node_wrong'>
    >>> resolve_dispute("deterministic", b"fake", b"good", [b"good", b"fake", b"good"]).verdict
    <Verdict.INCONCLUSIVE: 'inconclusive'>
    """
    if compare_outputs(mode, first, audit, tol).match:
        return DisputeOutcome(Verdict.AGREED)
    runs = [tiebreak] if isinstance(tiebreak, bytes) else list(tiebreak)
    if not runs:
        raise InvalidInput("outputs differ: a dispute needs at least one tiebreak run")
    vf = [compare_outputs(mode, t, first, tol).match for t in runs]
    va = [compare_outputs(mode, t, audit, tol).match for t in runs]
    n = len(runs)
    if all(va) and not any(vf):
        verdict = Verdict.NODE_WRONG
    elif all(vf) and not any(va):
        verdict = Verdict.AUDITOR_WRONG
    else:
        verdict = Verdict.INCONCLUSIVE
    return DisputeOutcome(verdict, sum(vf), sum(va), n)


# --------------------------------------------------------------------- whole results


def output_hashes(result: Mapping[str, Any]) -> dict[str, str]:
    """``path → sha256`` of a reported result's output files.

    >>> output_hashes({"outputs": [{"path": "/o/a", "sha256": "ab"}]})
    {'/o/a': 'ab'}
    """
    outputs = result.get("outputs") or []
    return {str(o["path"]): str(o["sha256"]) for o in outputs
            if isinstance(o, Mapping) and "path" in o and "sha256" in o}


def compare_results(mode: Mode, a: Mapping[str, Any], b: Mapping[str, Any], tol: Tolerance,
                    read_blob: ReadBlob) -> Comparison:
    """Compare two runs' reported outputs: hashes for ``deterministic``, numbers (read from
    the blob store) for ``tolerance``.

    >>> r = {"outputs": [{"path": "/o", "sha256": "aa"}]}
    >>> compare_results("deterministic", r, r, Tolerance(), lambda s: b"").match
    True
    """
    ha, hb = output_hashes(a), output_hashes(b)
    if mode == "deterministic" or ha == hb:
        return compare_output_sets("deterministic", {k: v.encode() for k, v in ha.items()},
                                         {k: v.encode() for k, v in hb.items()})
    if ha.keys() != hb.keys():
        return Comparison(False, "output files differ")
    return compare_output_sets(mode, {k: read_blob(v) for k, v in ha.items()},
                                     {k: read_blob(v) for k, v in hb.items()}, tol)


#: compares two whole results (``compare_results`` with a case's mode, tolerance, blobs)
CompareResults = Callable[[Mapping[str, Any], Mapping[str, Any]], Comparison]


def resolve_with(compare: CompareResults, first: Mapping[str, Any], audit: Mapping[str, Any],
                 panel: Sequence[Mapping[str, Any]]) -> DisputeOutcome:
    """The verdict of a dispute from the node's, the auditor's and the panel's results
    under ``compare``; no panel → inconclusive (the core unanimity rule decides).

    >>> same = lambda x, y: Comparison(x == y)
    >>> resolve_with(same, {"o": 1}, {"o": 2}, [{"o": 2}, {"o": 2}]).verdict
    <Verdict.NODE_WRONG: 'node_wrong'>
    """
    def agree(x: Mapping[str, Any], y: Mapping[str, Any]) -> bool:
        return compare(x, y).match

    if agree(first, audit):
        return DisputeOutcome(Verdict.AGREED)
    if not panel:
        return DisputeOutcome(Verdict.INCONCLUSIVE)
    # Map each run to a token so the core rule decides with its own (unanimity) logic.
    vf = [agree(p, first) for p in panel]
    va = [agree(p, audit) for p in panel]
    tokens = [b"first" if f and not a else b"audit" if a and not f else
              b"both" if f else b"other" for f, a in zip(vf, va, strict=True)]
    outcome = resolve_dispute("deterministic", b"first", b"audit", tokens)
    return replace(outcome, votes_first=sum(vf), votes_audit=sum(va))


def resolve(mode: Mode, first: Mapping[str, Any], audit: Mapping[str, Any],
            panel: Sequence[Mapping[str, Any]], tol: Tolerance,
            read_blob: ReadBlob) -> DisputeOutcome:
    """:func:`resolve_with` comparing whole output sets in ``mode``.

    >>> good, bad = {"outputs": [{"path": "/o", "sha256": "g"}]}, {"outputs": []}
    >>> resolve("deterministic", bad, good, [good], Tolerance(), bytes.fromhex).verdict
    <Verdict.NODE_WRONG: 'node_wrong'>
    """
    return resolve_with(lambda x, y: compare_results(mode, x, y, tol, read_blob),
                        first, audit, panel)
