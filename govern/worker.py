"""The scheduled jobs `govern worker` runs on every pass, each failing alone.

1. `rotation`: due rotations, resumed and retried runs, revocations after the overlap, reminders
   (govern.rotation.runner.RotationService.tick);
2. `queued_calls`: proxy calls held during a maintenance window, delivered in order, and calls that
   keep failing moved to the dead-letter queue (govern.broker.proxy.queue.deliver_queued);
3. `signing_keys`: retiring token-signing keys whose tokens have all expired leave the JWKS
   (services.signing_key_hook, govern.rotation.wiring);
4. `alerts`: the alert conditions of deploy/prometheus/alerts.yml, posted to the webhook for users
   without Prometheus, once when a condition starts and once when it clears, expiries within
   GOVERN_EXPIRY_ALERT_DAYS included (govern.ops.alerts, docs/expiry.md);
5. `revocations`: queued upstream token revocations (RFC 7009), one attempt per due item, backing off between
   passes, alerted when the last attempt fails (govern.broker.upstream.revocation_queue, docs/offboarding.md);
6. `decision_checkpoint`: a signed checkpoint of the decision chain's head when records were written since
   the newest one, so a deleted tail shows in `govern log verify` (govern.broker.decision_log).
A job that raises (an outage, a bug) is logged with its name and reported as one failed item; the other
jobs still run, and the next pass tries it again (seed practice: each item fails alone, is logged, and
is counted).
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

from govern.rotation.support import Outcome, describe_error
from govern.broker.proxy import queue
from govern.broker.upstream import build_revocation_queue, build_revocation_worker
from govern.domain.revocations import PENDING
from govern.secrets.service import secret_service
from govern.ops.alerts import check_alerts

log = logging.getLogger("govern.worker")


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[dt.datetime], list[Outcome]]


def _queued_calls(services: Any, now: dt.datetime) -> list[Outcome]:
    if services.proxy is None:
        return []
    return [Outcome(f"queued call {item.id}", "delivered" if item.ok else "failed", None, item.detail)
            for item in queue.deliver_queued(services.proxy.queued, now)]


def _signing_keys(services: Any, now: dt.datetime) -> list[Outcome]:
    hook = services.signing_key_hook
    if hook is not None:
        hook.retire_expired()
    return []


def _alerts(services: Any, now: dt.datetime) -> list[Outcome]:
    report = check_alerts(services, now)
    return ([Outcome(f"alert {key}", "sent", None, "") for key in report["sent"]]
            + [Outcome(f"alert {key}", "resolved", None, "") for key in report["resolved"]]
            + [Outcome(f"alert {key}", "failed", None, "the webhook could not be reached") for key in report["failed"]])


def _revocations(services: Any, now: dt.datetime) -> list[Outcome]:
    if not build_revocation_queue(services).counts()[PENDING]:
        return []  # nothing queued: no broker or secret store is needed
    secrets = secret_service(services)
    worker = build_revocation_worker(services, delete_secret=lambda ref: secrets.delete(ref, actor="worker"))
    return [Outcome(f"revocation {w.item.id} ({w.item.describe()})", w.status, None, w.detail) for w in worker.run(now)]


def _decision_checkpoint(services: Any, now: dt.datetime) -> list[Outcome]:
    log_ = services.decision_log
    if log_ is None or not hasattr(log_, "checkpoint"):
        return []
    cp = log_.checkpoint(only_if_moved=True)
    return [] if cp is None else [Outcome(f"decision log checkpoint {cp['id']}", "signed", None,
                                          f"record {cp['head_id']} under key {cp['key_id']}")]


def jobs(services: Any, rotation: Any) -> list[Job]:
    """`rotation` is a RotationService (it keeps its worker id and rotator cache across passes)."""
    return [Job("rotation", lambda now: rotation.tick()),
            Job("queued_calls", lambda now: _queued_calls(services, now)),
            Job("signing_keys", lambda now: _signing_keys(services, now)),
            Job("alerts", lambda now: _alerts(services, now)),
            Job("revocations", lambda now: _revocations(services, now)),
            Job("decision_checkpoint", lambda now: _decision_checkpoint(services, now))]


def run_pass(services: Any, job_list: list[Job]) -> list[Outcome]:
    return [o for _, outcomes in run_pass_by_job(services, job_list) for o in outcomes]


def run_pass_by_job(services: Any, job_list: list[Job]) -> list[tuple[str, list[Outcome]]]:
    """One pass: each job's outcomes, in job order; a job that raises is one failed outcome of its own."""
    out: list[tuple[str, list[Outcome]]] = []
    for job in job_list:
        try:
            out.append((job.name, list(job.run(services.clock.now()))))
        except Exception as exc:  # noqa: BLE001 - one job's failure must not stop the others
            error = describe_error(exc)
            log.error("worker job failed", extra={"job": job.name, "exc_type": type(exc).__name__, "error_text": error})
            out.append((job.name, [Outcome(f"job {job.name}", "failed", None, error)]))
    return out


def describe_pass(number: int, by_job: list[tuple[str, list[Outcome]]], seconds: float) -> str:
    """One line saying what a pass did, e.g. `pass 3: rotation 1 rotated; queued_calls nothing; ... (0.21 s)`."""
    parts = []
    for name, outcomes in by_job:
        counts: dict[str, int] = {}
        for outcome in outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        parts.append(f"{name} " + (", ".join(f"{n} {status}" for status, n in counts.items()) or "nothing"))
    failed = sum(1 for _, outcomes in by_job for o in outcomes if o.failed)
    return f"pass {number}: " + "; ".join(parts) + f"; {failed} failed ({seconds:.2f} s)"
