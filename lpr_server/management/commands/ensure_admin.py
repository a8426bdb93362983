import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Make sure an administrator login exists and print it (password from ADMIN_PASSWORD or var/admin-password)."

    def handle(self, *args, **opts):
        username = os.environ.get("ADMIN_USER", "admin")
        password_file = settings.VAR_DIR / "admin-password"
        password = os.environ.get("ADMIN_PASSWORD") or (password_file.read_text().strip() if password_file.exists() else "")
        if not password:
            password = secrets.token_urlsafe(12)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            User.objects.create_superuser(username, "", password)
        elif not user.check_password(password):
            self.stdout.write(f"Admin login: user {username!r} already exists with a password of its own.")
            return
        self.stdout.write(f"Admin login: user {username!r}, password {password!r} (http://127.0.0.1:8000/admin/)")
