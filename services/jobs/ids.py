"""Job ids derived from the user's API token (pure logic; see docs/job-ids.md).

    job_id = UUID-formatted first 16 bytes of HMAC-SHA256(JOB_ID_SECRET, "job" | token | name | run)
    owner  = hex of the first 16 bytes of HMAC-SHA256(JOB_ID_SECRET, "owner" | token)

Stable: any container holding the token and the server secret computes the same id.
One-way: neither value reveals the token, so ids may appear in Redis keys, the database,
logs and Flower while the token appears nowhere but in the client's request.
"""

import hashlib
import hmac
import re
import uuid

JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Job names: what a client calls a job. Printable and short, so they are safe in URLs and logs.
JOB_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
# What the secret's fingerprint is a MAC of. Not length-prefixed like _digest's messages (which
# start with a digit), so no job id or owner key can equal a fingerprint.
FINGERPRINT_LABEL = b"jobs: JOB_ID_SECRET fingerprint v1"


def _digest(secret: str, *parts: str) -> bytes:
    # Length-prefixed parts: no choice of token or name can collide with another split.
    message = b"".join(b"%d:%s" % (len(raw), raw) for raw in (p.encode() for p in parts))
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def job_id(secret: str, token: str, name: str, run: int = 1) -> str:
    """The Celery task id of run `run` of the job `name` submitted with `token`."""
    if run < 1:
        raise ValueError("run numbers start at 1")
    return str(uuid.UUID(bytes=_digest(secret, "job", token, name, str(run))[:16]))


def owner_key(secret: str, token: str) -> str:
    """Stands for the token in the database, so (token, name) can be looked up."""
    return _digest(secret, "owner", token)[:16].hex()


def is_job_id(value: str) -> bool:
    # fullmatch: with match(), "$" also matches before a trailing newline ("<id>\n" passed).
    return bool(JOB_ID_PATTERN.fullmatch(value))


def secret_fingerprint(secret: str) -> str:
    """Names a JOB_ID_SECRET without revealing it: a backup records it, and a restore compares it
    with the target stack's, since every job id and owner key derives from the secret."""
    return hmac.new(secret.encode(), FINGERPRINT_LABEL, hashlib.sha256).hexdigest()
