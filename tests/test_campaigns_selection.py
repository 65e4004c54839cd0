from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from imk_outreach.campaigns.selection import count_new, select_sections
from imk_outreach.models import Campaign, EditionSection, NewsItem, Section, Selection

DATE = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def item(
    id: str,
    days_ago: float = 1,
    tags: tuple[str, ...] = (),
    source: str = "feed",
    sources: tuple[str, ...] = (),
) -> NewsItem:
    return NewsItem(
        id=id,
        url=f"https://example.org/{id}",
        source=source,
        title=id,
        summary_html="",
        published_at=DATE - timedelta(days=days_ago),
        language="de",
        tags=tags,
        sources=sources,
    )


def campaign(*selects: Selection) -> Campaign:
    sections = tuple(Section(f"s{n}", {"de": f"S{n}"}, select) for n, select in enumerate(selects))
    return Campaign(name="test", path="test.yaml", sections=sections)


def ids(sections: tuple[EditionSection, ...]) -> list[list[str]]:
    return [[i.id for i in section.items] for section in sections]


def pick(select: Selection, items: list[NewsItem], already_sent: frozenset[str] = frozenset()) -> list[str]:
    [section] = ids(select_sections(campaign(select), items, DATE, already_sent))
    return section


def test_sections_keep_campaign_order_ids_and_headings() -> None:
    sections = select_sections(campaign(Selection(), Selection()), [], DATE, frozenset())
    assert [(s.id, s.heading, s.items) for s in sections] == [
        ("s0", {"de": "S0"}, ()),
        ("s1", {"de": "S1"}, ()),
    ]


def test_tags_match_any() -> None:
    items = [item("a", tags=("film",)), item("b", tags=("games", "xr")), item("c", tags=("ki",)), item("d")]
    assert sorted(pick(Selection(tags=("film", "games")), items)) == ["a", "b"]


def test_sources_match_the_item_source_or_any_merged_source() -> None:
    items = [
        item("a", source="bfi"),
        item("b", source="other", sources=("other", "bfi")),  # the same news from two sources
        item("c", source="other"),
    ]
    assert sorted(pick(Selection(sources=("bfi",)), items)) == ["a", "b"]


def test_tags_and_sources_both_apply() -> None:
    items = [item("a", tags=("film",), source="bfi"), item("b", tags=("film",)), item("c", source="bfi")]
    assert pick(Selection(tags=("film",), sources=("bfi",)), items) == ["a"]


def test_since_window_and_no_future_items() -> None:
    items = [
        item("inside", days_ago=6.9),
        item("edge", days_ago=7),  # exactly `since` before the date counts
        item("old", days_ago=7.1),
        item("future", days_ago=-0.5),  # published after the edition's date: waits for the next one
        item("now", days_ago=0),
    ]
    assert pick(Selection(since=timedelta(days=7)), items) == ["now", "inside", "edge"]
    assert pick(Selection(), items) == ["now", "inside", "edge", "old"]


def test_newest_first_and_max_cut() -> None:
    items = [item(f"i{n}", days_ago=n) for n in (3, 1, 4, 2, 5)]
    assert pick(Selection(max=3), items) == ["i1", "i2", "i3"]


def test_equal_dates_are_ordered_by_id_whatever_the_input_order() -> None:
    items = [item(name, days_ago=1) for name in ("c", "a", "d", "b")] + [item("z", days_ago=0.5)]
    expected = ["z", "a", "b", "c", "d"]
    for seed in range(5):
        random.Random(seed).shuffle(items)
        assert pick(Selection(), items) == expected


def test_pins_come_first_in_pin_order_even_if_old_or_not_matching() -> None:
    items = [
        item("new", days_ago=1, tags=("film",)),
        item("newer", days_ago=0.5, tags=("film",)),
        item("old-pin", days_ago=300, tags=("ki",)),
        item("other-pin", days_ago=2),
    ]
    select = Selection(
        tags=("film",),
        since=timedelta(days=7),
        pin=("https://example.org/other-pin", "https://example.org/old-pin", "https://example.org/missing"),
    )
    assert pick(select, items) == ["other-pin", "old-pin", "newer", "new"]


def test_pins_take_slots_of_max_but_always_stay() -> None:
    items = [item("a", days_ago=1), item("b", days_ago=2), item("p", days_ago=9), item("q", days_ago=8)]
    pins = ("https://example.org/p", "https://example.org/q")
    assert pick(Selection(max=3, pin=pins), items) == ["p", "q", "a"]
    assert pick(Selection(max=1, pin=pins), items) == ["p", "q"]


def test_pinned_item_already_sent_is_not_repeated() -> None:
    items = [item("a"), item("p", days_ago=20)]
    select = Selection(pin=("https://example.org/p",))
    assert pick(select, items, already_sent=frozenset({"p"})) == ["a"]


def test_exclude() -> None:
    items = [item("a"), item("b"), item("c")]
    assert pick(Selection(exclude=("https://example.org/b",)), items) == ["a", "c"]


def test_already_sent_is_never_repeated() -> None:
    items = [item("a", days_ago=1), item("b", days_ago=2), item("c", days_ago=3)]
    assert pick(Selection(max=2), items, already_sent=frozenset({"a"})) == ["b", "c"]


def test_an_item_appears_in_one_section_only() -> None:
    items = [
        item("chain", days_ago=1, tags=("blockchain",)),
        item("pay", days_ago=2, tags=("fintech",)),
        item("film", days_ago=3, tags=("film",)),
    ]
    sections = select_sections(
        campaign(
            Selection(tags=("blockchain", "film")),
            Selection(tags=("fintech", "blockchain"), pin=("https://example.org/film",)),
        ),
        items,
        DATE,
        frozenset(),
    )
    # "film" is pinned in the second section but already placed in the first
    assert ids(sections) == [["chain", "film"], ["pay"]]


def test_max_of_an_earlier_section_leaves_the_rest_for_later_ones() -> None:
    items = [item("a", days_ago=1, tags=("film",)), item("b", days_ago=2, tags=("film",))]
    sections = select_sections(
        campaign(Selection(tags=("film",), max=1), Selection(tags=("film",))), items, DATE, frozenset()
    )
    assert ids(sections) == [["a"], ["b"]]


def test_selection_is_pure() -> None:
    items = [item("b", days_ago=2), item("a", days_ago=1)]
    sent = frozenset({"x"})
    first = select_sections(campaign(Selection()), items, DATE, sent)
    assert [i.id for i in items] == ["b", "a"] and sent == frozenset({"x"})
    assert select_sections(campaign(Selection()), items, DATE, sent) == first


def test_count_new() -> None:
    a, b, c = item("a"), item("b"), item("c")
    sections = (EditionSection("s0", {}, (a, b)), EditionSection("s1", {}, (c,)))
    assert count_new(sections) == 3
    assert count_new(sections, frozenset({"b"})) == 2
    assert count_new(()) == 0
