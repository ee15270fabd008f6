"""What the upstream token client tries for a credential's secret, in order (the broker's CredentialSecrets
.candidates): current first, then the previous one while its overlap lasts."""
from __future__ import annotations

import datetime as dt
import time

from govern.broker.upstream.secret_refs import CredentialSecrets
from govern.store.credential_secret_refs import CredentialSecretRefRepo


def ordered_secrets(services, secret_ref: str, now: dt.datetime):
    ref = services.rotation_repository().find_ref(secret_ref)

    class _At:  # a Clock stopped at `now`
        def now(self) -> dt.datetime:
            return now

        def monotonic(self) -> float:
            return time.monotonic()

    found = CredentialSecrets(CredentialSecretRefRepo(services.sessions), services.secret_store, _At()).candidates(ref.owner, ref.principal, ref.field)
    return [s.value for s in found]
