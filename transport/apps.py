from django.apps import AppConfig


class TransportConfig(AppConfig):
    name = "transport"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import announce, batching, live, metrics

        announce.consumers.append(live.on_stored)  # committed detections/health/answers → dashboards
        from detections import alert_intake

        announce.consumers.append(alert_intake.on_stored)  # committed detections → watchlist matching, in batches
        announce.consumers.append(metrics.on_stored)  # latencies for /metrics
        metrics.track_depth("realtime_batcher", batching.backlog)
        metrics.track_depth("alert_intake", alert_intake.batcher.depth)
        _register_device_channels(live)


def _register_device_channels(live) -> None:
    """How devices/ reaches cameras and dashboards without importing a transport (devices/channels.py)."""
    from devices import channels

    def mqtt_push(device_id: str, kind: str, body: dict) -> bool:
        from .mqtt import downlink  # paho only loads when something is pushed over MQTT

        if kind == "command":
            return downlink.publish_command(device_id, body["command"])
        return downlink.publish_config(device_id, body)

    channels.register("live", live.push_to_device, ("command", "config", "protocol"))
    channels.register("mqtt", mqtt_push, ("command", "config"))
    channels.register_hook("device_status", live.device_status)
    channels.register_hook("protocol_switch", live.protocol_switch)
    channels.register_hook("command", live.command)
    channels.register_hook("alert", lambda device_id, **fields: live.alert(device_id, "", **fields))
    channels.register_hook("revoked", live.revoke)
