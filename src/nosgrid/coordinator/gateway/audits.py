"""The gateway's side of inference audits: each tick (at most every ``audit_every_s``)
draws the audits of newly billed records, ends the audit holds that are due and prunes
records past their retention, each in its own transaction
(``services/inference_audits.py`` holds the use cases)."""

from __future__ import annotations

import logging
import time

from nosgrid.coordinator.gateway.records import Recorder
from nosgrid.coordinator.gateway.settings import GatewaySettings
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.coordinator.services import inference_audits

log = logging.getLogger(__name__)


class AuditsMixin:
    coord: Coordinator
    settings: GatewaySettings
    recorder: Recorder
    _last_audit_tick: float = 0.0

    def audit_tick(self, *, force: bool = False) -> inference_audits.Decision:
        """Decide, settle holds, prune (see the module docstring); errors are logged and
        retried at the next tick."""
        if not self.recorder.enabled:
            return inference_audits.Decision()
        mono = time.monotonic()
        if not force and mono - self._last_audit_tick < self.settings.audit_every_s:
            return inference_audits.Decision()
        self._last_audit_tick = mono
        params, now = self.settings.audit, int(self.coord.now())
        decision = inference_audits.Decision()
        try:
            with self.coord.store.uow() as uow:
                decision = inference_audits.decide(uow, now, params)
                uow.commit()
            if self.settings.audit_hold:
                with self.coord.store.uow() as uow:
                    inference_audits.settle_holds(uow, now, fee_bps=self.settings.fee_bps,
                                                  params=params)
                    uow.commit()
            with self.coord.store.uow() as uow:
                gone = self.recorder.prune(uow, now - params.retention_s)
                uow.commit()
            self.recorder.forget(gone)
        except Exception:
            log.exception("inference audit tick failed; will retry")
        return decision


__all__ = ["AuditsMixin"]
