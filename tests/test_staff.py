"""Staff users of the web app (services/staff.py): accounts, the password rules, sign-in and its
throttle, sessions. On SQLite and PostgreSQL, with the clock passed in."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select, update

from imk_outreach.config import Settings
from imk_outreach.db.tables import staff_login_attempts, staff_sessions, staff_users
from imk_outreach.services import staff
from imk_outreach.services.database import engine_for
from tests.conftest import ConfigFactory

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
GOOD = "lange-sichere-wortkette"
OTHER_GOOD = "Kx7#mPq2vL9w"  # exactly 12 characters


@pytest.fixture
def settings(make_settings: ConfigFactory) -> Settings:
    return make_settings([])


def names(settings: Settings) -> list[str]:
    return [user.name for user in staff.list_users(settings)]


def attempts(settings: Settings) -> list[tuple[datetime, str]]:
    with engine_for(settings).connect() as conn:
        query = select(staff_login_attempts.c.at, staff_login_attempts.c.client_key)
        return [(at, key) for at, key in conn.execute(query.order_by(staff_login_attempts.c.id))]


# -- users -----------------------------------------------------------------------------------------


def test_add_list_remove(settings: Settings) -> None:
    anna = staff.add_user(settings, "anna", GOOD, email="Anna@Example.org", language="en", now=NOW)
    bert = staff.add_user(settings, "Bert.M", OTHER_GOOD, now=NOW + timedelta(hours=1))
    assert (anna.name, anna.email, anna.language, anna.created_at) == ("anna", "Anna@example.org", "en", NOW)
    assert (bert.name, bert.email, bert.language) == (
        "bert.m",
        None,
        None,
    )  # upper case is lowered; no language: the browser decides
    assert staff.list_users(settings) == [anna, bert]
    assert staff.remove_user(settings, "ANNA ") == anna
    assert names(settings) == ["bert.m"]
    with pytest.raises(staff.UnknownUserError, match="no staff user named 'anna'"):
        staff.remove_user(settings, "anna")


@pytest.mark.parametrize("name", ["", "anna maria", "anna!", "jürgen", "a" * 65, "../etc"])
def test_user_names_outside_the_rule_are_refused(settings: Settings, name: str) -> None:
    with pytest.raises(staff.StaffInputError, match="lower-case letters, digits, '.', '-' or '_'"):
        staff.add_user(settings, name, GOOD, now=NOW)
    assert names(settings) == []


def test_names_at_the_limits_are_taken(settings: Settings) -> None:
    for name in ("a", "x" * 64, "anna-maria_k.2"):
        staff.add_user(settings, name, GOOD, now=NOW)
    assert names(settings) == sorted(["a", "x" * 64, "anna-maria_k.2"])


def test_bad_email_and_language_are_refused(settings: Settings) -> None:
    with pytest.raises(staff.StaffInputError, match="email address 'anna@' is not valid"):
        staff.add_user(settings, "anna", GOOD, email="anna@", now=NOW)
    with pytest.raises(staff.StaffInputError, match="language 'fr' is not offered: choose de or en"):
        staff.add_user(settings, "anna", GOOD, language="fr", now=NOW)
    assert names(settings) == []


def test_a_second_user_of_the_same_name_is_refused(settings: Settings) -> None:
    first = staff.add_user(settings, "anna", GOOD, now=NOW)
    for name in ("anna", "Anna"):
        with pytest.raises(staff.UserExistsError, match="a staff user named 'anna' exists already"):
            staff.add_user(settings, name, OTHER_GOOD, now=NOW)
    assert staff.list_users(settings) == [first]
    assert staff.authenticate(settings, "anna", GOOD, "192.0.2.1", now=NOW) == first  # password kept


def test_set_language(settings: Settings) -> None:
    anna = staff.add_user(settings, "anna", GOOD, now=NOW)
    staff.set_language(settings, anna.id, "en")
    assert staff.list_users(settings)[0].language == "en"
    with pytest.raises(staff.StaffInputError, match="choose de or en"):
        staff.set_language(settings, anna.id, "EN")
    with pytest.raises(staff.UnknownUserError):
        staff.set_language(settings, anna.id + 1, "de")
    assert staff.list_users(settings)[0].language == "en"


# -- the password rules ----------------------------------------------------------------------------

TOO_SHORT = "password too short: at least 12 characters"
TOO_COMMON = "password is too common: it is on the list of common passwords"


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", TOO_SHORT),
        ("Xk7#mPq2vL9", TOO_SHORT),  # 11 characters
        ("password1234", TOO_COMMON),
        ("Password2026", TOO_COMMON),  # a year appended, case ignored
        ("PASSWORT1234!", TOO_COMMON),
        ("qwertzuiop12", TOO_COMMON),
        ("1234567890ab", TOO_COMMON),
        ("iloveyou1234", TOO_COMMON),
        ("Hallo12345678", TOO_COMMON),
        ("!!Schatz2026!!", TOO_COMMON),
        ("123456789012", TOO_COMMON),
        ("Sonnenschein", TOO_COMMON),  # on the list as it is
        ("anna20262026", "password is too easy to guess: it is the user name"),
        ("abababababab", "password is too easy to guess: it has fewer than 4 different characters"),
        ("x" * 1025, "password too long: at most 1024 characters"),
    ],
)
def test_easy_passwords_are_refused(settings: Settings, password: str, message: str) -> None:
    with pytest.raises(staff.PasswordPolicyError) as caught:
        staff.add_user(settings, "anna", password, now=NOW)
    assert str(caught.value) == message
    assert names(settings) == []


def test_the_common_list_is_long_and_every_long_entry_is_refused() -> None:
    common = staff.common_passwords()
    assert len(common) > 300
    assert {"123456", "password", "qwertz", "passwort", "hallo123", "schatz"} <= common
    long_ones = [entry for entry in common if len(entry) >= staff.MIN_PASSWORD]
    assert len(long_ones) >= 20
    for entry in long_ones:
        with pytest.raises(staff.PasswordPolicyError, match="too common|too easy"):
            staff.check_password(entry.upper())


def test_good_passwords_are_taken_and_hashed_with_argon2id(settings: Settings) -> None:
    staff.add_user(settings, "anna", GOOD, now=NOW)
    staff.add_user(settings, "bert", OTHER_GOOD, now=NOW)
    with engine_for(settings).connect() as conn:
        stored = list(conn.execute(select(staff_users.c.password_hash)).scalars())
    assert len(stored) == 2
    for value in stored:
        assert value.startswith("$argon2id$") and GOOD not in value and OTHER_GOOD not in value


# -- sign-in ---------------------------------------------------------------------------------------


def test_authenticate_right_wrong_and_unknown(settings: Settings) -> None:
    anna = staff.add_user(settings, "anna", GOOD, now=NOW)
    assert staff.authenticate(settings, "anna", GOOD, "192.0.2.1", now=NOW) == anna
    assert staff.authenticate(settings, " Anna", GOOD, "192.0.2.1", now=NOW) == anna
    assert staff.authenticate(settings, "anna", GOOD.upper(), "192.0.2.1", now=NOW) is None
    assert staff.authenticate(settings, "anna", GOOD + " ", "192.0.2.1", now=NOW) is None
    assert staff.authenticate(settings, "nobody", GOOD, "192.0.2.1", now=NOW) is None
    assert staff.authenticate(settings, "anna", "x" * 5000, "192.0.2.1", now=NOW) is None
    assert len(attempts(settings)) == 4  # the failures are counted, the successes are not


def test_an_unknown_user_takes_as_long_as_a_wrong_password(settings: Settings) -> None:
    staff.add_user(settings, "anna", GOOD, now=NOW)

    def fastest(name: str) -> float:
        times = []
        for n in range(3):
            start = time.perf_counter()
            assert staff.authenticate(settings, name, "wrong password", f"192.0.2.{n}", now=NOW) is None
            times.append(time.perf_counter() - start)
        return min(times)

    wrong, unknown = fastest("anna"), fastest("nobody")
    assert unknown > 0.5 * wrong, (unknown, wrong)  # an argon2 check in both cases


def test_an_outdated_hash_is_replaced_at_sign_in(settings: Settings) -> None:
    anna = staff.add_user(settings, "anna", GOOD, now=NOW)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(GOOD)
    with engine_for(settings).begin() as conn:
        conn.execute(update(staff_users).values(password_hash=weak))
    assert staff.authenticate(settings, "anna", GOOD, "192.0.2.1", now=NOW) == anna
    with engine_for(settings).connect() as conn:
        stored = conn.execute(select(staff_users.c.password_hash)).scalar_one()
    assert stored != weak and not PasswordHasher().check_needs_rehash(stored)
    assert staff.authenticate(settings, "anna", GOOD, "192.0.2.1", now=NOW) == anna


def test_ten_failures_block_the_client_until_the_oldest_is_15_minutes_old(settings: Settings) -> None:
    anna = staff.add_user(settings, "anna", GOOD, now=NOW)
    # one IPv6 /64 is one client, whichever host in it tries
    for n in range(10):
        at = NOW + timedelta(minutes=n)
        assert staff.authenticate(settings, "anna", "wrong", f"2001:db8:1:2::{n + 1:x}", now=at) is None
    blocked_at = NOW + timedelta(minutes=10)
    with pytest.raises(staff.LoginThrottled) as caught:  # the 11th, even with the right password
        staff.authenticate(settings, "anna", GOOD, "2001:db8:1:2:ffff::1", now=blocked_at)
    assert caught.value.retry_after == 5 * 60
    assert str(caught.value) == "too many failed sign-ins from this address: try again in 5 minutes"
    # another network, and an unknown user, are not blocked; a success there clears nothing here
    assert staff.authenticate(settings, "anna", GOOD, "2001:db8:1:3::1", now=blocked_at) == anna
    later = NOW + timedelta(minutes=14, seconds=59)
    with pytest.raises(staff.LoginThrottled) as caught:
        staff.authenticate(settings, "nobody", "wrong", "2001:db8:1:2::1", now=later)
    assert caught.value.retry_after == 1
    # refused attempts are not counted: at 15 minutes the oldest failure is out and one more try is free
    released = NOW + timedelta(minutes=15)
    assert staff.authenticate(settings, "anna", GOOD, "2001:db8:1:2::1", now=released) == anna
    assert len(attempts(settings)) == 9  # the oldest failure is deleted, the success not counted


def test_the_block_lasts_while_failures_keep_the_count_up(settings: Settings) -> None:
    staff.add_user(settings, "anna", GOOD, now=NOW)
    for n in range(10):
        assert (
            staff.authenticate(settings, "anna", "wrong", "192.0.2.7", now=NOW + timedelta(seconds=n)) is None
        )
    released = NOW + timedelta(minutes=15)
    assert staff.authenticate(settings, "anna", "wrong", "192.0.2.7", now=released) is None  # the 10th again
    with pytest.raises(staff.LoginThrottled) as caught:
        staff.authenticate(settings, "anna", GOOD, "::ffff:192.0.2.7", now=released)  # mapped IPv4: same
    assert caught.value.retry_after == 1  # the second-oldest failure (at NOW + 1 s) goes out next
    assert staff.authenticate(settings, "anna", "wrong", "192.0.2.8", now=released) is None  # another client


def test_successful_sign_ins_are_not_counted(settings: Settings) -> None:
    anna = staff.add_user(settings, "anna", GOOD, now=NOW)
    for n in range(12):
        assert staff.authenticate(settings, "anna", GOOD, "192.0.2.1", now=NOW + timedelta(seconds=n)) == anna
    assert attempts(settings) == []


def test_the_attempts_keep_no_address_and_old_ones_are_deleted(settings: Settings) -> None:
    staff.add_user(settings, "anna", GOOD, now=NOW)
    staff.authenticate(settings, "anna", "wrong", "2001:db8:abcd::1", now=NOW)
    staff.authenticate(settings, "anna", "wrong", "198.51.100.23", now=NOW + timedelta(minutes=1))
    stored = attempts(settings)
    assert [at for at, _ in stored] == [NOW, NOW + timedelta(minutes=1)]
    for _, key in stored:
        assert len(key) == 64 and "2001" not in key and "198.51" not in key
    assert stored[0][1] != stored[1][1]
    staff.authenticate(settings, "anna", "wrong", "203.0.113.9", now=NOW + timedelta(minutes=15, seconds=30))
    assert [at for at, _ in attempts(settings)] == [
        NOW + timedelta(minutes=1),
        NOW + timedelta(minutes=15, seconds=30),
    ]


# -- sessions --------------------------------------------------------------------------------------


def test_a_session_is_found_by_its_token_and_ends_at_sign_out(settings: Settings) -> None:
    anna = staff.add_user(settings, "anna", GOOD, now=NOW)
    session = staff.start_session(settings, anna, now=NOW)
    other = staff.start_session(settings, anna, now=NOW)
    assert session.token != other.token and session.csrf != other.csrf
    assert session.expires_at == NOW + staff.IDLE_TIMEOUT
    found = staff.session_for(settings, session.token, now=NOW + timedelta(seconds=30))
    assert found == session
    assert staff.session_for(settings, session.token + "x", now=NOW) is None
    assert staff.session_for(settings, "", now=NOW) is None
    staff.end_session(settings, session.token)
    assert staff.session_for(settings, session.token, now=NOW) is None
    assert staff.session_for(settings, other.token, now=NOW) == other
    staff.end_session(settings, session.token)  # again: harmless


def test_the_token_is_not_stored_in_clear(settings: Settings) -> None:
    anna = staff.add_user(settings, "anna", GOOD, now=NOW)
    session = staff.start_session(settings, anna, now=NOW)
    with engine_for(settings).connect() as conn:
        rows = conn.execute(select(staff_sessions)).all()
    assert len(rows) == 1
    cells = [str(cell) for cell in rows[0]]
    assert not any(session.token in cell for cell in cells)
    assert hashlib.sha256(session.token.encode()).hexdigest() in cells
    assert session.csrf in cells


def test_a_session_ends_after_8_hours_unused(settings: Settings) -> None:
    anna = staff.add_user(settings, "anna", GOOD, now=NOW)
    session = staff.start_session(settings, anna, now=NOW)
    used = staff.session_for(settings, session.token, now=NOW + timedelta(hours=7))
    assert used is not None and used.expires_at == NOW + timedelta(hours=12)  # 7 + 8 is past the 12
    at = NOW + timedelta(hours=2)
    fresh = staff.start_session(settings, anna, now=at)
    assert staff.session_for(settings, fresh.token, now=at + timedelta(hours=3)) is not None
    idle_until = at + timedelta(hours=3) + staff.IDLE_TIMEOUT  # 8 hours after its last use
    assert staff.session_for(settings, fresh.token, now=idle_until) is None  # 11 hours after sign-in
    almost = staff.start_session(settings, anna, now=at)
    assert staff.session_for(settings, almost.token, now=at + staff.IDLE_TIMEOUT - timedelta(seconds=1))
    unused = staff.start_session(settings, anna, now=at)
    assert staff.session_for(settings, unused.token, now=at + staff.IDLE_TIMEOUT) is None
    assert staff.session_for(settings, unused.token, now=at) is None  # deleted, not merely refused


def test_a_session_ends_12_hours_after_sign_in_however_often_used(settings: Settings) -> None:
    anna = staff.add_user(settings, "anna", GOOD, now=NOW)
    session = staff.start_session(settings, anna, now=NOW)
    for hour in range(1, 12):
        assert staff.session_for(settings, session.token, now=NOW + timedelta(hours=hour)) is not None
    last = staff.session_for(settings, session.token, now=NOW + timedelta(hours=11, minutes=59, seconds=59))
    assert last is not None and last.expires_at == NOW + staff.ABSOLUTE_TIMEOUT
    assert staff.session_for(settings, session.token, now=NOW + staff.ABSOLUTE_TIMEOUT) is None


def test_last_use_is_written_at_most_once_a_minute(settings: Settings) -> None:
    anna = staff.add_user(settings, "anna", GOOD, now=NOW)
    session = staff.start_session(settings, anna, now=NOW)

    def last_seen() -> datetime:
        with engine_for(settings).connect() as conn:
            return conn.execute(select(staff_sessions.c.last_seen_at)).scalar_one()  # type: ignore[no-any-return]

    found = staff.session_for(settings, session.token, now=NOW + timedelta(seconds=59))
    assert found is not None and found.expires_at == NOW + staff.IDLE_TIMEOUT
    assert last_seen() == NOW
    found = staff.session_for(settings, session.token, now=NOW + timedelta(seconds=60))
    assert found is not None and found.expires_at == NOW + timedelta(seconds=60) + staff.IDLE_TIMEOUT
    assert last_seen() == NOW + timedelta(seconds=60)


def test_removing_a_user_ends_their_sessions(settings: Settings) -> None:
    anna = staff.add_user(settings, "anna", GOOD, now=NOW)
    bert = staff.add_user(settings, "bert", OTHER_GOOD, now=NOW)
    sessions = [staff.start_session(settings, anna, now=NOW) for _ in range(2)]
    kept = staff.start_session(settings, bert, now=NOW)
    staff.remove_user(settings, "anna")
    for session in sessions:
        assert staff.session_for(settings, session.token, now=NOW) is None
    assert staff.session_for(settings, kept.token, now=NOW) == kept
    with engine_for(settings).connect() as conn:
        assert conn.execute(select(func.count()).select_from(staff_sessions)).scalar_one() == 1


def test_sessions_over_their_time_are_deleted_by_the_next_sign_in(settings: Settings) -> None:
    anna = staff.add_user(settings, "anna", GOOD, now=NOW)
    staff.start_session(settings, anna, now=NOW)
    staff.start_session(settings, anna, now=NOW + timedelta(hours=1))
    staff.start_session(settings, anna, now=NOW + timedelta(hours=8, minutes=30))
    with engine_for(settings).connect() as conn:
        left = list(conn.execute(select(staff_sessions.c.created_at).order_by("created_at")).scalars())
    assert left == [NOW + timedelta(hours=1), NOW + timedelta(hours=8, minutes=30)]
