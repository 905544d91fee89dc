"""Verification: which jobs are audited and by whom (:mod:`.sampling`), how two runs'
outputs compare and who wins a dispute (:mod:`.comparison`).

The public names of both are re-exported here.
"""

from nosgrid.core.verification.comparison import (
    BoolArray,
    Comparison,
    DisputeOutcome,
    FloatArray,
    ReadBlob,
    Tolerance,
    Verdict,
    compare_output_sets,
    compare_outputs,
    compare_results,
    output_hashes,
    resolve,
    resolve_dispute,
    within_tolerance,
)
from nosgrid.core.verification.sampling import (
    AUDIT_POOL,
    DEFAULT_VERIFICATION,
    HOUR,
    AuditRecord,
    Candidate,
    IntArray,
    Mode,
    VerificationParams,
    audit_draw,
    audit_probability,
    audit_rate_bps,
    audit_rates_bps,
    choose_auditor,
    choose_panel,
    detection_within,
    job_audit_rate_bps,
    may_audit,
    next_record,
    related,
    should_audit,
)

__all__ = [
    "AUDIT_POOL", "DEFAULT_VERIFICATION", "HOUR", "AuditRecord", "BoolArray", "Candidate",
    "Comparison", "DisputeOutcome", "FloatArray", "IntArray", "Mode", "ReadBlob", "Tolerance",
    "Verdict", "VerificationParams", "audit_draw", "audit_probability", "audit_rate_bps",
    "audit_rates_bps", "choose_auditor", "choose_panel", "compare_output_sets",
    "compare_outputs", "compare_results", "detection_within", "job_audit_rate_bps",
    "may_audit", "next_record", "output_hashes", "related", "resolve", "resolve_dispute",
    "should_audit", "within_tolerance",
]
