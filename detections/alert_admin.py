"""Admin for watchlists (with CSV import and export), alerts, webhooks, deliveries and rollups."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone

from . import notify, watchlists
from .alert_models import Alert, Delivery, Rollup, Watchlist, WatchlistEntry, Webhook


class EntryForm(forms.ModelForm):
    class Meta:
        model = WatchlistEntry
        fields = "__all__"

    def clean(self):
        data = super().clean()
        entry = WatchlistEntry(**{k: v for k, v in data.items() if k in {f.name for f in WatchlistEntry._meta.fields}})
        try:
            watchlists.check_entry(entry)
        except watchlists.InvalidEntry as exc:
            raise ValidationError({exc.field if exc.field in data else None: exc.detail}) from None
        data["value"] = entry.value
        return data


class ImportForm(forms.Form):
    file = forms.FileField(help_text=f"CSV with a header naming: {', '.join(watchlists.CSV_FIELDS)} (value required).")
    replace = forms.BooleanField(required=False, help_text="Delete the list's entries first.")


@admin.register(Watchlist)
class WatchlistAdmin(admin.ModelAdmin):
    list_display = ["name", "active", "updated_at"]
    actions = ["export_csv"]

    def get_urls(self):
        view = self.admin_site.admin_view(self.import_view)
        own = [path("<int:pk>/import/", view, name="detections_watchlist_import")]
        return own + super().get_urls()

    def import_view(self, request, pk: int):
        watchlist = self.get_object(request, pk)
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            text = form.cleaned_data["file"].read().decode("utf-8-sig", errors="replace")
            report = watchlists.import_csv(watchlist, text, replace=form.cleaned_data["replace"])
            messages.info(request, f"{report.created} entries imported, {len(report.errors)} rows refused.")
            for line, why in report.errors[:50]:
                messages.warning(request, f"line {line}: {why}")
            return redirect("admin:detections_watchlist_change", pk)
        return render(request, "admin/detections/watchlist_import.html",
                      {**self.admin_site.each_context(request), "form": form, "watchlist": watchlist})  # fmt: skip

    @admin.action(description="Export the selected list to CSV (one list)")
    def export_csv(self, request, queryset):
        watchlist = queryset.first()
        response = StreamingHttpResponse(watchlists.export_csv(watchlist), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="watchlist-{watchlist.id}.csv"'
        return response


@admin.register(WatchlistEntry)
class WatchlistEntryAdmin(admin.ModelAdmin):
    form = EntryForm
    list_display = ["value", "kind", "match", "watchlist", "device", "site", "priority", "active_from", "active_until"]
    list_filter = ["watchlist", "match", "kind"]
    search_fields = ["value", "note"]
    raw_id_fields = ["device"]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["plate", "watchlist", "device", "priority", "raised_at", "acknowledged_at", "acknowledged_by"]
    list_filter = ["watchlist", "priority"]
    search_fields = ["plate", "matched"]
    raw_id_fields = ["entry", "passage", "detection", "device"]
    actions = ["acknowledge"]

    @admin.action(description="Acknowledge the selected alerts")
    def acknowledge(self, request, queryset):
        n = queryset.filter(acknowledged_at=None).update(acknowledged_at=timezone.now(), acknowledged_by=request.user)
        messages.info(request, f"{n} alerts acknowledged.")


class WebhookForm(forms.ModelForm):
    class Meta:
        model = Webhook
        fields = "__all__"

    def clean_url(self):
        try:
            return notify.check_webhook_url(self.cleaned_data["url"])
        except notify.InvalidWebhookURL as exc:
            raise ValidationError(str(exc)) from None


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    form = WebhookForm
    list_display = ["name", "url", "active", "failed_deliveries", "disabled_at", "disabled_reason"]
    list_filter = ["active"]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["alert", "channel", "target", "state", "attempts", "created_at", "delivered_at", "last_error"]
    list_filter = ["channel", "state"]
    raw_id_fields = ["alert", "webhook"]


@admin.register(Rollup)
class RollupAdmin(admin.ModelAdmin):
    list_display = ["period", "start", "device_id", "protocol", "detections", "unique_plates", "accepted", "rejected",
                    "latency_p50_ms", "latency_p95_ms"]  # fmt: skip
    list_filter = ["period", "protocol"]
