from cryptography.fernet import InvalidToken
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from detections.alert_models import Webhook
from devices.credentials import reseal
from devices.models import Device


class Command(BaseCommand):
    help = (
        "Seal every stored secret (device keys, payload keys, webhook secrets) again with SECRETS_KEY's first key. "
        "To rotate: put the new key first (SECRETS_KEY=new,old), restart, run this, then drop the old key."
    )

    def handle(self, *args, **opts):
        with transaction.atomic():  # all or nothing: a secret no key opens leaves every row as it was
            devices = self._reseal_devices()
            webhooks = self._reseal_webhooks()
        self.stdout.write(f"resealed {devices} device(s) and {webhooks} webhook secret(s) with SECRETS_KEY's first key.")

    def _reseal_devices(self) -> int:
        rows = list(Device.objects.select_for_update().values_list("pk", "key_encrypted", "payload_key_encrypted"))
        for n, (pk, key, payload_key) in enumerate(rows, 1):
            try:
                Device.objects.filter(pk=pk).update(key_encrypted=reseal(key), payload_key_encrypted=reseal(payload_key))
            except InvalidToken:
                raise CommandError(self._unopenable(f"device {pk!r}")) from None
            if n % 1000 == 0:
                self.stdout.write(f"  {n} of {len(rows)} devices…")
        return len(rows)

    def _reseal_webhooks(self) -> int:
        count = 0
        for webhook_id in Webhook.objects.values_list("pk", flat=True):
            try:
                webhook = Webhook.objects.select_for_update().get(pk=webhook_id)  # unsealed by any key of SECRETS_KEY
            except InvalidToken:
                raise CommandError(self._unopenable(f"webhook {webhook_id}")) from None
            webhook.save(update_fields=["secret"])  # sealed again with the first
            count += 1
        return count

    @staticmethod
    def _unopenable(what: str) -> str:
        return (f"The secrets of {what} were sealed with a key SECRETS_KEY no longer holds; nothing was changed. "
                "Add that key back (after the new one, comma-separated) and run this again.")
