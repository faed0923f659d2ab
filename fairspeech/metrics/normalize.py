"""Text normalization applied identically to references and hypotheses before scoring.

Default (documented in README and data_manifests/README.md), by Unicode category so every script
family gets the same rules:
  1. Unicode: apostrophe look-alikes (U+2019 ’, U+2018 ‘, U+02BC ʼ, U+0060 `, U+00B4 ´) become the
     ASCII apostrophe, so "don’t" == "don't"; format characters (category Cf: zero-width space,
     ZWNJ, ZWJ, word joiner, BOM U+FEFF, soft hyphen U+00AD, bidi marks) are deleted, since they are
     invisible and must neither split nor change a word (Devanagari with or without a ZWJ is the same
     word); then NFKC, which composes (e + U+0301 == é) and folds compatibility forms (ﬁ, fullwidth);
  2. lowercase, with Turkish U+0130 İ -> i (plain ``lower()`` gives i + a combining dot U+0307);
  3. punctuation -> space: every character that is not a letter (L), number (N), combining mark
     (M: Devanagari and Tamil vowel signs and viramas, Hebrew niqqud, accents), whitespace or an
     apostrophe between two word characters ("don't" stays one word); a combining mark left at
     the start of a word (its base was punctuation) goes too;
  4. whitespace collapsed, ends stripped.
User transforms (``str -> str`` callables) run after these, in order.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Sequence


def _code_points(category_prefix: str) -> list[int]:
    """Every code point whose Unicode category starts with ``category_prefix`` ("M", "Cf").

    Marks and format characters live in planes 0, 1 and 14 only, so the scan takes ~40 ms.
    """
    planes = [*range(0x20000), *range(0xE0000, min(0xE1000, sys.maxunicode + 1))]
    return [cp for cp in planes if unicodedata.category(chr(cp)).startswith(category_prefix)]


def _char_class(code_points: list[int]) -> str:
    """The body of a regex character class holding exactly ``code_points``, as ranges."""
    ranges, start = [], None
    for cp, following in zip(code_points, [*code_points[1:], None]):
        start = cp if start is None else start
        if following != cp + 1:
            ranges.append(f"\\U{start:08x}-\\U{cp:08x}" if cp > start else f"\\U{cp:08x}")
            start = None
    return "".join(ranges)


# Combining marks (Mn, Mc, Me). Python's \w holds letters, numbers and "_" but no marks, so without
# them a Devanagari vowel sign, a Tamil virama or a Hebrew point would split its word.
_MARKS = _char_class(_code_points("M"))
# Apostrophe look-alikes -> "'", format characters (Cf) deleted. Applied before NFKC, which would turn
# U+00B4 into a space and a combining accent.
_UNICODE_FOLD = {**{cp: None for cp in _code_points("Cf")}, **{ord(c): "'" for c in "\u2019\u2018\u02bc\u0060\u00b4"}}
# Any character that is neither a word character, a combining mark, whitespace nor an apostrophe is punctuation.
_PUNCTUATION = re.compile(rf"[^\w\s'{_MARKS}]|_")
# A combining mark with no base left (at the start of a word) is dropped with the punctuation it sat on.
_ORPHAN_MARKS = re.compile(rf"(?<!\S)[{_MARKS}]+")
# Apostrophes that do not sit between two word characters ("'quoted'", "dogs'") are punctuation too.
_STRAY_APOSTROPHE = re.compile(rf"(?<![\w{_MARKS}])'|'(?![\w{_MARKS}])")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class TextNormalizer:
    lowercase: bool = True
    remove_punctuation: bool = True
    unicode_nfkc: bool = True
    transforms: Sequence[Callable[[str], str]] = field(default_factory=tuple)

    def __call__(self, text: str) -> str:
        if self.unicode_nfkc:
            text = unicodedata.normalize("NFKC", text.translate(_UNICODE_FOLD))
        if self.lowercase:
            text = text.replace("\u0130", "i").lower()
        if self.remove_punctuation:
            text = _PUNCTUATION.sub(" ", text)
            text = _ORPHAN_MARKS.sub("", text)
            text = _STRAY_APOSTROPHE.sub(" ", text)
        for transform in self.transforms:
            text = transform(text)
        return _WHITESPACE.sub(" ", text).strip()

    @property
    def tokenwise(self) -> bool:
        """True when normalizing each whitespace token alone gives the same words as the whole text.

        Holds for the built-in steps (each is character-local or stops at whitespace: the apostrophe and
        format-character fold, NFKC, lowercasing with its final-sigma rule, punctuation, orphan marks,
        stray apostrophes), not for arbitrary user transforms.
        """
        return not self.transforms

    def normalize_many(self, texts: Sequence[str]) -> list[str]:
        """``[self(t) for t in texts]``, several times faster on large corpora.

        Each distinct whitespace token is normalized once and cached, so the regex work scales with
        the vocabulary rather than with the corpus.
        """
        if not self.tokenwise:
            return [self(t) for t in texts]
        cache = TokenCache(self)
        return [" ".join(filter(None, map(cache.__getitem__, t.split()))) for t in texts]

    def describe(self) -> dict:
        """Settings as plain data, recorded in audit.json."""
        return {
            "lowercase": self.lowercase,
            "remove_punctuation": self.remove_punctuation,
            "unicode_nfkc": self.unicode_nfkc,
            "transforms": [getattr(t, "__name__", repr(t)) for t in self.transforms],
        }


def regex_transform(pattern: str, replacement: str) -> Callable[[str], str]:
    """A named user transform from a regex substitution (the CLI's ``--normalize-sub PATTERN=>REPL``)."""
    compiled = re.compile(pattern)

    def transform(text: str) -> str:
        return compiled.sub(replacement, text)

    transform.__name__ = f"sub({pattern!r}->{replacement!r})"
    return transform


IDENTITY = TextNormalizer(lowercase=False, remove_punctuation=False, unicode_nfkc=False)


class TokenCache(dict):
    """Raw whitespace token -> ``encode(normalizer(token))``, computed on first sight."""

    def __init__(self, normalizer: TextNormalizer, encode: Callable[[str], str] | None = None):
        super().__init__()
        self._normalizer = normalizer
        self._encode = encode

    def __missing__(self, token: str) -> str:
        value = self._normalizer(token)
        if self._encode is not None:
            value = self._encode(value)
        self[token] = value
        return value
