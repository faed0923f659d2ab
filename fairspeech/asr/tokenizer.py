"""Character tokenizer for CTC: id 0 is the blank, then space, apostrophe, and letters.

Text is normalized with the audit's own :class:`TextNormalizer` before encoding, so what the model
learns to write is exactly what the WER engine compares.
"""

from __future__ import annotations

import json
from pathlib import Path
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

    def save(self, path: str | Path) -> None:
        io.write_json(path, {"type": "char", "characters": self.characters, "normalizer": self.normalizer.describe()})

    @classmethod
    def load(cls, path: str | Path) -> "CharTokenizer":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        settings = data.get("normalizer", {})
        if settings.get("transforms"):
            raise ValueError("tokenizers with custom normalizer transforms cannot be reloaded")
        normalizer = TextNormalizer(**{k: settings[k] for k in ("lowercase", "remove_punctuation", "unicode_nfkc") if k in settings})
        return cls(data["characters"], normalizer)
