"""The payee-name rule's comparison: one small function, tricky cases first (no app needed)."""

import pytest

from crm_app.common.names import name_parts, same_person_name


@pytest.mark.parametrize(
    ("written", "legal"),
    [
        ("Wei Zhang", "Wei Zhang"),
        ("ZHANG  wei", "Wei Zhang"),  # family name first, other case, double space
        ("ZhangWei", "Wei Zhang"),  # no space at all, parts swapped
        ("zhangwei", "Wei Zhang"),
        ("Zhang, Wei", "Wei Zhang"),  # "family, given" as forms write it
        ("张伟", "张 伟"),
        ("伟 张", "张伟"),
        ("Ｗｅｉ　Ｚｈａｎｇ", "Wei Zhang"),  # full-width letters and ideographic space (NFKC)
        ("Mary-Jane O'Neil", "MARY JANE ONEIL"),
        ("J. R. R. Tolkien", "Tolkien J R R"),
        ("Straße", "STRASSE"),  # casefold, not lower
        ("  Ann\tClient\n", "Ann Client"),
        ("约翰·史密斯", "约翰 史密斯"),  # the middle dot of transliterated names
    ],
)
def test_the_same_name_written_differently_matches(written, legal):
    assert same_person_name(written, legal)
    assert same_person_name(legal, written)


@pytest.mark.parametrize(
    ("written", "legal"),
    [
        ("Li Na", "Wei Zhang"),  # another person
        ("Wei Zhang Jr", "Wei Zhang"),  # an extra part is another name
        ("Wei", "Wei Zhang"),  # a part missing
        ("Zhang Wei Wei", "Wei Zhang"),
        ("张伟", "伟张"),  # characters reordered inside one part are another name
        ("张伟", "张三"),
        ("", "Wei Zhang"),  # nothing written matches nothing
        ("...", "Wei Zhang"),
        ("Wei Zhang", ""),  # no legal name on file: nothing can match it
        ("Weizhang Co Ltd", "Wei Zhang"),
    ],
)
def test_a_different_name_does_not_match(written, legal):
    assert not same_person_name(written, legal)
    assert not same_person_name(legal, written)


def test_parts_are_split_at_spaces_and_punctuation_and_case_folded():
    assert name_parts(" Mary-Jane  O'Neil ") == ("mary", "jane", "o", "neil")
    assert name_parts("ＺＨＡＮＧ　Wei") == ("zhang", "wei")
    assert name_parts(None) == ()


def test_a_very_long_text_is_compared_without_blowing_up():
    many = " ".join(f"part{i}" for i in range(40))
    assert same_person_name(many, many)
    assert not same_person_name(many, " ".join(reversed(many.split())))
