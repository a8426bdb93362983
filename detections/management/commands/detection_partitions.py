from django.core.management.base import BaseCommand, CommandError

from detections import partitions, retention
from django.conf import settings


class Command(BaseCommand):
    help = (
        "List the detection table's time partitions (PostgreSQL), create the days ahead, and with --drop-expired "
        "drop those past RETENTION_DETECTIONS_DAYS. Celery beat runs the same hourly (create) and daily (drop)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--ahead", type=int, default=partitions.AHEAD_DAYS, help="days ahead to create (default %(default)s)")
        parser.add_argument("--drop-expired", action="store_true", help="drop partitions older than the retention age")

    def handle(self, *args, ahead, drop_expired, **options):
        if not partitions.supported():
            raise CommandError("Partitions need PostgreSQL; this database is not (detections are one table).")
        if not partitions.is_partitioned():
            raise CommandError("detections_detection is not partitioned yet: run `manage.py migrate` first.")
        partitions.ensure(ahead=ahead, say=self.stdout.write)
        if drop_expired:
            at = retention.cutoff(settings.RETENTION_DETECTIONS_DAYS)
            if at is None:
                self.stdout.write("RETENTION_DETECTIONS_DAYS is 0: nothing expires")
            else:
                partitions.drop_before(at, say=self.stdout.write)
        for p in partitions.partitions():
            span = "DEFAULT (outside every range)" if p.upper is None else f"{p.lower or 'MINVALUE'} .. {p.upper}"
            self.stdout.write(f"{p.name:<40} {span}")
