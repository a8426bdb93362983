"""Alert fan-out: which deliveries an alert gets, and sending each one (dashboard, webhook, e-mail).

`plan` runs in the transaction that raised the alerts: it writes one Delivery
row per alert and target (the delivery log) and queues, on commit, one
Celery task per channel (detections/alert_tasks.py), each with its own
retries. The `send_*` functions do one attempt and say how it went; the
tasks decide about retrying.

Webhooks receive `{"type": "alert", "alert": {...}}` as JSON, signed with
HMAC-SHA256 of the exact body under the webhook's secret:
    X-LPR-Signature: sha256=<hex>
A delivery is retried with exponential backoff; once one has used all its
attempts the webhook's `failed_deliveries` grows, a success resets it, and
at ALERT_WEBHOOK_DISABLE_AFTER the webhook is disabled and the
administrators are told (mail_admins, and the admin list shows it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import mail_admins, send_mail
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from .alert_models import Alert, Delivery, Webhook

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-LPR-Signature"
EAGER_DELIVERY_THREADS = 4


class InvalidWebhookURL(ValueError):
    pass


def check_webhook_url(url: str) -> str:
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidWebhookURL("A webhook URL must be http:// or https:// with a host.")
    return url


def alert_payload(alert: Alert) -> dict:
    return {
        "id": alert.id, "watchlist": alert.watchlist.name, "watchlist_id": alert.watchlist_id,
        "entry_id": alert.entry_id, "passage_id": alert.passage_id, "detection_id": alert.detection_id,
        "device_id": alert.device_id, "plate": alert.plate, "matched": alert.matched, "priority": alert.priority,
        "note": alert.note, "captured_at": alert.captured_at.isoformat(), "raised_at": alert.raised_at.isoformat(),
    }  # fmt: skip


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- planning ----------------------------------------------------------------------------------------


def plan(alerts: list[Alert]) -> list[Delivery]:
    """Delivery rows for new alerts, and their tasks queued on commit. Call inside the alerts' transaction."""
    if not alerts:
        return []
    hooks = list(Webhook.objects.filter(active=True).prefetch_related("watchlists"))
    rows = []
    for alert in alerts:
        rows.append(Delivery(alert=alert, channel="dashboard"))
        for hook in hooks:
            scoped = {w.id for w in hook.watchlists.all()}
            if not scoped or alert.watchlist_id in scoped:
                rows.append(Delivery(alert=alert, channel="webhook", webhook=hook, target=str(hook.id)))
        if alert.watchlist.email_addresses:
            rows.append(Delivery(alert=alert, channel="email", target=",".join(alert.watchlist.email_addresses)))
    deliveries = Delivery.objects.bulk_create(rows)
    transaction.on_commit(lambda: _queue(deliveries))
    return deliveries


def _queue(deliveries: list[Delivery]) -> None:
    from . import alert_tasks

    dashboard = [d.id for d in deliveries if d.channel == "dashboard"]
    if dashboard:
        _send(alert_tasks.notify_dashboard, dashboard)
    for d in deliveries:
        if d.channel == "webhook":
            _send(alert_tasks.deliver_webhook, d.id)
        elif d.channel == "email":
            _send(alert_tasks.deliver_email, d.id)


_eager_queue: queue.SimpleQueue | None = None
_eager_lock = threading.Lock()


def _send(task, arg) -> None:
    """Queue the task; in eager mode (no broker) run it on a daemon pool thread, so a hanging receiver holds
    up neither alert matching nor the other deliveries, nor the server's shutdown."""
    global _eager_queue
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        task.delay(arg)
        return
    with _eager_lock:
        if _eager_queue is None:
            _eager_queue = queue.SimpleQueue()
            for n in range(EAGER_DELIVERY_THREADS):
                threading.Thread(target=_eager_worker, args=(_eager_queue,), name=f"lpr-alert-delivery-{n}",
                                 daemon=True).start()  # fmt: skip
    _eager_queue.put((task, arg))


def _eager_worker(jobs: queue.SimpleQueue) -> None:
    while True:
        _run_eagerly(*jobs.get())


def _run_eagerly(task, arg) -> None:
    try:
        task.delay(arg)
    finally:
        connection.close()


# --- sending -----------------------------------------------------------------------------------------


def send_dashboard(delivery_ids: list[int]) -> int:
    """Publish the alerts to every live dashboard (transport.live owns the group and event shape)."""
    from transport import live  # the one module that knows the dashboards' channel-layer group

    deliveries = list(Delivery.objects.filter(id__in=delivery_ids, state="pending").select_related("alert__watchlist"))
    for d in deliveries:
        fields = alert_payload(d.alert)
        device_id, plate = fields.pop("device_id"), fields.pop("plate")
        live.alert(device_id, plate, **fields)
    now = timezone.now()
    Delivery.objects.filter(id__in=[d.id for d in deliveries]).update(state="delivered", delivered_at=now,
                                                                       attempts=F("attempts") + 1)  # fmt: skip
    return len(deliveries)


def send_webhook(delivery: Delivery) -> None:
    """One POST; raises requests.RequestException (or HTTPError for a non-2xx answer) when it failed."""
    hook = delivery.webhook
    body = json.dumps({"type": "alert", "alert": alert_payload(delivery.alert)}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(hook.secret, body),
               "X-LPR-Delivery": str(delivery.id), "User-Agent": "lpr-server-alerts"}  # fmt: skip
    timeout = settings.ALERT_WEBHOOK_TIMEOUT_S
    response = requests.post(hook.url, data=body, headers=headers, timeout=(timeout, timeout), allow_redirects=False)
    if not 200 <= response.status_code < 300:
        raise requests.HTTPError(f"HTTP {response.status_code}", response=response)


def send_email(delivery: Delivery) -> None:
    a = delivery.alert
    subject = f"[LPR alert] {a.plate} on {a.watchlist.name} at {a.device_id}"
    body = "\n".join(f"{k}: {v}" for k, v in alert_payload(a).items())
    send_mail(subject, body, None, delivery.target.split(","), fail_silently=False)


def backoff_s(attempt: int) -> float:
    """Seconds before retry number `attempt` (1, 2, ...): base × 2^(attempt-1), capped."""
    return min(settings.ALERT_WEBHOOK_BACKOFF_MAX_S, settings.ALERT_WEBHOOK_BACKOFF_S * 2 ** (attempt - 1))


def delivered(delivery_id: int) -> None:
    d = Delivery.objects.filter(id=delivery_id)
    d.update(state="delivered", delivered_at=timezone.now(), attempts=F("attempts") + 1, last_error="")
    Webhook.objects.filter(deliveries__id=delivery_id).update(failed_deliveries=0)


def attempt_failed(delivery_id: int, error: str, final: bool) -> None:
    """Log the failed attempt; on the last one count it against the webhook, which may then be disabled."""
    Delivery.objects.filter(id=delivery_id).update(attempts=F("attempts") + 1, last_error=error[:2000],
                                                   state="failed" if final else "pending")  # fmt: skip
    if not final:
        return
    hook_ids = Delivery.objects.filter(id=delivery_id).exclude(webhook=None).values("webhook_id")
    Webhook.objects.filter(id__in=hook_ids).update(failed_deliveries=F("failed_deliveries") + 1)
    limit = settings.ALERT_WEBHOOK_DISABLE_AFTER
    to_disable = Webhook.objects.filter(Q(id__in=hook_ids), active=True, failed_deliveries__gte=limit)
    for hook in to_disable:
        _disable(hook, f"{hook.failed_deliveries} deliveries in a row failed; the last: {error[:500]}")


def _disable(hook: Webhook, reason: str) -> None:
    if not Webhook.objects.filter(id=hook.id, active=True).update(active=False, disabled_at=timezone.now(),
                                                                 disabled_reason=reason):  # fmt: skip
        return  # another worker got there first and told the administrators
    log.warning("webhook %s (%s) disabled: %s", hook.id, hook.url, reason)
    body = f"The webhook {hook.name} ({hook.url}) was disabled.\n\n{reason}\nRe-enable it once the receiver works again."
    mail_admins(f"LPR webhook disabled: {hook.name}", body, fail_silently=True)
