"""The run command's stand-in for Celery beat finds its tasks in a web process that never imported them."""

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, django
django.setup()
from detections import eager_beat
from lpr_server.celery import app
print(json.dumps({name: task.name for name, task in eager_beat.scheduled_tasks(app).items()}))
"""


def test_every_scheduled_task_is_found_in_a_fresh_process(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "lpr_server.settings", "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
           "REDIS_URL": ""}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    expected = {name: entry["task"] for name, entry in settings.CELERY_BEAT_SCHEDULE.items()}
    assert expected and json.loads(out.stdout.strip().splitlines()[-1]) == expected
