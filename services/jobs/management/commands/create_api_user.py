"""Create an API user (or add a token to an existing one) and print the new token once."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from knox.models import AuthToken


class Command(BaseCommand):
    help = "Create a user if needed and print a new API token for it (shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--existing-ok", action="store_true",
                            help="Add a token to the user if it exists instead of failing.")

    def handle(self, username, email, existing_ok, **options):
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username, defaults={"email": email})
        if not created and not existing_ok:
            raise CommandError(f"User {username!r} exists; pass --existing-ok to add a token.")
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        _, token = AuthToken.objects.create(user=user)
        # The token goes to stdout only: the database keeps its SHA-512 digest.
        self.stdout.write(token)
