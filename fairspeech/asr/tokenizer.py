"""Tokenizers for CTC (id 0 is the blank): characters, or byte-pair-encoded subwords.

* :class:`CharTokenizer`: space, apostrophe, letters (and any other character of the training text).
* :class:`BPETokenizer`: subwords learned by byte-pair merges over the training words (Sennrich et
  al.), with ``▁`` opening each word as in sentencepiece. Fewer tokens per second of speech than
  characters, which leaves CTC room for blanks at a 40 ms frame rate.

Text is normalized with the audit's own :class:`TextNormalizer` before encoding, so what the model
learns to write is exactly what the WER engine compares.
"""

from __future__ import annotations

import json
from pathlib import Path
from collections import Counter
from typing import Iterable, Sequence

from fairspeech.metrics.normalize import TextNormalizer
from fairspeech.utils import io

BLANK = "<blank>"
DEFAULT_CHARACTERS = " '" + "abcdefghijklmnopqrstuvwxyz"


class CharTokenizer:
    def __init__(self, characters: str = DEFAULT_CHARACTERS, normalizer: TextNormalizer | None = None):
        if len(set(characters)) != len(characters):
            raise ValueError("characters must be distinct")
        if " " not in characters:
            raise ValueError("the character set must contain the space (the word separator)")
        self.characters = characters
        self.normalizer = normalizer or TextNormalizer()
        self.ids = {c: i + 1 for i, c in enumerate(characters)}

    blank_id = 0

    @property
    def vocab_size(self) -> int:
        return len(self.characters) + 1

    @classmethod
    def from_texts(cls, texts: Iterable[str], normalizer: TextNormalizer | None = None) -> "CharTokenizer":
        """The default characters plus any other character the normalized texts contain (sorted)."""
        normalizer = normalizer or TextNormalizer()
        seen = set()
        for text in texts:
            seen.update(normalizer(text))
        extra = "".join(sorted(seen - set(DEFAULT_CHARACTERS)))
        return cls(DEFAULT_CHARACTERS + extra, normalizer)

    def normalize(self, text: str) -> str:
        return self.normalizer(text)

    def encode(self, text: str) -> list[int]:
        """Normalized text -> ids. A character outside the vocabulary is an error, never dropped silently."""
        normalized = self.normalizer(text)
        try:
            return [self.ids[c] for c in normalized]
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} of {text!r} is not in the tokenizer's vocabulary") from None

    def decode(self, ids: Sequence[int]) -> str:
        """Ids (no blanks) -> text, with runs of spaces collapsed and ends stripped."""
        text = "".join(self.characters[i - 1] for i in ids if i != self.blank_id)
        return " ".join(text.split())

    def to_dict(self) -> dict:
        return {"type": "char", "characters": self.characters, "normalizer": self.normalizer.describe()}

    def save(self, path: str | Path) -> None:
        io.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "CharTokenizer":
        return tokenizer_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


WORD_START = "\u2581"  # "▁", sentencepiece's word-start mark


class BPETokenizer:
    """Subword pieces from ``merges`` (pairs of pieces, in the order they were learned)."""

    blank_id = 0

    def __init__(self, pieces: Sequence[str], merges: Sequence[tuple[str, str]], normalizer: TextNormalizer | None = None):
        self.pieces = list(pieces)
        self.merges = [tuple(m) for m in merges]
        self.normalizer = normalizer or TextNormalizer()
        self.ids = {p: i + 1 for i, p in enumerate(self.pieces)}
        self.ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.pieces) + 1

    @classmethod
    def train(cls, texts: Iterable[str], merges: int, normalizer: TextNormalizer | None = None) -> "BPETokenizer":
        """Learn up to ``merges`` merges, most frequent adjacent pair first (ties: first seen)."""
        normalizer = normalizer or TextNormalizer()
        words = Counter(w for text in texts for w in normalizer(text).split())
        spelled = {w: [WORD_START, *w] for w in words}
        pieces = sorted({c for symbols in spelled.values() for c in symbols})
        learned: list[tuple[str, str]] = []
        for _ in range(merges):
            pairs: Counter = Counter()
            for word, symbols in spelled.items():
                for pair in zip(symbols, symbols[1:]):
                    pairs[pair] += words[word]
            if not pairs:
                break
            best = max(pairs.items(), key=lambda item: item[1])[0]
            learned.append(best)
            pieces.append(best[0] + best[1])
            spelled = {w: _merge(symbols, best) for w, symbols in spelled.items()}
        return cls(pieces, learned, normalizer)

    def normalize(self, text: str) -> str:
        return self.normalizer(text)

    def _encode_word(self, word: str) -> list[int]:
        if word not in self._cache:
            symbols = [WORD_START, *word]
            while len(symbols) > 1:
                ranked = [(self.ranks.get(pair, len(self.ranks)), pair) for pair in zip(symbols, symbols[1:])]
                rank, pair = min(ranked, key=lambda item: item[0])
                if rank == len(self.ranks):
                    break
                symbols = _merge(symbols, pair)
            try:
                self._cache[word] = [self.ids[s] for s in symbols]
            except KeyError as err:
                raise ValueError(f"character {err.args[0]!r} of {word!r} is not in the tokenizer's vocabulary") from None
        return self._cache[word]

    def encode(self, text: str) -> list[int]:
        return [i for word in self.normalizer(text).split() for i in self._encode_word(word)]

    def decode(self, ids: Sequence[int]) -> str:
        text = "".join(self.pieces[i - 1] for i in ids if i != self.blank_id)
        return " ".join(text.replace(WORD_START, " ").split())

    def to_dict(self) -> dict:
        return {"type": "bpe", "pieces": self.pieces, "merges": [list(m) for m in self.merges], "normalizer": self.normalizer.describe()}

    def save(self, path: str | Path) -> None:
        io.write_json(path, self.to_dict())


def _merge(symbols: list[str], pair: tuple[str, str]) -> list[str]:
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def tokenizer_from_dict(data: dict):
    settings = data.get("normalizer", {})
    if settings.get("transforms"):
        raise ValueError("tokenizers with custom normalizer transforms cannot be reloaded")
    normalizer = TextNormalizer(**{k: settings[k] for k in ("lowercase", "remove_punctuation", "unicode_nfkc") if k in settings})
    if data["type"] == "char":
        return CharTokenizer(data["characters"], normalizer)
    if data["type"] == "bpe":
        return BPETokenizer(data["pieces"], data["merges"], normalizer)
    raise ValueError(f"unknown tokenizer type {data['type']!r}")


def train_tokenizer(kind: str, texts: Sequence[str], bpe_merges: int = 200):
    """The tokenizer a recipe asks for, built from the training references."""
    if kind == "char":
        return CharTokenizer.from_texts(texts)
    if kind == "bpe":
        return BPETokenizer.train(texts, bpe_merges)
    raise ValueError(f"tokenizer must be 'char' or 'bpe', not {kind!r}")
