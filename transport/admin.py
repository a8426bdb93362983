from django.contrib import admin

from .models import RejectedMessage


@admin.register(RejectedMessage)
class RejectedMessageAdmin(admin.ModelAdmin):
    list_display = ["received_at", "device", "transport", "error", "detail"]
    list_filter = ["error", "transport"]
    search_fields = ["device__id", "message_id", "detail"]
    readonly_fields = [f.name for f in RejectedMessage._meta.fields]

    def has_add_permission(self, request):
        return False
