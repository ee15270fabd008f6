"""Load one system's contract data from the database."""
from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col, select

from govern.domain.contract import build_contract
from govern.errors import NotFound
from govern.store.tables import ExternalCredential, NamedCredential, System


def load_contract(sessions: sessionmaker[Session], system_id: str) -> dict:
    with sessions() as s:
        system = s.scalars(select(System).where(System.external_id == system_id)).first()
        if system is None:
            raise NotFound(f"unknown system {system_id!r}")
        creds = s.scalars(select(ExternalCredential).where(ExternalCredential.system_id == system.id)).all()
        ncs = s.scalars(select(NamedCredential).where(
            col(NamedCredential.credential_id).in_([c.id for c in creds] or [-1]))).all()
        return build_contract(system.model_dump(), [c.model_dump() for c in creds], [n.model_dump() for n in ncs])
