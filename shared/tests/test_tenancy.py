"""TenantScope: the one rule by which a request's principal becomes a store's tenant id."""

from __future__ import annotations

import pytest

from aerie import errors
from aerie.auth.principal import PLATFORM_ADMIN, Principal
from aerie.tenancy import ANY_PLATFORM, TenantScope
from aerie.testing.tenants import FakeTenants


def principal(tenant_id: str | None, *scopes: str) -> Principal:
    return Principal("sub", "cli", tenant_id, frozenset(scopes), "tok", 0)


def refused(fn, status: int, code: str) -> None:
    with pytest.raises(errors.Problem) as caught:
        fn()
    assert str(caught.value.status).startswith(str(status)) and caught.value.problem_code == code


def test_a_tenant_token_acts_on_its_own_tenant_only() -> None:
    scope = TenantScope(FakeTenants())
    ten = principal("ten_A")
    assert scope.own(ten) == "ten_A"
    assert scope.reading(ten, "ten_A", platform=PLATFORM_ADMIN) == "ten_A"
    refused(lambda: scope.reading(ten, "ten_B", platform=PLATFORM_ADMIN), 403, "forbidden")


def test_a_platform_token_names_the_tenant_where_the_route_lets_it() -> None:
    scope = TenantScope(FakeTenants())
    admin, service = principal(None, PLATFORM_ADMIN), principal(None, "audit:write")
    assert scope.reading(admin, "ten_B", platform=PLATFORM_ADMIN) == "ten_B"
    assert scope.reading(admin, None, platform=PLATFORM_ADMIN) is None  # the platform's own
    refused(lambda: scope.reading(service, "ten_B", platform=PLATFORM_ADMIN), 403, "tenant_required")
    refused(lambda: scope.own(admin), 403, "tenant_required")
    assert scope.writing(service, "ten_B", platform=ANY_PLATFORM) == "ten_B"


def test_a_suspended_tenant_cannot_write_but_the_platform_still_records() -> None:
    tenants = FakeTenants()
    tenants.set("ten_A", status="suspended")
    scope = TenantScope(tenants)
    assert scope.own(principal("ten_A")) == "ten_A"
    refused(lambda: scope.own_for_writing(principal("ten_A")), 403, "tenant_suspended")
    assert scope.writing(principal(None), "ten_A", platform=ANY_PLATFORM) == "ten_A"
