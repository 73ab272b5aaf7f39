"""Entity tags: the strong tag of a representation, and how If-Match and If-None-Match compare it."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from caracal.etags import PreconditionFailed, etag_of, if_match_holds, if_none_match_holds, require_if_match


class Thing(msgspec.Struct):
    id: str
    name: str


def test_a_representations_tag_is_the_quoted_hex_sha256_of_its_json_bytes() -> None:
    thing = Thing("t1", "é")
    assert etag_of(thing) == f'"{hashlib.sha256(msgspec.json.encode(thing)).hexdigest()}"'
    assert etag_of(thing) != etag_of(Thing("t1", "e"))


def test_if_match_takes_a_listed_strong_tag_or_star_and_holds_when_absent() -> None:
    assert if_match_holds(None, '"abc"')
    assert if_match_holds('"abc"', '"abc"')
    assert if_match_holds('"x" , "abc"', '"abc"')
    assert if_match_holds("*", '"abc"')
    assert if_match_holds('"old"', '"new"', '"old"')  # any of the object's current tags


def test_if_match_never_matches_a_weak_tag_or_a_stale_one() -> None:
    assert not if_match_holds('W/"abc"', '"abc"')
    assert not if_match_holds('"abd"', '"abc"')
    assert not if_match_holds("", '"abc"')
    assert not if_match_holds(",,", '"abc"')


def test_if_none_match_takes_lists_weak_tags_and_star() -> None:
    assert if_none_match_holds('"abc"', '"abc"')
    assert if_none_match_holds('"x", W/"abc"', '"abc"')
    assert if_none_match_holds("*", '"abc"')
    assert not if_none_match_holds('"abd"', '"abc"')
    assert not if_none_match_holds(None, '"abc"')


def test_a_stale_if_match_is_412_precondition_failed() -> None:
    require_if_match(etag_of(Thing("a", "b")), Thing("a", "b"), "changed")
    with pytest.raises(PreconditionFailed) as raised:
        require_if_match('"stale"', Thing("a", "b"), "changed")
    assert (raised.value.status, raised.value.code) == (412, "precondition_failed")
