"""Name normalization for sanctions screening: one token form for every way a name is written."""

from __future__ import annotations

import pytest

from switch.risk.names import fold, name_tokens, normalize_name


@pytest.mark.parametrize(
    ("written", "tokens"),
    [
        ("IVAN KORVALESH", ("ivan", "korvalesh")),  # case
        ("Iván Korvaléš", ("ivan", "korvales")),  # accents and carons folded (NFKD)
        ("DÚNBRECHT, María Elena", ("dunbrecht", "maria", "elena")),  # punctuation, order kept
        ("Иван Корвалеш", ("ivan", "korvalesh")),  # Cyrillic transliterated
        # Greek, letter by letter (omicron-upsilon is "oy"): the fuzzy score absorbs the letter.
        ("Γιώργος Παπαδόπουλος", ("giorgos", "papadopoylos")),
        ("王伟", ("wang", "wei")),  # each CJK character one token, as romanized names are written
        ("O'Brien", ("obrien",)),  # apostrophes join
        ("O\u2019Brien", ("obrien",)),  # typographic apostrophe too
        ("Al-Tamsuri", ("al", "tamsuri")),  # hyphens split
        ("Dr. Yusuf Karim, Jr.", ("yusuf", "karim")),  # honorific and generational suffix dropped
        ("Sheikh Yusuf", ("yusuf",)),
        ("ZORVANTIC SHIPPING LLC", ("zorvantic", "shipping")),  # legal form dropped
        ("Zorvantic Shipping Limited", ("zorvantic", "shipping")),  # spelled out too
        ("ZORVANTIC SHIPPING CO., LTD.", ("zorvantic", "shipping")),
        ("Velkora Trading S.A.", ("velkora", "trading")),  # dotted abbreviation is one word
        ("J. Smith", ("j", "smith")),  # a lone initial stays
        ("ｆｕｌｌｗｉｄｔｈ", ("fullwidth",)),  # noqa: RUF001 (compatibility forms, NFKD)
        ("  many   spaces\t", ("many", "spaces")),
    ],
)
def test_a_name_normalizes_to_its_canonical_tokens(written, tokens):
    assert name_tokens(written) == tokens


def test_a_name_made_only_of_dropped_words_keeps_them():
    assert name_tokens("Co. Ltd") == ("co", "ltd")
    assert name_tokens("Mr") == ("mr",)


def test_a_name_without_letters_or_digits_has_no_token():
    assert name_tokens("") == ()
    assert name_tokens(" -- ,. ") == ()


def test_fold_keeps_every_word_and_normalize_joins_the_tokens():
    assert fold("Dr. José-María O'Brien, Jr.") == "dr jose maria obrien jr"
    assert normalize_name("Mr. KORVALESH, Ivan") == "korvalesh ivan"
