"""Cached list pages: served only while the tenant's lists are unchanged, in any process.

Each "process" here is a repository with a page cache of its own over the same Redis, as
two uWSGI workers or two instances are.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from aerie.events import EventContext
from aerie.redis import RedisProvider
from projects.event_positions import PositionedPublisher
from projects.pages import JsonPage, ProjectPageCache
from projects.storage import ProjectRepository, UnsafeAllTenants

TEN_A, TEN_B = "ten_A", "ten_B"
CTX = EventContext.system("test")


def process(
    redis_provider: RedisProvider, tenant_id: str = TEN_A, pages: ProjectPageCache | None = None
) -> ProjectRepository:
    return ProjectRepository(redis_provider, tenant_id, PositionedPublisher(), pages or ProjectPageCache())


def names(page: JsonPage) -> list[str]:
    return [json.loads(item)["name"] for item in page.items]


def test_a_page_read_again_comes_from_the_cache(redis_provider: RedisProvider) -> None:
    repo = process(redis_provider)
    for name in ("a", "b", "c"):
        repo.create({"name": name}, CTX)
    first = repo.list(status=None, limit=2, cursor=None)
    assert repo.list(status=None, limit=2, cursor=None) is first  # not read again
    assert names(first) == ["a", "b"] and first.next_cursor
    rest = repo.list(status=None, limit=2, cursor=first.next_cursor)
    assert names(rest) == ["c"] and repo.list(status=None, limit=2, cursor=first.next_cursor) is rest
    assert repo.list(status="active", limit=2, cursor=None) is not first  # another query, another page


WRITES: dict[str, Callable[[ProjectRepository, list[dict]], None]] = {
    "create": lambda repo, made: repo.create({"name": "new"}, CTX) and None,
    "rename": lambda repo, made: repo.update(made[0]["id"], {"name": "renamed"}, CTX) and None,
    "archive": lambda repo, made: repo.update(made[0]["id"], {"status": "archived"}, CTX) and None,
    "delete": lambda repo, made: repo.delete(made[1]["id"], CTX),
    "batch update": lambda repo, made: repo.batch_update([m["id"] for m in made], {"description": "x"}, CTX) and None,
    "delete many": lambda repo, made: repo.delete_many([made[0]["id"]], CTX, {}) and None,
}


@pytest.mark.parametrize("write", WRITES, ids=list(WRITES))
def test_a_write_in_another_process_is_seen_at_once(redis_provider: RedisProvider, write: str) -> None:
    mine, theirs = process(redis_provider), process(redis_provider)
    made = [mine.create({"name": name}, CTX) for name in ("a", "b")]
    for status in (None, "active"):
        mine.list(status=status, limit=50, cursor=None)  # cached here
    WRITES[write](theirs, made)
    for status in (None, "active"):
        fresh = process(redis_provider).list(status=status, limit=50, cursor=None)
        assert mine.list(status=status, limit=50, cursor=None).body() == fresh.body()


def test_index_entries_without_documents_change_the_page(redis_provider: RedisProvider) -> None:
    """The cascade's re-run removes index entries of already-deleted documents, without events."""
    mine = process(redis_provider)
    made = [mine.create({"name": name}, CTX) for name in ("a", "b", "c")]
    redis_provider.client.delete(f"projects:{{{TEN_A}}}:p:{made[0]['id']}")  # the document went first
    before = mine.list(status=None, limit=2, cursor=None)
    assert names(before) == ["b"] and before.next_cursor  # a gap where the document was
    process(redis_provider).delete_many([made[0]["id"]], CTX, {})
    assert names(mine.list(status=None, limit=2, cursor=None)) == ["b", "c"]


def test_the_purged_tenants_pages_are_not_served(redis_provider: RedisProvider) -> None:
    mine = process(redis_provider)
    mine.create({"name": "doomed"}, CTX)
    assert names(mine.list(status=None, limit=50, cursor=None)) == ["doomed"]
    UnsafeAllTenants(redis_provider, PositionedPublisher()).purge_tenant(TEN_A, CTX, {})
    assert mine.list(status=None, limit=50, cursor=None).items == []


def test_another_tenants_same_query_gets_its_own_page(redis_provider: RedisProvider) -> None:
    shared = ProjectPageCache()
    a, b = process(redis_provider, TEN_A, shared), process(redis_provider, TEN_B, shared)
    a.create({"name": "of A"}, CTX)
    b.create({"name": "of B"}, CTX)
    assert names(a.list(status=None, limit=50, cursor=None)) == ["of A"]
    assert names(b.list(status=None, limit=50, cursor=None)) == ["of B"]
    assert names(a.list(status=None, limit=50, cursor=None)) == ["of A"]


def test_lists_written_before_versions_existed_are_read_every_time(redis_provider: RedisProvider) -> None:
    repo = process(redis_provider)
    repo.create({"name": "old"}, CTX)
    redis_provider.client.delete(f"projects:{{{TEN_A}}}:lists")  # as data from before this version
    first = repo.list(status=None, limit=50, cursor=None)
    assert repo.list(status=None, limit=50, cursor=None) is not first
    assert names(first) == ["old"]


def test_the_cache_is_bounded_by_bytes() -> None:
    cache = ProjectPageCache(max_bytes=8000)
    big = JsonPage(['{"name":"' + "x" * 1000 + '"}'], None)  # over an eighth of the bound
    cache.put(("idx", "-", 50), "v1", big)
    assert cache.get(("idx", "-", 50)) is None
    small = JsonPage(['{"name":"' + "x" * 100 + '"}'], None)
    for i in range(100):
        cache.put(("idx", str(i), 50), "v1", small)
    held = len(small.items[0]) + len(small.body())  # the documents and the body both count
    assert len(cache) == 8000 // held
    assert cache.get(("idx", "99", 50)) == ("v1", small)  # the newest stay


def test_the_size_comes_from_the_environment() -> None:
    from aerie.config import ConfigError, Settings
    from projects.config import ProjectsConfig

    def page_cache_bytes(**env: str) -> int:
        settings = Settings.from_env("projects", {"REDIS_URL": "redis://127.0.0.1:1/0", "AERIE_ISSUER": "x", **env})
        return ProjectsConfig.from_settings(settings).page_cache_bytes

    assert page_cache_bytes() > 0
    assert page_cache_bytes(AERIE_PAGE_CACHE_BYTES="0") == 0  # no cache: every page read
    with pytest.raises(ConfigError, match="AERIE_PAGE_CACHE_BYTES"):
        page_cache_bytes(AERIE_PAGE_CACHE_BYTES="lots")
