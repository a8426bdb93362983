"""The Celery app. With no REDIS_URL, settings make every task run eagerly in-process."""

import os

import msgspec
from celery import Celery
from celery.signals import worker_process_init, worker_ready
from kombu.serialization import register

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lpr_server.settings")

# JSON written and read by msgspec, for a task that carries many values: alert intake hands every stored read to
# `detections.match_reads`, and the standard library's encoder took 4 % of a web process in REST batch.
FAST_JSON = "lpr-json"
register(FAST_JSON, msgspec.json.encode, msgspec.json.decode, content_type="application/x-lpr-json",
         content_encoding="binary")  # fmt: skip

app = Celery("lpr_server")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect  # the solo and threads pools: this process runs the tasks
@worker_process_init.connect  # prefork: each child
def _leave_startup_objects_out_of_collections(**_) -> None:
    # Decoding a task of a thousand reads makes thousands of objects, enough to set off full collections that walked
    # every module, class and function of Django and Celery each time: most of the worker's CPU under load.
    from . import collector

    collector.prepare_server_process()
