"""Each system's circuit-breaker setting as stored (govern.ports.BreakerSettings), for the breakers' state
report (the API, the dashboard, metrics and alerts): the setting of the first named credential found for it."""
from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col, select

from govern.ports import SystemBreakerSetting
from govern.store.db import row_id
from govern.store.tables import ExternalCredential, NamedCredential, System


class BreakerSettingRepo:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def systems(self) -> list[SystemBreakerSetting]:
        found = []
        with self.sessions() as session:
            for system in session.exec(select(System).order_by(System.external_id)).all():
                nc = session.exec(select(NamedCredential).join(
                    ExternalCredential, col(NamedCredential.credential_id) == col(ExternalCredential.id)).where(
                    ExternalCredential.system_id == system.id)).first()
                found.append(SystemBreakerSetting(row_id(system), system.external_id,
                                                  nc.external_id if nc is not None else None,
                                                  dict(nc.circuit_breaker) if nc is not None and nc.circuit_breaker
                                                  else None))
        return found
