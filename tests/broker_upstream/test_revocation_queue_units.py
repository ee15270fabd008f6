"""The revocation queue's pure parts (govern.domain.revocations): the backoff between worker passes, and what an
item shows of where its token lives."""
from __future__ import annotations

import datetime as dt

from govern.domain import revocations as R


def test_the_backoff_doubles_from_a_minute_up_to_an_hour():
    assert [R.next_delay(n) for n in range(1, 9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_an_item_shows_the_secret_reference_but_not_the_vault_path_and_no_next_attempt_once_finished():
    now = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    item = R.QueuedRevocation(
        id=1, credential="shop-users", principal="dana", token_type=R.REFRESH_TOKEN, reason=R.DISCONNECTED,
        location={"secret_ref": "credential/shop-users/principal/dana/refresh_token", "path": "p", "version": None,
                  "forget": True}, integration_user="order-sync", status=R.DONE, attempts=1, next_attempt_at=now,
        created_at=now)
    shown = item.as_dict()
    assert shown["location"] == {"secret_ref": "credential/shop-users/principal/dana/refresh_token", "version": None,
                                 "forget": True}
    assert shown["next_attempt_at"] is None
    assert item.describe() == "revoke refresh_token (credential shop-users principal dana)"
