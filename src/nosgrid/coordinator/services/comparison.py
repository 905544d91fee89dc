"""What a held job's spec asks of its runs, and how two runs' results compare.

Pure helpers of :mod:`.verification` (no unit of work): the verification terms stored in
a definition's ``meta.nosgrid`` (:func:`spec_terms`), a result's output hashes, the
comparison of two results in ``deterministic`` or ``tolerance`` mode (reading output
blobs through ``read_blob`` only when numbers must be compared), and the verdict of a
dispute from the node's, the auditor's and the panel's results.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

from nosgrid.core import verification as rules
from nosgrid.core.jobs.meta import MAX_REPLICAS
from nosgrid.core.verification import DisputeOutcome, Mode, Tolerance, Verdict

#: reads an output blob by its sha256 (the coordinator's blob store)
ReadBlob = Callable[[str], bytes]


def spec_terms(spec_body: str | None) -> tuple[Mode, Tolerance, int]:
    """``(mode, tolerance, replicas)`` from a stored definition's ``meta.nosgrid``.

    >>> spec_terms('{"meta": {"nosgrid": {"verification": "tolerance", "rel_eps": 0.1}}}')
    ('tolerance', Tolerance(abs_eps=1e-09, rel_eps=0.1), 1)
    >>> spec_terms(None)[0]
    'none'
    """
    try:
        meta = json.loads(spec_body or "{}").get("meta") or {}
    except (ValueError, AttributeError):
        meta = {}
    extra = meta.get("nosgrid") if isinstance(meta, dict) else None
    extra = extra if isinstance(extra, dict) else {}
    mode = extra.get("verification") or "none"
    if mode not in ("deterministic", "tolerance", "none"):
        mode = "none"
    tol = Tolerance.of(extra.get("abs_eps"), extra.get("rel_eps"))
    replicas = extra.get("replicas")
    ok = isinstance(replicas, int) and 1 <= replicas <= MAX_REPLICAS and mode != "none"
    return cast(Mode, mode), tol, int(cast(int, replicas)) if ok else 1


def output_hashes(result: Mapping[str, Any]) -> dict[str, str]:
    """``path → sha256`` of a reported result's output files.

    >>> output_hashes({"outputs": [{"path": "/o/a", "sha256": "ab"}]})
    {'/o/a': 'ab'}
    """
    outputs = result.get("outputs") or []
    return {str(o["path"]): str(o["sha256"]) for o in outputs
            if isinstance(o, Mapping) and "path" in o and "sha256" in o}


def compare_results(mode: Mode, a: Mapping[str, Any], b: Mapping[str, Any], tol: Tolerance,
                    read_blob: ReadBlob) -> rules.Comparison:
    """Compare two runs' reported outputs: hashes for ``deterministic``, numbers (read from
    the blob store) for ``tolerance``.

    >>> r = {"outputs": [{"path": "/o", "sha256": "aa"}]}
    >>> compare_results("deterministic", r, r, Tolerance(), lambda s: b"").match
    True
    """
    ha, hb = output_hashes(a), output_hashes(b)
    if mode == "deterministic" or ha == hb:
        return rules.compare_output_sets("deterministic", {k: v.encode() for k, v in ha.items()},
                                         {k: v.encode() for k, v in hb.items()})
    if ha.keys() != hb.keys():
        return rules.Comparison(False, "output files differ")
    return rules.compare_output_sets(mode, {k: read_blob(v) for k, v in ha.items()},
                                     {k: read_blob(v) for k, v in hb.items()}, tol)


def resolve(mode: Mode, first: Mapping[str, Any], audit: Mapping[str, Any],
            panel: Sequence[Mapping[str, Any]], tol: Tolerance,
            read_blob: ReadBlob) -> DisputeOutcome:
    """:func:`rules.resolve_dispute` over whole output sets; no panel → inconclusive.

    >>> good, bad = {"outputs": [{"path": "/o", "sha256": "g"}]}, {"outputs": []}
    >>> resolve("deterministic", bad, good, [good], Tolerance(), bytes.fromhex).verdict
    <Verdict.NODE_WRONG: 'node_wrong'>
    """
    def same(x: Mapping[str, Any], y: Mapping[str, Any]) -> bool:
        return compare_results(mode, x, y, tol, read_blob).match

    if same(first, audit):
        return DisputeOutcome(Verdict.AGREED)
    if not panel:
        return DisputeOutcome(Verdict.INCONCLUSIVE)
    # Map each run to a token so the core rule decides with its own (unanimity) logic.
    vf = [same(p, first) for p in panel]
    va = [same(p, audit) for p in panel]
    tokens = [b"first" if f and not a else b"audit" if a and not f else
              b"both" if f else b"other" for f, a in zip(vf, va, strict=True)]
    outcome = rules.resolve_dispute("deterministic", b"first", b"audit", tokens)
    return replace(outcome, votes_first=sum(vf), votes_audit=sum(va))
