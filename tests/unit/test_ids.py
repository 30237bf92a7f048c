"""unit: no services. Job ids and owner keys derived from the user's token (jobs.ids)."""

import hashlib
import hmac
import uuid

import pytest

from jobs import ids

SECRET = "unit-secret-0123456789abcdef"
TOKEN = "a3f1c9e0b7d2" * 5 + "beef"  # 64 hex characters, like a knox token
NAME = "nightly-report"


def test_same_inputs_give_the_same_id():
    assert ids.job_id(SECRET, TOKEN, NAME, 1) == ids.job_id(SECRET, TOKEN, NAME, 1)
    # run defaults to 1
    assert ids.job_id(SECRET, TOKEN, NAME) == ids.job_id(SECRET, TOKEN, NAME, 1)


@pytest.mark.parametrize(
    "other",
    [dict(secret=SECRET + "x"), dict(token=TOKEN[:-1] + "0"), dict(name=NAME + "2"), dict(run=2)],
    ids=["secret", "token", "name", "run"],
)
def test_id_differs_by_each_input(other):
    base = dict(secret=SECRET, token=TOKEN, name=NAME, run=1)
    changed = {**base, **other}
    assert ids.job_id(**base) != ids.job_id(**changed)


def test_ids_differ_across_many_runs_and_names():
    produced = {ids.job_id(SECRET, TOKEN, f"job-{n}", run) for n in range(50) for run in (1, 2, 3)}
    assert len(produced) == 150


def test_id_is_a_canonical_uuid_string():
    value = ids.job_id(SECRET, TOKEN, NAME)
    assert str(uuid.UUID(value)) == value
    assert len(value) == 36
    assert ids.is_job_id(value)


def test_id_is_the_documented_hmac():
    # job_id = UUID of the first 16 bytes of HMAC-SHA256(secret, length-prefixed "job"|token|name|run)
    message = b"".join(b"%d:%s" % (len(p), p) for p in (b"job", TOKEN.encode(), NAME.encode(), b"1"))
    expected = uuid.UUID(bytes=hmac.new(SECRET.encode(), message, hashlib.sha256).digest()[:16])
    assert ids.job_id(SECRET, TOKEN, NAME, 1) == str(expected)


def test_id_and_owner_reveal_neither_token_nor_name():
    job = ids.job_id(SECRET, TOKEN, NAME)
    owner = ids.owner_key(SECRET, TOKEN)
    for value in (job, job.replace("-", ""), owner):
        assert TOKEN not in value
        assert TOKEN[:8] not in value
        assert NAME not in value


@pytest.mark.parametrize("run", [0, -1])
def test_run_below_one_is_rejected(run):
    with pytest.raises(ValueError):
        ids.job_id(SECRET, TOKEN, NAME, run)


def test_length_prefix_prevents_split_collisions():
    assert ids.job_id(SECRET, "ab", "c") != ids.job_id(SECRET, "a", "bc")
    # the run number is a part of its own too
    assert ids.job_id(SECRET, TOKEN, "report1", 1) != ids.job_id(SECRET, TOKEN, "report", 11)
    # separators inside a part cannot forge another split either
    assert ids.job_id(SECRET, "a", "1:b") != ids.job_id(SECRET, "a1:", "b")


def test_owner_key_is_stable_distinct_per_token_and_hex():
    owner = ids.owner_key(SECRET, TOKEN)
    assert owner == ids.owner_key(SECRET, TOKEN)
    assert owner != ids.owner_key(SECRET, TOKEN[:-1] + "0")
    assert owner != ids.owner_key(SECRET + "x", TOKEN)
    assert len(owner) == 32
    int(owner, 16)  # hex


def test_owner_key_is_not_a_job_id_of_the_same_token():
    # domain separation: the "owner" and "job" derivations never coincide
    assert ids.owner_key(SECRET, TOKEN) != ids.job_id(SECRET, TOKEN, "").replace("-", "")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("5662d11d-34b6-6dd6-785e-b558439d469c", True),
        ("5662D11D-34B6-6DD6-785E-B558439D469C", False),  # ids are lower-case
        ("5662d11d34b66dd6785eb558439d469c", False),
        ("5662d11d-34b6-6dd6-785e-b558439d469", False),
        ("5662d11d-34b6-6dd6-785e-b558439d469cc", False),
        ("5662d11g-34b6-6dd6-785e-b558439d469c", False),
        ("5662d11d-34b6-6dd6-785e-b558439d469c\n", False),  # no trailing newline sneaks through
        (" 5662d11d-34b6-6dd6-785e-b558439d469c", False),
        ("", False),
        ("../../etc/passwd", False),
    ],
)
def test_is_job_id(value, expected):
    assert ids.is_job_id(value) is expected


def test_secret_fingerprint_names_the_secret_without_revealing_it():
    fingerprint = ids.secret_fingerprint(SECRET)
    label = b"jobs: JOB_ID_SECRET fingerprint v1"
    assert fingerprint == hmac.new(SECRET.encode(), label, hashlib.sha256).hexdigest()
    assert fingerprint == ids.secret_fingerprint(SECRET)
    assert fingerprint != ids.secret_fingerprint(SECRET + "x")
    assert SECRET not in fingerprint and SECRET.encode().hex() not in fingerprint
    # Not any digest the secret keys elsewhere (job ids, owner keys).
    assert fingerprint[:32] != ids.owner_key(SECRET, "")
