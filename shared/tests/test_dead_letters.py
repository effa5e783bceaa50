"""Dead letters as an operator handles them: listed, replayed once, discarded (real Redis)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import redis

from aerie.dead_letters import DeadLetters, LetterNotFound
from aerie.errors import Problem
from aerie.events import DEAD_LETTER_STREAM, STREAM_KEY, EventContext, EventPublisher, StreamConsumer, new_event
from aerie.redis import RedisProvider

CTX = EventContext(actor=None, request_id=None, ip=None, user_agent=None)


@pytest.fixture
def r(redis_provider: RedisProvider) -> redis.Redis:
    return redis_provider.client


def bury(r: redis.Redis, group: str, n: int = 1, raw: str | None = None) -> list[str]:
    """Letters as StreamConsumer writes them; their ids."""
    ids = []
    for i in range(n):
        event = raw if raw is not None else json.dumps(new_event("project.created", "ten-1", {"id": f"p{i}"}, CTX))
        fields = {
            "event": event,
            "group": group,
            "entry_id": f"1-{i}",
            "deliveries": "5",
            "dead_at": "2026-12-03T00:00:00Z",
        }
        ids.append(r.xadd(DEAD_LETTER_STREAM, fields))
    return ids


def test_a_poison_event_replayed_after_its_fix_lands_once_and_only_where_it_was_missing(redis_provider, r):
    evt = new_event("project.created", "ten-1", {"id": "prj-1"}, CTX)
    EventPublisher().publish(r, evt)
    broken = True
    landed: dict[str, list[str]] = {"fails": [], "works": []}

    def failing(e: dict[str, Any]) -> None:
        if broken:
            raise ValueError("a bug, deployed away later")
        landed["fails"].append(e["id"])

    fails = StreamConsumer(
        redis_provider, group="fails", handler=failing, block_ms=10, min_idle_ms=10, max_deliveries=2
    )
    works = StreamConsumer(
        redis_provider, group="works", handler=lambda e: landed["works"].append(e["id"]), block_ms=10
    )
    works.poll_once()
    for _ in range(5):
        fails.poll_once()
        time.sleep(0.02)
    letters = DeadLetters(redis_provider)
    page = letters.list(limit=10)
    assert [(item["group"], item["event"]["id"]) for item in page.items] == [("fails", evt["id"])]
    broken = False
    new_id = letters.replay(page.items[0]["id"])
    assert json.loads(r.xrange(STREAM_KEY, new_id, new_id)[0][1]["event"]) == evt
    for _ in range(2):
        fails.poll_once()
        works.poll_once()
    assert landed == {"fails": [evt["id"]], "works": [evt["id"]]}  # the group that had it skipped it
    assert letters.count() == 0
    with pytest.raises(LetterNotFound):
        letters.replay(page.items[0]["id"])


def test_concurrent_replays_of_one_letter_put_it_back_once(redis_provider, r):
    (letter,) = bury(r, "g")
    letters = DeadLetters(redis_provider)
    results: list[str] = []
    errors: list[Exception] = []

    def replay() -> None:
        try:
            results.append(letters.replay(letter))
        except LetterNotFound as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replay) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1 and len(errors) == 7
    assert r.xlen(STREAM_KEY) == 1


def test_the_list_pages_and_filters_by_group(redis_provider, r):
    a = bury(r, "a", 3)
    b = bury(r, "b", 2)
    a += bury(r, "a", 2)
    letters = DeadLetters(redis_provider)
    first = letters.list(limit=2, group="a")
    assert [i["id"] for i in first.items] == a[:2] and first.next_cursor
    second = letters.list(limit=2, group="a", cursor=first.next_cursor)
    third = letters.list(limit=2, group="a", cursor=second.next_cursor)
    assert [i["id"] for i in second.items + third.items] == a[2:] and third.next_cursor is None
    assert [i["id"] for i in letters.list(limit=10).items] == sorted(a + b, key=lambda i: tuple(map(int, i.split("-"))))


def test_a_letter_that_was_never_json_is_listed_raw_and_can_be_discarded(redis_provider, r):
    (letter,) = bury(r, "g", raw="{not json")
    letters = DeadLetters(redis_provider)
    item = letters.get(letter)
    assert item["event"] is None and item["raw"] == "{not json" and item["deliveries"] == 5
    letters.discard(letter)
    assert letters.count() == 0
    with pytest.raises(LetterNotFound):
        letters.discard(letter)


@pytest.mark.parametrize("letter_id", ["", "x", "1", "1-", "-1", "1-2-3", "+", "-", "1-1 ", "9" * 21 + "-0"])
def test_an_id_that_is_no_entry_id_is_not_found_before_redis_sees_it(redis_provider, letter_id):
    letters = DeadLetters(redis_provider)
    for call in (letters.get, letters.replay, letters.discard):
        with pytest.raises(LetterNotFound):
            call(letter_id)


def test_a_forged_cursor_is_a_validation_error(redis_provider):
    from aerie.pagination import encode_cursor

    with pytest.raises(Problem) as caught:
        DeadLetters(redis_provider).list(limit=5, cursor=encode_cursor({"after": "+inf"}))
    assert caught.value.status == 422
