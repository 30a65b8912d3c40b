"""The transaction pipeline: the imperative shell around the pure policy core.

::

    send(token, request)
      stage 1  one BEGIN IMMEDIATE unit of work:
               kill switch -> session verify -> agent ACTIVE -> session constraints
               -> policy evaluate (usage from the DB) -> insert the row (PENDING) + TX_REQUESTED
               -> denied: FAILED + POLICY_VIOLATION | DELAY / APPROVAL: QUEUED + TX_QUEUED
      stage 2  (INSTANT / NOTIFY at once; DELAY after the cooldown; APPROVAL once signed)
               no lock: build a deferred plan, read the node's pending nonce, warm caches
               claim, one short unit of work: re-check (kill switch, agent; queued / resumed
               ones: session and the whole decision again, a stricter tier moves them to
               its path) -> reserve the nonce -> EXECUTING with a claim token (TX_EXECUTING)
               no lock: build -> plan check -> simulate -> sign (the claim is held)
               record, one short unit of work: the claim is still ours (CAS) -> signed
               bytes + hash stored (TX_SIGNED)
      stage 3  one unit of work: kill switch + agent status -> SUBMITTED (the last check)
               -> submit (transient: retry with backoff; stale: rebuild, up to 3 times;
               permanent: FAILED) -> wait for confirmation -> CONFIRMED / FAILED
    notifications go out after each commit and can never fail a transaction.

No chain call, key use or sleep happens while the write lock is held: each unit of work
reads and writes the database only. Bytes are sent only after they are recorded, so a claim
without recorded bytes proves nothing was sent: a claim whose process died is released
(back to PENDING / QUEUED) and the transaction is signed afresh.

Every status change is a compare-and-swap written with its audit row in the same database
transaction (:func:`waiaas.pipeline.states.transition`).
"""

from __future__ import annotations

from waiaas.pipeline.admission import AdmissionStage
from waiaas.pipeline.admission import _Early as _Early
from waiaas.pipeline.admission import _Presigned as _Presigned
from waiaas.pipeline.base import EventSink as EventSink
from waiaas.pipeline.base import KeySource as KeySource
from waiaas.pipeline.base import PipelineHooks
from waiaas.pipeline.claims import _LIVE_CLAIMS as _LIVE_CLAIMS
from waiaas.pipeline.claims import CLAIM_LEASE_SECONDS as CLAIM_LEASE_SECONDS
from waiaas.pipeline.due import DueStage
from waiaas.pipeline.execution import ExecutionStage
from waiaas.pipeline.owner import OwnerStage
from waiaas.pipeline.recovery import RecoveryStage

__all__ = ["Pipeline", "PipelineHooks"]


class Pipeline(AdmissionStage, ExecutionStage, OwnerStage, DueStage, RecoveryStage):
    """Runs requests through policy, tiers, approval, signing, submission and confirmation."""
