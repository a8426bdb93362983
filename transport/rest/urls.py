from django.urls import path

from . import compat, views

urlpatterns = [
    path("ingest/", views.ingest, name="ingest"),
    path("ingest/batch/", views.ingest_batch, name="ingest-batch"),
    path("images/", views.upload_image, name="images"),
    path("device/config/", views.device_config, name="device-config"),
    path("device/commands/", views.device_commands, name="device-commands"),
    path("device/commands/<str:command_id>/ack/", views.ack_command, name="device-command-ack"),
    path("device/protocol/", views.device_protocol, name="device-protocol"),
    path("device/token/", views.device_token, name="device-token"),
    path("compat/openalpr/", compat.openalpr_webhook, name="compat-openalpr"),
    path("compat/platerecognizer/", compat.platerecognizer_webhook, name="compat-platerecognizer"),
    path("compat/hikvision/", compat.hikvision_webhook, name="compat-hikvision"),
]
