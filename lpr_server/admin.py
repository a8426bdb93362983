from django.contrib import admin, messages
from django.utils.html import format_html
from rest_framework.authtoken.models import TokenProxy

from . import tokens
from .models import OperatorToken

admin.site.unregister(TokenProxy)  # DRF's clear-text tokens: replaced by OperatorToken


@admin.register(OperatorToken)
class OperatorTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at"]
    search_fields = ["user__username", "name", "prefix"]
    fields = ["user", "name"]
    autocomplete_fields = ["user"]

    def has_change_permission(self, request, obj=None):
        return False  # a token is issued or revoked (deleted), never edited

    def save_model(self, request, obj, form, change):
        token, key = tokens.issue(obj.user, obj.name)
        obj.pk = token.pk
        messages.warning(request, format_html("Token for <b>{}</b>, shown only now: <code>{}</code>", obj.user, key))
