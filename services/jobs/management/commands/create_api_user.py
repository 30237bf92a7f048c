"""Create an API user (or add a token to an existing one) and print the new token once."""

import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from knox.models import AuthToken


class Command(BaseCommand):
    help = "Create a user if needed and print a new API token for it (shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--existing-ok",
            action="store_true",
            help="Add a token to the user if it exists instead of failing.",
        )
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="Also set the password the user signs in to the pages with, read "
            "from the first line of stdin (never from the command line, "
            "which other users of the host can see).",
        )

    def handle(self, username, email, existing_ok, password_stdin, **options):
        User = get_user_model()
        password = None
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                raise CommandError("--password-stdin: stdin gave no password.")
        user, created = User.objects.get_or_create(username=username, defaults={"email": email})
        if not created and not existing_ok:
            raise CommandError(f"User {username!r} exists; pass --existing-ok to add a token.")
        if password is not None:
            try:
                validate_password(password, user)
            except ValidationError as exc:
                if created:
                    user.delete()
                raise CommandError("Password refused: " + " ".join(exc.messages)) from None
            user.set_password(password)
            user.save(update_fields=["password"])
        elif created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        _, token = AuthToken.objects.create(user=user)
        # The token goes to stdout only: the database keeps its SHA-512 digest.
        self.stdout.write(token)
