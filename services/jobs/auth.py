"""API token authentication: django-rest-knox (only a SHA-512 digest of each token is stored).

The job API also needs the raw token for one thing, deriving job ids, so request.auth
carries it in memory for the length of the request. It is never stored or logged.
"""

from dataclasses import dataclass, field

from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.models import AuthToken
from rest_framework import exceptions


@dataclass(frozen=True)
class ApiToken:
    raw: str = field(repr=False)  # never printed, whatever logs this object
    record: AuthToken = field(repr=False)


class TokenAuthentication(KnoxTokenAuthentication):
    def authenticate_credentials(self, token: bytes):
        try:
            raw = token.decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        user, record = super().authenticate_credentials(token)
        return user, ApiToken(raw=raw, record=record)
