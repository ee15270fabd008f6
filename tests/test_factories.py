from sqlmodel import select

from govern.store.tables import Assignment, IntegrationUser
from tests.factories import make_landscape


def test_make_landscape_builds_linked_rows(services):
    make_landscape(services.sessions)
    with services.sessions() as s:
        user = s.exec(select(IntegrationUser)).one()
        assert user.external_id == "order-sync"
        assert s.exec(select(Assignment)).one().integration_user_id == user.id
