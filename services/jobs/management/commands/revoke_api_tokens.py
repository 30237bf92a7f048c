"""Revoke a user's API tokens (all, or one by its prefix): refused at once by every web process."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from knox.models import AuthToken
from knox.settings import CONSTANTS

from jobs import token_cache


class Command(BaseCommand):
    help = (
        "Delete a user's API tokens (every web process refuses them from the next request on, "
        "cached or not); --deactivate also deactivates the user."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--prefix",
            help=f"Only the token starting with these {CONSTANTS.TOKEN_KEY_LENGTH} "
            "characters (its token key, shown in the admin).",
        )
        parser.add_argument(
            "--deactivate", action="store_true", help="Also deactivate the user (no new token works either)."
        )

    def handle(self, username, prefix, deactivate, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        tokens = AuthToken.objects.filter(user=user)
        if prefix:
            if len(prefix) < CONSTANTS.TOKEN_KEY_LENGTH:
                raise CommandError(
                    f"--prefix needs the token's first {CONSTANTS.TOKEN_KEY_LENGTH} characters."
                )
            tokens = tokens.filter(token_key=prefix[: CONSTANTS.TOKEN_KEY_LENGTH])
            if not tokens.exists():
                raise CommandError(
                    f"User {username!r} has no token starting with {prefix[: CONSTANTS.TOKEN_KEY_LENGTH]!r}."
                )
        with transaction.atomic():
            # The tombstones are written first: if Redis refuses them, nothing is deleted.
            digests = list(tokens.values_list("digest", flat=True))
            token_cache.revoke_digests(digests)
            deleted, _ = tokens.delete()  # each deletion tombstones its key again (signal)
            if deactivate and user.is_active:
                user.is_active = False
                user.save(update_fields=["is_active"])
        self.stdout.write(
            f"Revoked {len(digests)} token(s) of {username}"
            + (", user deactivated" if deactivate else "")
            + "."
        )
