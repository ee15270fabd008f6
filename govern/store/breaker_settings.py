"""Each system's circuit-breaker setting as stored (govern.ports.BreakerSettings), for the breakers' state
report (the API, the dashboard, metrics and alerts): the setting of the first named credential found for it."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from govern.ports import SystemBreakerSetting
from govern.store.db import row_id
from govern.store.tables import ExternalCredential, NamedCredential, System


class BreakerSettingRepo:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def systems(self) -> list[SystemBreakerSetting]:
        found = []
        with self.sessions() as session:
            for system in session.execute(sa.select(System).order_by(col(System.external_id))).scalars().all():
                nc = session.execute(sa.select(NamedCredential).join(
                    ExternalCredential, col(NamedCredential.credential_id) == col(ExternalCredential.id)).where(
                    col(ExternalCredential.system_id) == system.id)).scalars().first()
                found.append(SystemBreakerSetting(row_id(system), system.external_id,
                                                  nc.external_id if nc is not None else None,
                                                  dict(nc.circuit_breaker) if nc is not None and nc.circuit_breaker
                                                  else None))
        return found
