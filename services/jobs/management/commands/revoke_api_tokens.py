"""Revoke a user's API tokens (all, or one by its 8-character prefix): refused at once everywhere."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from knox.models import AuthToken

from jobs import token_cache


class Command(BaseCommand):
    help = ("Delete a user's API tokens (every web process refuses them from the next request on, "
            "cached or not); --deactivate also deactivates the user.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--prefix", help="Only the token starting with these 8 characters.")
        parser.add_argument("--deactivate", action="store_true",
                            help="Also deactivate the user (no new token works either).")

    def handle(self, username, prefix, deactivate, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        tokens = AuthToken.objects.filter(user=user)
        if prefix:
            tokens = tokens.filter(token_key=prefix[:8])
        with transaction.atomic():
            # The tombstones are written first: if Redis refuses them, nothing is deleted.
            digests = list(tokens.values_list("digest", flat=True))
            token_cache.revoke_digests(digests)
            deleted, _ = tokens.delete()  # each deletion tombstones its key again (signal)
            if deactivate and user.is_active:
                user.is_active = False
                user.save(update_fields=["is_active"])
        self.stdout.write(f"Revoked {len(digests)} token(s) of {username}"
                          + (", user deactivated" if deactivate else "") + ".")
