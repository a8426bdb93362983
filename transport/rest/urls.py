from django.urls import path

from . import compat, schema, views
from .schema import documented

urlpatterns = [
    path("ingest/", documented(views.ingest, schema.Ingest), name="ingest"),
    path("ingest/batch/", documented(views.ingest_batch, schema.IngestBatch), name="ingest-batch"),
    path("images/", documented(views.upload_image, schema.Images), name="images"),
    path("device/config/", documented(views.device_config, schema.DeviceConfig), name="device-config"),
    path("device/commands/", documented(views.device_commands, schema.DeviceCommands), name="device-commands"),
    path("device/commands/<str:command_id>/ack/", documented(views.ack_command, schema.AckCommand),
         name="device-command-ack"),
    path("device/protocol/", documented(views.device_protocol, schema.DeviceProtocol), name="device-protocol"),
    path("device/token/", documented(views.device_token, schema.DeviceToken), name="device-token"),
    path("compat/openalpr/", documented(compat.openalpr_webhook, schema.OpenALPR), name="compat-openalpr"),
    path("compat/platerecognizer/", documented(compat.platerecognizer_webhook, schema.PlateRecognizer),
         name="compat-platerecognizer"),
    path("compat/hikvision/", documented(compat.hikvision_webhook, schema.Hikvision), name="compat-hikvision"),
]
