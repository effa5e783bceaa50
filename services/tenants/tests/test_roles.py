"""The role rules alone (tenants.roles): what each role grants, and who may manage an owner."""

from __future__ import annotations

import pytest

from aerie.auth.principal import Principal
from aerie.auth.scopes import PLATFORM_ROLE_NAMES, TENANT_ROLE_NAMES
from aerie.errors import Problem
from tenants.domain import TENANT_SCOPES
from tenants.roles import OWNER_ROLES, check_may_manage, roles_for, scopes_of


def person(role: str) -> Principal:
    return Principal(
        subject="usr_1", client_id="cli_app", tenant_id="ten_1", scopes=frozenset(), token_id="j", expires_at=0,
        kind="user", role=role,
    )  # fmt: skip


def client() -> Principal:
    return Principal(
        subject="cli_1", client_id="cli_1", tenant_id="ten_1", scopes=frozenset(), token_id="j", expires_at=0
    )


def test_owners_and_admins_hold_every_tenant_scope_and_the_others_less():
    assert scopes_of("owner", platform=False) == scopes_of("admin", platform=False) == frozenset(TENANT_SCOPES)
    developer, viewer = scopes_of("developer", platform=False), scopes_of("viewer", platform=False)
    assert viewer < developer < frozenset(TENANT_SCOPES)
    assert not {s for s in developer if s.startswith(("members:", "tenants:write"))}
    assert all(s.endswith(":read") for s in viewer)


def test_platform_roles_are_apart_from_tenant_roles():
    assert scopes_of("platform-admin", platform=True) == {"platform:admin"}
    assert scopes_of("platform-viewer", platform=True) == {"platform:read"}
    assert scopes_of("platform-admin", platform=False) == frozenset()
    assert scopes_of("owner", platform=True) == frozenset()
    assert set(roles_for(True)).isdisjoint(roles_for(False))
    assert OWNER_ROLES == {False: "owner", True: "platform-admin"}


def test_an_unknown_role_grants_nothing():
    assert scopes_of("superuser", platform=False) == frozenset()


@pytest.mark.parametrize(
    ("current", "new"), [(None, "owner"), ("owner", "viewer"), ("developer", "owner"), ("owner", None)]
)
def test_an_admin_cannot_add_change_or_remove_an_owner(current, new):
    with pytest.raises(Problem) as caught:
        check_may_manage(person("admin"), current=current, new=new)
    assert caught.value.status == 403


@pytest.mark.parametrize("who", [person("owner"), client()])
def test_an_owner_or_an_api_client_may_manage_owners(who):
    check_may_manage(who, current="owner", new="viewer")


def test_an_admin_manages_everyone_else():
    check_may_manage(person("admin"), current="viewer", new="developer")
    check_may_manage(person("admin"), current="developer", new=None)


def test_the_roles_are_the_shared_vocabularys_in_its_order() -> None:
    # The console offers aerie.auth.scopes' names: a role added here and not there is unreachable.
    assert tuple(roles_for(False)) == TENANT_ROLE_NAMES
    assert tuple(roles_for(True)) == PLATFORM_ROLE_NAMES
