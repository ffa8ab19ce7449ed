"""Name normalization for sanctions screening: one canonical token form for every spelling.

``name_tokens("Dr. José-María O'Brien, Jr.")`` → ``("jose", "maria", "obrien")``. The steps, in
order: NFKD with combining marks dropped (accents), transliteration of any other script to ASCII
(anyascii; CJK, Hangul and kana characters become one token each, as their romanized names are
written), casefold, apostrophes and the dots of abbreviations ("S.A.") joined, other punctuation
split, then honorifics, generational
suffixes and legal-form suffixes dropped (unless nothing else is left). Word order is left as is:
the scorer compares tokens as an unordered set.
"""

from __future__ import annotations

import re
import unicodedata

from anyascii import anyascii

# Titles and generational suffixes that say nothing about who someone is.
HONORIFICS = frozenset(
    {
        "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "professor", "sir", "dame", "lord", "lady",
        "madam", "madame", "mme", "mlle", "herr", "frau", "sr", "sra", "srta", "snr", "senor", "senora",
        "jr", "jnr", "junior", "senior", "ii", "iii", "iv", "rev", "reverend", "fr", "father", "sheikh",
        "shaikh", "sheik", "haji", "hajji", "hadji", "imam", "mullah", "gen", "col", "colonel",
        "capt", "captain", "maj", "lt", "sgt", "eng", "engr", "hon", "excellency",
    }
)  # fmt: skip

# Legal-form suffixes (and their spelled-out forms): "Acme Ltd" and "ACME LIMITED" are one company.
LEGAL_FORMS = frozenset(
    {
        "llc", "ltd", "limited", "inc", "incorporated", "corp", "corporation", "co", "company", "plc",
        "llp", "lp", "gmbh", "ag", "kg", "sa", "sas", "sarl", "srl", "spa", "bv", "nv", "oy", "oyj", "ab",
        "as", "asa", "aps", "kft", "sro", "zao", "ooo", "oao", "pao", "jsc", "ojsc", "pjsc", "cjsc", "fze",
        "fzco", "fzc", "fzllc", "pte", "pty", "sdn", "bhd", "tbk", "kk", "lda", "ltda", "cv", "sl", "se",
    }
)  # fmt: skip

DROPPED = HONORIFICS | LEGAL_FORMS

_APOSTROPHES = re.compile(r"['\u2018\u2019\u02bc\u02bb`\u00b4]")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
# Dotted abbreviations are one word: "S.A." is "sa", "J.S.C." is "jsc" (a lone "J." stays "j").
_DOTTED = re.compile(r"\b[a-z](?:\.[a-z])+\b\.?")
# Scripts whose characters are each one syllable of a name, romanized as separate words.
_SYLLABIC = re.compile(r"[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def fold(text: str) -> str:
    """Return ``text`` as lowercase ASCII words separated by single spaces (no token dropped).

    Args:
        text: a name in any script, case and punctuation.

    Returns:
        The folded text, e.g. ``"jose maria obrien jr"`` for ``"José-María O'Brien, Jr."``.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    if not stripped.isascii():
        stripped = _SYLLABIC.sub(lambda m: f" {m.group(0)} ", stripped)
        stripped = anyascii(stripped)
    lowered = _APOSTROPHES.sub("", stripped.casefold())
    lowered = _DOTTED.sub(lambda m: m.group(0).replace(".", ""), lowered)
    return " ".join(_NON_ALNUM.sub(" ", lowered).split())


def name_tokens(text: str) -> tuple[str, ...]:
    """Return the canonical tokens of a name, in their original order.

    Honorifics and legal-form suffixes are dropped, except when a name consists only of them
    (then all its tokens are kept, so "Co" is still screenable).

    Args:
        text: a name in any script, case and punctuation.

    Returns:
        The tokens, e.g. ``("acme", "trading")`` for ``"ACME Trading GmbH"``; empty for a name
        with no letters or digits.
    """
    tokens = fold(text).split()
    kept = tuple(token for token in tokens if token not in DROPPED)
    return kept or tuple(tokens)


def normalize_name(text: str) -> str:
    """Return the canonical form of a name: its tokens joined by single spaces.

    Args:
        text: a name in any script, case and punctuation.

    Returns:
        For example ``"korvalesh ivan"`` for ``"Mr. KORVALESH, Ivan"`` (order kept, "mr" dropped).
    """
    return " ".join(name_tokens(text))
