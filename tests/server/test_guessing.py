"""Password guessing is slowed per address, per account and overall; X-Forwarded-For counts only
from trusted proxies; sign-up can be closed, with accounts made by the admin instead."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests
from pg_schema import fresh_schema
from server_helpers import Api
from sqlalchemy import select

from hyperdash.server.errors import Throttled
from hyperdash.server.store import Store, login_failures
from hyperdash.server.throttle import CLIENT_FREE, FORGET_SECONDS, MAX_DELAY, PAIR_FREE, Throttle


def _guess(post, n: int, forwarded=None) -> list[int]:
    """Statuses of ``n`` wrong passwords for ``n`` different emails."""
    codes = []
    for i in range(n):
        headers = {"x-forwarded-for": forwarded(i)} if forwarded else {}
        resp = post("/api/v1/sessions", json={"email": f"guess-{i}-{uuid.uuid4().hex[:6]}@example.com",
                                             "password": "not the password"}, headers=headers)
        codes.append(resp.status_code)
    return codes


def _poster(url: str):
    """``post(path, **kw)``: a POST to ``path`` on the server at ``url``."""
    def post(path: str, **kw):
        return requests.post(url + path, timeout=10, **kw)
    return post


def test_forty_emails_from_one_address_get_throttled(client):
    api = Api(client)
    # The clock stands still, so a slow machine cannot let a wait run out between two guesses.
    auth = client.app.state.auth
    auth.throttle = Throttle(auth.store, clock=lambda: 1000.0)
    codes = _guess(client.post, 40)
    assert codes[:CLIENT_FREE] == [401] * CLIENT_FREE
    assert codes[CLIENT_FREE:] == [429] * (40 - CLIENT_FREE)
    # The throttle holds for a real account from that address too, and says when to come back.
    resp = client.post("/api/v1/sessions", json={"email": api.email, "password": api.password})
    assert resp.status_code == 429 and 1 <= int(resp.headers["retry-after"]) <= MAX_DELAY


def test_the_sign_in_form_says_when_to_try_again(client):
    # The dashboard's form answered 429 without the Retry-After that the API's throttle sends.
    api = Api(client)
    auth = client.app.state.auth
    auth.throttle = Throttle(auth.store, clock=lambda: 1000.0)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    codes = []
    for _ in range(PAIR_FREE + 1):
        resp = client.post("/login", data={"email": api.email, "password": "not the password", "csrf_token": token},
                           follow_redirects=False)
        codes.append(resp.status_code)
    assert codes == [401] * PAIR_FREE + [429]
    wait = int(resp.headers["retry-after"])
    assert 1 <= wait <= MAX_DELAY and f"Try again in {wait} s." in resp.text


@pytest.fixture
def store(db_url):
    store = Store(db_url)
    yield store
    store.close()


def test_one_account_from_many_addresses_and_many_guesses_overall_are_throttled(store):
    now = [1_000_000.0]
    throttle = Throttle(store, clock=lambda: now[0])
    for i in range(10):
        throttle.check("victim@example.com", f"10.0.0.{i}")
        throttle.failed("victim@example.com", f"10.0.0.{i}")
    try:
        throttle.check("victim@example.com", "10.0.1.1")
    except Exception as exc:
        assert exc.status == 429
    else:
        raise AssertionError("ten addresses guessed one account without a wait")
    throttle.check("someone-else@example.com", "10.0.1.1")  # others are not held
    # Overall: a botnet guessing a different account from each address.
    for i in range(400):
        throttle.failed(f"a{i}@example.com", f"10.1.{i // 256}.{i % 256}")
    try:
        throttle.check("fresh@example.com", "10.9.9.9")
    except Exception as exc:
        assert exc.status == 429
    else:
        raise AssertionError("400 guesses at once went unthrottled")
    now[0] += 3600 * 2  # counts are forgotten
    throttle.check("victim@example.com", "10.0.1.1")
    # ...and gone from the table, once another wrong password comes (neither email nor address kept)
    throttle.failed("victim@example.com", "10.0.1.1")
    with store.read() as conn:
        kept = conn.execute(select(login_failures)).all()
    assert len(kept) == 3 and all(row.failures == 1 for row in kept)
    assert not any("victim" in row.key or "10.0" in row.key for row in kept)


def test_a_right_password_clears_its_accounts_counts_not_its_addresss(store):
    throttle = Throttle(store, clock=lambda: 1_000_000.0)  # (no wait runs out during the test)
    for _ in range(PAIR_FREE):
        throttle.failed("me@example.com", "10.0.0.1")
    for i in range(CLIENT_FREE - PAIR_FREE):
        throttle.failed(f"other{i}@example.com", "10.0.0.1")
    with pytest.raises(Throttled):
        throttle.check("me@example.com", "10.0.0.1")  # the pair's fourth try waits
    throttle.succeeded("me@example.com", "10.0.0.1")  # (say, a session that was signed in already)
    pair, client, account = Throttle._keys("me@example.com", "10.0.0.1")
    with store.read() as conn:
        left = dict(conn.execute(select(login_failures.c.key, login_failures.c.failures)).all())
    assert pair not in left and account not in left and left[client] == CLIENT_FREE
    with pytest.raises(Throttled):
        throttle.check("me@example.com", "10.0.0.1")  # the address made ten wrong guesses: it waits


@pytest.mark.postgres
def test_wrong_passwords_counted_by_two_processes_at_once_all_count():
    """Two stores (as two server processes have) on one database, each counting wrong
    passwords for the same account from the same address at the same moment: none is lost."""
    with fresh_schema() as url:
        stores = [Store(url), Store(url)]
        try:
            throttles = [Throttle(store) for store in stores]
            start = threading.Barrier(2)

            def guess(throttle):
                start.wait()
                for _ in range(25):
                    throttle.failed("victim@example.com", "10.0.0.9")

            threads = [threading.Thread(target=guess, args=(t,)) for t in throttles]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            with stores[0].read() as conn:
                assert [row.failures for row in conn.execute(select(login_failures))] == [50, 50, 50]
        finally:
            for store in stores:
                store.close()


def test_rotated_forwarded_for_from_an_untrusted_peer_does_not_escape(server_factory):
    # Only 192.0.2.1 (no one here) is a trusted proxy, so the loopback peer's header is ignored.
    server = server_factory("--forwarded-allow-ips", "192.0.2.1")
    post = _poster(server.url)
    codes = _guess(post, 20, forwarded=lambda i: f"203.0.113.{i}")
    assert codes[:CLIENT_FREE] == [401] * CLIENT_FREE and set(codes[CLIENT_FREE:]) == {429}


def test_a_trusted_proxy_tells_its_clients_apart(server_factory):
    # By default (uvicorn's) the loopback proxy is trusted: each forwarded address counts alone...
    server = server_factory()
    post = _poster(server.url)
    assert set(_guess(post, 20, forwarded=lambda i: f"203.0.113.{i}")) == {401}
    # ...and one forwarded address guessing many accounts is held.
    codes = _guess(post, 20, forwarded=lambda i: "198.51.100.7")
    assert codes[:CLIENT_FREE] == [401] * CLIENT_FREE and set(codes[CLIENT_FREE:]) == {429}


def test_no_signup_refuses_signups_and_the_admin_adds_accounts(server_factory):
    server = server_factory("--no-signup")
    resp = requests.post(server.url + "/api/v1/users", json={"email": "new@example.com", "password": "long enough"},
                         timeout=10)
    assert resp.status_code == 403 and resp.json()["code"] == "signup_closed"
    assert "hyperdash server adduser" in resp.json()["message"]
    env = {"HYPERDASH_HOME": str(server.home)}
    added = subprocess.run(
        [sys.executable, "-m", "hyperdash", "server", "adduser", "--db", server.db_url,
         "--email", "New@Example.com", "--password-stdin"],
        input="a long password\n", capture_output=True, text=True, timeout=60,
        env={**os.environ, **env})
    assert added.returncode == 0, added.stderr
    assert "new@example.com" in added.stdout
    again = subprocess.run(
        [sys.executable, "-m", "hyperdash", "server", "adduser", "--db", server.db_url,
         "--email", "new@example.com", "--password-stdin"],
        input="a long password\n", capture_output=True, text=True, timeout=60,
        env={**os.environ, **env})
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        "hyperdash: an account with the email new@example.com exists already"]
    login = requests.post(server.url + "/api/v1/sessions", json={"email": "new@example.com",
                                                                 "password": "a long password"}, timeout=10)
    assert login.status_code == 200 and login.json()["api_key"]


def test_a_count_within_its_free_tries_holds_no_one_back_whatever_the_clock_that_wrote_it(store):
    """Another process, whose clock reads a moment later, counted a try: within the free tries
    it makes no one wait (before, the moment "to come" was taken for a wait)."""
    throttle = Throttle(store, clock=lambda: 1_000_000.0)
    ahead = Throttle(store, clock=lambda: 1_000_000.5)
    ahead.failed("me@example.com", "10.0.0.1")
    throttle.check("me@example.com", "10.0.0.1")


@pytest.mark.postgres
def test_wrong_passwords_counted_at_once_by_many_in_three_processes_never_deadlock():
    """Many wrong passwords at once through three stores (three server processes), for a few
    accounts and addresses in every combination: none fails (grouped with others in one
    transaction, a count's rows were locked in an order of no one's choosing: deadlocks)."""
    with fresh_schema() as url:
        stores = [Store(url), Store(url), Store(url)]
        try:
            throttles = [Throttle(store) for store in stores]
            errors = []

            def guess(throttle, n):
                for i in range(30):
                    try:
                        throttle.failed(f"user{(n + i) % 4}@example.com", f"10.0.0.{(n * 7 + i) % 4}")
                    except Exception as exc:
                        errors.append(exc)

            threads = [threading.Thread(target=guess, args=(throttles[n % 3], n)) for n in range(24)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            assert errors == []
            with stores[0].read() as conn:
                total = sum(row.failures for row in conn.execute(select(login_failures))
                            if row.key in {key for user in range(4) for address in range(4) for key in
                                           [list(Throttle._keys(f"user{user}@example.com", f"10.0.0.{address}"))[0]]})
            assert total == 24 * 30
        finally:
            for store in stores:
                store.close()


@pytest.mark.postgres
def test_forgetting_old_counts_never_deadlocks_with_another_process_counting():
    """Another process revives an hour-old count and then counts the same account as this one,
    while this one, due to forget old counts, counts a wrong password: neither waits on the other
    in a cycle (before, the deletion ran in the counting transaction: PostgreSQL broke the
    deadlock by failing one of them, a 500 and a guess not counted)."""
    import psycopg

    with fresh_schema() as url:
        store = Store(url)
        try:
            throttle = Throttle(store)
            now = time.time()
            old_client = Throttle._keys("x@example.com", "10.0.0.2")
            old_key = list(old_client)[1]  # the address 10.0.0.2's count, an hour and more old
            dsn = url.replace("postgresql+psycopg://", "postgresql://")
            other = psycopg.connect(dsn)  # (another process's transaction)
            try:
                other.execute("INSERT INTO login_failures (key, failures, last_at) VALUES (%s, 1, %s)",
                              (old_key, now - 2 * FORGET_SECONDS))
                other.commit()
                other.execute("UPDATE login_failures SET failures = 1, last_at = %s WHERE key = %s", (now, old_key))
                errors = []

                def count():
                    try:
                        throttle.failed("victim@example.com", "10.0.0.1")
                    except Exception as exc:  # (the failure the test looks for)
                        errors.append(exc)

                counting = threading.Thread(target=count)
                counting.start()
                time.sleep(0.5)  # (its transaction is under way)
                account = list(Throttle._keys("victim@example.com", "10.0.0.2"))[2]
                other.execute("INSERT INTO login_failures (key, failures, last_at) VALUES (%s, 1, %s) "
                              "ON CONFLICT (key) DO UPDATE SET failures = login_failures.failures + 1",
                              (account, now))
                other.commit()
                counting.join(30)
                assert not counting.is_alive() and errors == []
            finally:
                other.close()
            with store.read() as conn:
                counts = dict(conn.execute(select(login_failures.c.key, login_failures.c.failures)).all())
            assert counts[account] == 2 and counts[old_key] == 1
        finally:
            store.close()
