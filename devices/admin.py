from django.contrib import admin, messages
from django.utils.html import format_html

from . import credentials
from .models import Command, CommandTransition, Device, HealthLog, ReportedConfig


def _show_once(request, issued: credentials.IssuedCredentials, what: str) -> None:
    messages.warning(
        request,
        format_html(
            "{} for <b>{}</b>, shown only now. Key: <code>{}</code> Payload key: <code>{}</code>",
            what, issued.device_id, issued.key, issued.payload_key,
        ),
    )  # fmt: skip


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "site", "active", "last_seen_at", "last_transport", "firmware"]
    list_filter = ["active", "last_transport", "site"]
    search_fields = ["id", "name", "site", "location"]
    readonly_fields = ["last_seen_at", "last_transport", "firmware", "key_version", "created_at"]
    fields = [
        "id", "name", "site", "location", "active", "require_signature", "rate_limit_per_s",
        "desired_config_version", "desired_config", "key_version", "last_seen_at", "last_transport", "firmware",
        "created_at",
    ]  # fmt: skip
    actions = ["rotate_keys", "deactivate"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (["id"] if obj else [])

    def save_model(self, request, obj, form, change):
        if not change:
            _show_once(request, credentials.assign_credentials(obj), "Credentials")
        super().save_model(request, obj, form, change)

    @admin.action(description="Rotate the key of selected devices (old keys stop working at once)")
    def rotate_keys(self, request, queryset):
        for device in queryset:
            _show_once(request, credentials.rotate_key(device), "New key")

    @admin.action(description="Deactivate selected devices")
    def deactivate(self, request, queryset):
        count = queryset.update(active=False)
        self.message_user(request, f"{count} device(s) deactivated.")


@admin.register(HealthLog)
class HealthLogAdmin(admin.ModelAdmin):
    list_display = ["device", "reported_at", "received_via", "cpu_percent", "temperature_c", "latency_ms", "packet_loss"]
    list_filter = ["received_via"]
    search_fields = ["device__id"]
    date_hierarchy = "reported_at"


@admin.register(ReportedConfig)
class ReportedConfigAdmin(admin.ModelAdmin):
    list_display = ["device", "version", "reported_at"]
    search_fields = ["device__id"]


class CommandTransitionInline(admin.TabularInline):
    model = CommandTransition
    extra = 0
    readonly_fields = ["state", "at", "transport", "detail"]


@admin.register(Command)
class CommandAdmin(admin.ModelAdmin):
    list_display = ["id", "device", "action", "state", "created_at", "expires_at"]
    list_filter = ["state", "action"]
    search_fields = ["device__id", "action"]
    inlines = [CommandTransitionInline]
