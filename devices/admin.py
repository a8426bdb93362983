from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.template.response import TemplateResponse
from django.utils.html import format_html

from . import commands, configuration, credentials
from .models import Command, CommandTransition, Device, HealthLog, PresenceChange, ProtocolSwitch, ReportedConfig
from .storable import contains_nul


def _show_once(request, issued: credentials.IssuedCredentials, what: str) -> None:
    messages.warning(
        request,
        format_html(
            "{} for <b>{}</b>, shown only now. Key: <code>{}</code> Payload key: <code>{}</code>",
            what, issued.device_id, issued.key, issued.payload_key,
        ),
    )  # fmt: skip


class SendCommandForm(forms.Form):
    # Not "action": the admin's own action selector posts under that name.
    command = forms.CharField(label="Action", max_length=64, help_text="ping, capture, reboot, switch_protocol, set_config, or your own.")
    params = forms.JSONField(required=False, initial=dict, help_text='A JSON object, e.g. {"protocol": "mqtt"}.')
    ttl_s = forms.IntegerField(min_value=1, max_value=commands.MAX_TTL_S, initial=commands.DEFAULT_TTL_S)

    def clean(self):
        data = super().clean()
        if "command" in data and "ttl_s" in data:
            try:
                commands.check_request(data["command"], data.get("params") or {}, data["ttl_s"])
            except commands.CommandError as exc:
                raise forms.ValidationError(exc.detail)
        return data


class DeviceForm(forms.ModelForm):
    class Meta:
        model = Device
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "profile" in self.fields:
            self.fields["profile"].required = False  # empty keeps the default (urban)

    def clean_profile(self):
        return self.cleaned_data.get("profile") or Device._meta.get_field("profile").default

    def clean_desired_config(self):
        values = self.cleaned_data["desired_config"]
        if not isinstance(values, dict):
            raise forms.ValidationError("The configuration must be a JSON object of values.")
        if contains_nul(values):
            raise forms.ValidationError("The configuration may not contain the NUL character (\\u0000).")
        return values


class PresenceChangeInline(admin.TabularInline):
    model = PresenceChange
    extra = 0
    max_num = 0
    readonly_fields = ["online", "at", "transport", "reason"]
    ordering = ["-at"]


class ProtocolSwitchInline(admin.TabularInline):
    model = ProtocolSwitch
    extra = 0
    max_num = 0
    readonly_fields = ["at", "source", "from_transport", "to_transport", "reason", "score", "recommended"]


class CommandInline(admin.TabularInline):
    model = Command
    extra = 0
    max_num = 0
    show_change_link = True
    readonly_fields = ["action", "params", "state", "created_at", "expires_at", "attempts", "last_sent_at"]
    fields = readonly_fields


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    form = DeviceForm
    list_display = ["id", "name", "site", "active", "presence", "last_transport", "connectivity_score",
                    "recommended_protocol", "profile", "drift", "last_seen_at", "firmware"]  # fmt: skip
    list_filter = ["active", "online", "profile", "last_transport", "site"]
    search_fields = ["id", "name", "site", "location"]
    readonly_fields = ["last_seen_at", "last_transport", "firmware", "key_version", "created_at", "online",
                       "presence_changed_at", "mqtt_status", "measured_latency_ms", "connectivity_score",
                       "recommended_protocol", "drift_detail", "latest_health"]  # fmt: skip
    fieldsets = [
        (None, {"fields": ["id", "name", "site", "location", "active", "require_signature", "rate_limit_per_s",
                           "key_version", "created_at"]}),
        ("Configuration", {"fields": ["profile", "desired_config_version", "desired_config", "drift_detail"]}),
        ("Presence and link", {"fields": ["online", "presence_changed_at", "last_seen_at", "last_transport",
                                          "mqtt_status", "measured_latency_ms", "connectivity_score",
                                          "recommended_protocol", "firmware", "latest_health"]}),
    ]  # fmt: skip
    inlines = [CommandInline, PresenceChangeInline, ProtocolSwitchInline]
    actions = ["send_command", "rotate_keys", "deactivate"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (["id"] if obj else [])

    def get_inlines(self, request, obj):
        return self.inlines if obj else []

    @admin.display(boolean=True, ordering="online")
    def presence(self, obj):
        return obj.online

    @admin.display(description="config drift")
    def drift(self, obj):
        return "drift" if configuration.drift(obj).differs else "in sync"

    @admin.display(description="reported configuration")
    def drift_detail(self, obj):
        d = configuration.drift(obj)
        state = "drift" if d.differs else "in sync"
        return f"{state}: desired v{d.desired_version}, reported v{d.reported_version if d.reported_version is not None else '—'}"

    @admin.display(description="latest health")
    def latest_health(self, obj):
        h = obj.health_logs.first()
        if h is None:
            return "—"
        return (f"{h.reported_at:%Y-%m-%d %H:%M:%S} via {h.received_via}: cpu {h.cpu_percent}%, "
                f"temp {h.temperature_c} °C, latency {h.latency_ms} ms, loss {h.packet_loss}")  # fmt: skip

    def save_model(self, request, obj, form, change):
        if not change:
            _show_once(request, credentials.assign_credentials(obj), "Credentials")
        elif "active" in form.changed_data and not obj.active:
            credentials.revoked(obj.id, "forbidden")
        config_fields = {"desired_config", "desired_config_version", "profile"}
        if change and config_fields & set(form.changed_data):
            if "desired_config_version" not in form.changed_data:
                obj.desired_config_version = form.initial.get("desired_config_version", 0) + 1
            elif obj.desired_config_version <= form.initial.get("desired_config_version", 0):
                messages.error(request, "The configuration version must grow; it was not changed.")
                return
            super().save_model(request, obj, form, change)
            transaction.on_commit(lambda: configuration.push(obj))
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Send a command to selected devices", permissions=["send"])
    def send_command(self, request, queryset):
        form = SendCommandForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            data = form.cleaned_data
            for device in queryset:
                commands.send(device.id, data["command"], data.get("params") or {}, data["ttl_s"])
            self.message_user(request, f"{data['command']} queued for {queryset.count()} device(s).")
            return None
        context = {**self.admin_site.each_context(request), "form": form, "devices": queryset,
                   "opts": self.model._meta, "action_name": "send_command",
                   "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME}  # fmt: skip
        return TemplateResponse(request, "admin/devices/send_command.html", context)

    def has_send_permission(self, request):
        return request.user.is_staff and (request.user.is_superuser or request.user.has_perm("devices.add_command"))

    # Both change credentials or access: `change` permission, not just the `view` an operator may hold.
    @admin.action(description="Rotate the key of selected devices (old keys stop working at once)", permissions=["change"])
    def rotate_keys(self, request, queryset):
        for device in queryset:
            _show_once(request, credentials.rotate_key(device), "New key")

    @admin.action(description="Deactivate selected devices", permissions=["change"])
    def deactivate(self, request, queryset):
        count = credentials.deactivate(list(queryset.values_list("pk", flat=True)))
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
    max_num = 0
    readonly_fields = ["state", "at", "transport", "detail"]


@admin.register(Command)
class CommandAdmin(admin.ModelAdmin):
    list_display = ["id", "device", "action", "state", "attempts", "created_at", "expires_at"]
    list_filter = ["state", "action"]
    search_fields = ["device__id", "action"]
    readonly_fields = ["device", "action", "params", "state", "created_at", "expires_at", "attempts", "last_sent_at",
                       "result", "error"]  # fmt: skip
    inlines = [CommandTransitionInline]

    def has_add_permission(self, request):
        return False  # commands are sent from the device list (action) or the operator API, which deliver them


@admin.register(PresenceChange)
class PresenceChangeAdmin(admin.ModelAdmin):
    list_display = ["device", "online", "at", "transport", "reason"]
    list_filter = ["online", "transport"]
    search_fields = ["device__id"]


@admin.register(ProtocolSwitch)
class ProtocolSwitchAdmin(admin.ModelAdmin):
    list_display = ["device", "at", "source", "from_transport", "to_transport", "reason", "score", "recommended"]
    list_filter = ["source", "to_transport"]
    search_fields = ["device__id"]
