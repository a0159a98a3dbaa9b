"""Queueing claimed drops: their files hashed and flushed to disk, then every job of the
batch created in one transaction of the store. Blocking IO."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from faxgate.domain.documents import DocumentRefused
from faxgate.durable import CHUNK
from faxgate.intake.folder.claim_plan import fax_request
from faxgate.intake.folder.claim_records import (
    DropClaim,
    NotTaken,
    Outcome,
    Queued,
    Spoiled,
)
from faxgate.intake.folder.drops import Refused
from faxgate.intake.folder.status import Places
from faxgate.intake.queue import FaxRequest, queue_faxes
from faxgate.store import Store
from faxgate.store.spool import FULL_ERRNOS, Spool, SpooledFile, passing_trouble

FLUSHERS: Final = 8  # threads hashing and flushing the files of a batch
# Hashing and flushing a claimed file: these mean the disk, not the file, is the trouble.
_FLUSH_TROUBLE: Final = FULL_ERRNOS | {errno.EIO}


def queue_claims(
    store: Store,
    spool: Spool,
    claims_dir: Path,
    places: Places,
    claims: Sequence[DropClaim],
    *,
    shared: bool = False,
) -> list[Outcome]:
    """Hash and flush the claimed files (in `claims_dir`), then create every job in one
    transaction; one outcome per claim. `shared`: `claims_dir` is a shared hot folder's
    own, named in each job's reference."""
    outcomes: list[Outcome] = []
    ready: list[tuple[DropClaim, FaxRequest]] = []
    # Flushing many files at once lets the file system commit them together.
    with ThreadPoolExecutor(FLUSHERS) as flushers:
        hashed = list(flushers.map(lambda claim: _spooled_all(claims_dir, claim), claims))
    for claim, spooled in zip(claims, hashed, strict=True):
        if isinstance(spooled, OSError) and spooled.errno in _FLUSH_TROUBLE:
            detail = f"cannot flush {claim.documents[0].source} to disk: {spooled.strerror}"
            outcomes.append(NotTaken(places, claim, "stuck", detail))
            continue
        if isinstance(spooled, PermissionError):
            reason = "the file cannot be read: faxgate has no permission to read it"
            outcomes.append(spoiled(claims_dir, places, claim, Refused.UNREADABLE, reason))
            continue
        if isinstance(spooled, OSError):  # a symlink swapped in before the rename, say
            reason = f"the file changed: {spooled.strerror}"  # no path: it is ours
            outcomes.append(spoiled(claims_dir, places, claim, Refused.NOT_A_FILE, reason))
            continue
        ref = claim.ref(places, claims_dir if shared else None)
        ready.append((claim, fax_request(claim, ref, spooled)))
    if not ready:
        return outcomes
    try:
        batches = queue_faxes(store, spool, [request for _, request in ready])
    except DocumentRefused:
        # Checked before the claim, so rare (the content changed): one by one.
        for claim, request in ready:
            try:
                (jobs,) = queue_faxes(store, spool, [request])
            except DocumentRefused as refused:
                outcomes.append(spoiled(claims_dir, places, claim, Refused.CONTENT, str(refused)))
                continue
            except Exception as exc:
                outcomes.append(_not_queued(places, claim, exc))
                continue
            outcomes.append(Queued(places, claim, jobs))
        return outcomes
    except Exception as exc:
        outcomes.extend(_not_queued(places, claim, exc) for claim, _ in ready)
        return outcomes
    outcomes.extend(
        Queued(places, claim, jobs) for (claim, _), jobs in zip(ready, batches, strict=True)
    )
    return outcomes


def spoiled(claims_dir: Path, places: Places, claim: DropClaim, code: str, reason: str) -> Spoiled:
    """Claimed but not to be sent, with the claim's files still in the spool."""
    files = [
        (claims_dir / f.target, name) for f, name in zip(claim.documents, claim.names, strict=True)
    ]
    if claim.sidecar is not None:
        files.append((claims_dir / claim.sidecar.target, Path(claim.sidecar.source).name))
    present = [(path, name) for path, name in files if path.exists() or path.is_symlink()]
    return Spoiled(places, claim, code, reason, present)


def _not_queued(places: Places, claim: DropClaim, exc: Exception) -> NotTaken:
    """A store that cannot take the jobs now (full, read-only): stuck; anything else is
    raised."""
    trouble = passing_trouble(exc)
    return NotTaken(places, claim, "stuck", f"cannot record the fax in the store: {trouble}")


def _spooled_all(claims_dir: Path, claim: DropClaim) -> list[SpooledFile] | OSError:
    try:
        return [_spooled(claims_dir / f.target) for f in claim.documents]
    except OSError as exc:
        return exc


def _spooled(path: Path) -> SpooledFile:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        digest, size = hashlib.sha256(), 0
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
        os.fsync(handle.fileno())  # written by someone else: make sure it is on disk
    return SpooledFile(path, size, digest.hexdigest())
