from django.contrib import admin

from .models import Detection, Image


@admin.register(Detection)
class DetectionAdmin(admin.ModelAdmin):
    list_display = ["plate", "device", "confidence", "captured_at", "received_via", "latency_ms"]
    list_filter = ["received_via", "protocol"]
    search_fields = ["plate_normalized", "device__id"]
    date_hierarchy = "captured_at"
    list_select_related = ["device"]
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is not worth it


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "device", "content_type", "size", "uploaded_at"]
