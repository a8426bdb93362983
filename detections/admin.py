from django.contrib import admin
from django.core.handlers.asgi import ASGIRequest

from . import export
from .models import Detection, Image, Passage


@admin.action(description="Export selected detections to CSV")
def export_csv(modeladmin, request, queryset):
    return export.csv_response(queryset, asgi=isinstance(request, ASGIRequest))


@admin.register(Detection)
class DetectionAdmin(admin.ModelAdmin):
    list_display = ["plate", "device", "confidence", "captured_at", "received_via", "latency_ms", "passage"]
    list_filter = ["received_via", "protocol"]
    search_fields = ["plate_normalized", "device__id"]
    date_hierarchy = "captured_at"
    list_select_related = ["device"]
    raw_id_fields = ["image", "passage"]
    actions = [export_csv]
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is not worth it


@admin.register(Passage)
class PassageAdmin(admin.ModelAdmin):
    list_display = ["plate_normalized", "device", "read_count", "best_confidence", "first_at", "last_at"]
    search_fields = ["plate_normalized", "device__id"]
    date_hierarchy = "last_at"
    show_full_result_count = False


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "device", "kind", "content_type", "size", "uploaded_at"]


from . import alert_admin  # noqa: E402,F401  (watchlists, alerts, webhooks, rollups: issue 7)
