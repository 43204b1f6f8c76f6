"""Teams by slug and tags by name: the one lookup that services of every app use."""

from __future__ import annotations

from loaders.models import Tag
from loaders.selectors import tag_by_name, tags_by_name, team_by_slug, teams_by_slug


def test_a_slug_or_name_is_looked_up_and_an_unknown_one_is_none(team):
    tag = Tag.objects.create(name="sales")
    assert team_by_slug("data-platform") == team
    assert tag_by_name("sales") == tag
    assert team_by_slug("nobody") is None
    assert tag_by_name("nothing") is None


def test_an_object_or_none_passes_through_without_a_query(team, django_assert_num_queries):
    tag = Tag(name="unsaved")
    with django_assert_num_queries(0):
        assert team_by_slug(team) is team
        assert tag_by_name(tag) is tag
        assert team_by_slug(None) is None
        assert tag_by_name(None) is None


def test_many_are_looked_up_in_one_query(team, django_assert_num_queries):
    Tag.objects.bulk_create([Tag(name=name) for name in ("a", "b", "c")])
    with django_assert_num_queries(2):
        assert set(tags_by_name(["a", "c", "zzz", "a"])) == {"a", "c"}
        assert teams_by_slug(["data-platform", "nobody"]) == {"data-platform": team}
