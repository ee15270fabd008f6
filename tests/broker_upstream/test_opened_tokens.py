"""token_cache.OpenedTokens: a cache hit decrypts only when the shared bytes changed, and a token deleted or
replaced in the shared cache (by any process) is never served from memory."""
from __future__ import annotations

import datetime as dt

from govern.broker.upstream.token_cache import OpenedTokens, TokenCache
from govern.cache import MemoryCache
from govern.domain.access import UpstreamToken
from govern.domain.secret import Secret
from govern.secrets.cipher import CacheCipher
from govern.secrets.keys import KeyRing, new_key


class CountingCipher:
    def __init__(self):
        self.inner = CacheCipher(keyring=KeyRing([new_key()]))
        self.opens = 0

    def seal(self, data):
        return self.inner.seal(data)

    def open(self, data):
        self.opens += 1
        return self.inner.open(data)


class Clock:
    def now(self):
        return dt.datetime.now(dt.UTC)


def _token(value, seconds=3600):
    return UpstreamToken(Secret(value), "Bearer", dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds))


def test_hits_do_not_decrypt_and_changes_in_the_shared_cache_are_seen():
    shared, cipher = MemoryCache(), CountingCipher()
    mine, other = TokenCache(shared, cipher, Clock(), 60), TokenCache(shared, cipher, Clock(), 60)  # two processes
    other.put("k", _token("at_1"))
    assert mine.get("k").access_token.reveal() == "at_1" and cipher.opens == 1
    for _ in range(5):
        assert mine.get("k").access_token.reveal() == "at_1"
    assert cipher.opens == 1
    other.delete("k")  # e.g. the proxy's 401 path in another worker
    assert mine.get("k") is None
    other.put("k", _token("at_2"))
    assert mine.get("k").access_token.reveal() == "at_2" and cipher.opens == 2


def test_stale_tokens_are_not_served_and_the_memo_is_bounded():
    shared, cipher = MemoryCache(), CountingCipher()
    cache = TokenCache(shared, cipher, Clock(), 60, opened=OpenedTokens(max_entries=2))
    cache.put("stale", _token("at_old", seconds=30))  # inside the 60 s leeway
    assert cache.get("stale") is None
    for key in ("a", "b", "c"):
        cache.put(key, _token(key))
    assert len(cache.opened) == 2
    assert cache.get("a").access_token.reveal() == "a"  # evicted from memory, opened again from the cache
