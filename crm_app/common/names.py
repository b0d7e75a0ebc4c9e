"""Comparing people's names as banks and identity documents write them.

The same person's name comes back in many spellings: `Wei Zhang`, `ZHANG  wei`,
`ZhangWei`, `张伟` and `张 伟`, `Mary-Jane O'Neil` and `MARY JANE ONEIL`. Case (after
NFKC, so full-width letters are letters), spacing and punctuation never make two
names differ, and neither does the order of the name's parts, because Chinese names
are often written family name first and Western forms ask for it last.
"""

import unicodedata
from functools import cache

# More parts than this is no name; such text is compared in its written order only.
MAX_PARTS = 12


# Control, format (bidirectional overrides, zero-width characters), private-use and
# unassigned code points: nothing a person's name is written with, and they make a name
# shown to a reviewer read differently from what is stored.
HIDDEN_CATEGORIES = frozenset(("Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"))


def has_hidden_characters(text):
    return any(unicodedata.category(char) in HIDDEN_CATEGORIES for char in text or "")


def name_parts(name):
    """The parts of a name: NFKC, case-folded, split at spaces and punctuation."""
    text = unicodedata.normalize("NFKC", name or "").casefold()
    parts, current = [], []
    for char in text:
        category = unicodedata.category(char)
        if char.isspace() or category.startswith("P") or category in ("Cc", "Cf", "Zs", "Zl", "Zp"):
            if current:
                parts.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        parts.append("".join(current))
    return tuple(parts)


def _spelled_by(text, parts):
    """Can `text` be written as every one of `parts`, each once, in some order?"""
    if len(parts) > MAX_PARTS or len(text) != sum(len(part) for part in parts):
        return text == "".join(parts)

    @cache
    def tile(position, used):
        if position == len(text):
            return True
        tried = set()
        for index, part in enumerate(parts):
            if used & (1 << index) or part in tried:
                continue
            tried.add(part)
            if text.startswith(part, position) and tile(position + len(part), used | (1 << index)):
                return True
        return False

    return tile(0, 0)


def same_person_name(first, second):
    """True when two written names are the same name, ignoring case, spacing,
    punctuation and the order of the name's parts; an empty name matches nothing."""
    first_parts, second_parts = name_parts(first), name_parts(second)
    if not first_parts or not second_parts:
        return False
    return _spelled_by("".join(second_parts), first_parts) or _spelled_by("".join(first_parts), second_parts)
