"""Parts of `recommend` that need no model: facet rules, MMR, citation checks, recency, scenario templates."""

from __future__ import annotations

import numpy as np
import pytest

from promptrec.diversity import intra_list_diversity, mmr_order
from promptrec.explanations import CitationRules, check_reason
from promptrec.facets import FacetVocabulary, ItemFacets, extract_facets, item_facets
from promptrec.models import Interaction, Item, RankMode
from promptrec.prompting.contract import OutputFormat
from promptrec.prompting.recency import history_ages, relative_time
from promptrec.prompting.templates import TemplateLibrary
from promptrec.scenarios import POLICIES, Scenario

MOVIE_VOCABULARY = FacetVocabulary(
    genres=frozenset({"comedy", "animation", "children", "documentary", "sci-fi", "horror", "war", "drama"}),
    platforms=frozenset(),
    has_years=True,
)
GAME_VOCABULARY = FacetVocabulary(
    genres=frozenset(),
    platforms=frozenset({"Nintendo Switch", "PlayStation 4", "Wii", "Wii U", "Xbox One"}),
    has_years=False,
)


@pytest.mark.parametrize(
    ("request_text", "genres", "years"),
    [
        ("a 90s comedy", ["comedy"], (1990, 1999)),
        ("A 1990s Comedy, please", ["comedy"], (1990, 1999)),
        ("an animated film for kids from the 2000s", ["animation", "children"], (2000, 2009)),
        ("a documentary", ["documentary"], (None, None)),
        ("scary movies from the eighties", ["horror"], (1980, 1989)),
        ("science fiction made before 1970", ["sci-fi"], (None, 1969)),
        ("a drama from 1994", ["drama"], (1994, 1994)),
        ("Star Wars", [], (None, None)),  # "wars" is not the war genre
        ("something fun", [], (None, None)),
    ],
)
def test_movie_requests_become_filters(request_text, genres, years):
    facets = extract_facets(request_text, MOVIE_VOCABULARY)
    assert facets.genres == genres
    assert (facets.year_from, facets.year_to) == years


@pytest.mark.parametrize(
    ("request_text", "platforms"),
    [
        ("for the Nintendo Switch", ["Nintendo Switch"]),
        ("a party game for my switch", ["Nintendo Switch"]),
        ("something for PS4", ["PlayStation 4"]),
        ("a Wii U game", ["Wii U"]),
        ("a Wii game", ["Wii"]),
        ("a game", []),
    ],
)
def test_game_requests_name_platforms(request_text, platforms):
    assert extract_facets(request_text, GAME_VOCABULARY).platforms == platforms


def test_only_facets_the_catalogue_holds_are_extracted():
    assert extract_facets("a 90s comedy", FacetVocabulary(frozenset(), frozenset(), False)).is_empty


def test_item_facets_come_from_title_and_attributes():
    movie = item_facets(Item(id="1", title="Toy Story (1995)", attributes={"genres": "Animation|Children's"}))
    assert movie == ItemFacets(1995, frozenset({"animation", "children"}), frozenset())
    game = item_facets(Item(id="2", title="Mario Kart 8 Deluxe - Nintendo Switch"))
    assert game.platforms == {"Nintendo Switch"} and game.year is None
    assert item_facets(Item(id="3", title="Kill Switch")).platforms == frozenset()
    assert item_facets(Item(id="4", title="Mario Party 10 - Wii U")).platforms == {"Wii U"}


def test_mmr_lambda_zero_keeps_the_order_and_lambda_one_spreads_duplicates():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(12, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"i{n}" for n in range(12)]
    assert mmr_order(ids, vectors, 0.0) == ids
    twins = np.repeat(vectors[:3], 2, axis=0)  # a, a, b, b, c, c
    order = mmr_order(["a1", "a2", "b1", "b2", "c1", "c2"], twins, 1.0)
    assert set(order[:3]) == {"a1", "b1", "c1"}
    assert intra_list_diversity(twins[[0, 2, 4]]) > intra_list_diversity(twins[[0, 1, 2]])
    with pytest.raises(ValueError, match="between 0 and 1"):
        mmr_order(ids, vectors, 1.5)


RULES = CitationRules(
    history_titles=["toy story", "home alone"],
    request_words=frozenset({"a", "90s", "comedy"}),
    other_titles=["groundhog day", "home alone", "the big lebowski"],
)
CLUELESS = Item(id="5", title="Clueless (1995)")


@pytest.mark.parametrize(
    ("raw", "expected", "removed"),
    [
        ('Like "Toy Story", it is a warm 90s comedy.', 'Like "Toy Story", it is a warm 90s comedy.', 0),
        ('A "90s comedy" you asked for.', 'A "90s comedy" you asked for.', 0),
        ('Fans of "Jurassic Park" love it.', "Fans of love it.", 1),
        ("It feels like Groundhog Day with teenagers.", "It feels like with teenagers.", 1),
        ('"Clueless" is a 90s comedy.\nSecond line "Alien".', '"Clueless" is a 90s comedy.', 0),
    ],
)
def test_invented_citations_are_removed_and_counted(raw, expected, removed):
    assert check_reason(raw, CLUELESS, RULES) == (expected, removed)


def test_relative_time_markers():
    assert relative_time(0) == "most recent"
    assert relative_time(2 * 86400 + 5) == "2 days ago"
    assert relative_time(86400) == "1 day ago"
    assert relative_time(400 * 86400) == "1 year ago"
    events = [
        Interaction(item_id="a", timestamp=0.0),
        Interaction(item_id="b"),
        Interaction(item_id="c", timestamp=3 * 3600.0),
    ]
    assert history_ages(events) == ["3 hours ago", None, "most recent"]
    assert history_ages([Interaction(item_id="a")]) == [None]


# As the builder passes them: untrusted text already rendered as JSON string literals.
VARIABLES = {
    "history": [{"title": '"Toy Story (1995)"', "rating": None, "event": None, "ago": "2 days ago"}],
    "user_request": '"a 90s comedy"',
    "preferences": [],
    "candidates": [{"label": "A", "id": "5", "title": '"Clueless (1995)"'}],
    "k": 1,
}


@pytest.mark.parametrize("scenario", list(Scenario))
def test_scenarios_render_with_their_contracts(scenario):
    template = TemplateLibrary().get(POLICIES[scenario].template, RankMode.SCORE)
    assert template.contract.format is OutputFormat.LABEL_LOGPROB
    assert template.contract.answer_prefix == "The best candidate is ["
    system, user = (message.content for message in template.render(VARIABLES))
    assert '[A] "Clueless (1995)"' in user and '<user_request>"a 90s comedy"</user_request>' in user
    heading = {
        Scenario.CART: "Items in the user's cart",
        Scenario.POST_PURCHASE: "Items the user just bought",
    }.get(scenario, "The user's history")
    assert user.startswith(heading)
    marker = {
        Scenario.BROWSE: "most wants",
        Scenario.CART: "complement",
        Scenario.SUPPORT_CHAT: "customer's request",
        Scenario.POST_PURCHASE: "accessory",
    }[scenario]
    assert marker in system + user
    # Recency is opt-in per template: browse shows it.
    assert ("(2 days ago)" in user) is (scenario is Scenario.BROWSE)


def test_the_ranking_templates_do_not_show_recency():
    for name in ("listwise_score", "listwise_generate"):
        template = TemplateLibrary().load(name)
        user = template.render(VARIABLES)[-1].content
        assert "2 days ago" not in user and "The user's history, oldest first" in user
