"""The attestor's secret keys: one ``solana-keygen`` file per epoch, beside the database.

The public chain of keys lives in the database (``attestor_epochs``, see
:mod:`nosgrid.core.attestor`); the secret of each epoch lives in
``DATA_DIR/attestor/epoch-N.json`` (mode 0600), never in the database. With no directory
(tests, ``sqlite://``) the keys are kept in memory.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from solders.keypair import Keypair

from nosgrid.core.attestor import AttestorEpoch, genesis, rotate
from nosgrid.core.errors import InvalidInput
from nosgrid.core.events import AttestorRotated
from nosgrid.core.identity import keypair_from_json
from nosgrid.store.db import UnitOfWork
from nosgrid.store.receipts import AttestorRepo


class AttestorKeys:
    """The key of each epoch; :meth:`current` creates epoch 0 on first use."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._memory: dict[int, Keypair] = {}
        #: keys read from their files (a key file never changes once written)
        self._loaded: dict[int, Keypair] = {}

    def _path(self, epoch: int) -> Path | None:
        return None if self.directory is None else self.directory / f"epoch-{epoch}.json"

    def key(self, epoch: int, *, create: bool = False) -> Keypair:
        """The secret key of ``epoch`` (made if ``create`` and missing, exclusively, so two
        processes agree on one key)."""
        if epoch in self._loaded:
            return self._loaded[epoch]
        path = self._path(epoch)
        if path is None:
            if epoch not in self._memory:
                if not create:
                    raise InvalidInput(f"no attestor key for epoch {epoch} in memory")
                self._memory[epoch] = Keypair()
            return self._memory[epoch]
        if create and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            kp = Keypair()
            with contextlib.suppress(FileExistsError):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(json.dumps(list(bytes(kp))))
        if not path.exists():
            raise InvalidInput(f"the attestor key of epoch {epoch} is missing ({path}); "
                               "restore it from your backup")
        self._loaded[epoch] = keypair_from_json(path.read_text(), str(path))
        return self._loaded[epoch]

    def current(self, uow: UnitOfWork, now: int) -> tuple[AttestorEpoch, Keypair]:
        """The epoch that signs now, and its key; the first call records epoch 0."""
        repo = AttestorRepo(uow.conn)
        record = repo.current()
        if record is None:
            kp = self.key(0, create=True)
            record = genesis(str(kp.pubkey()))
            if repo.add(record, now):
                uow.publish(AttestorRotated(at=now, epoch=0, key=record.key))
            else:  # another process recorded epoch 0 first
                record = repo.current() or record
        kp = self.key(record.epoch)
        if str(kp.pubkey()) != record.key:
            raise InvalidInput(f"the attestor key file of epoch {record.epoch} holds "
                               f"{kp.pubkey()}, but the chain names {record.key}")
        return record, kp

    def rotate(self, uow: UnitOfWork, now: int) -> AttestorEpoch:
        """Move to a new epoch: a new key, vouched for by the current one."""
        record, kp = self.current(uow, now)
        new_key = self.key(record.epoch + 1, create=True)
        nxt = rotate(record.epoch, kp, str(new_key.pubkey()))
        if not AttestorRepo(uow.conn).add(nxt, now):
            raise InvalidInput(f"attestor epoch {nxt.epoch} was recorded by another process; "
                               "try again")
        uow.publish(AttestorRotated(at=now, epoch=nxt.epoch, key=nxt.key,
                                    signature=nxt.signature))
        return nxt
