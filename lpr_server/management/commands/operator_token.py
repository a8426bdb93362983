from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from lpr_server import tokens


class Command(BaseCommand):
    help = "Issue an operator API token (`Authorization: Token <key>`) for a user; the key is printed once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="what will use it, e.g. the script's name")

    def handle(self, *args, username, name, **opts):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        _, key = tokens.issue(user, name)
        self.stdout.write(key)
