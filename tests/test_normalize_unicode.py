"""Normalization by Unicode category, per script family, and a word encoding without a vocabulary limit."""

import random

import jiwer
import pytest

from fairspeech.metrics import wer as wer_module
from fairspeech.metrics.normalize import IDENTITY, TextNormalizer
from fairspeech.metrics.wer import alignment_counts

NORM = TextNormalizer()


@pytest.mark.parametrize(
    "text,words",
    [
        ("हिन्दी भाषा", ["हिन्दी", "भाषा"]),  # Devanagari: vowel signs (Mc) and virama (Mn) inside the word
        ("தமிழ் மொழி", ["தமிழ்", "மொழி"]),  # Tamil: pulli (Mn) and vowel signs (Mc)
        ("שָׁלוֹם עוֹלָם", ["שָׁלוֹם", "עוֹלָם"]),  # Hebrew niqqud (Mn)
        ("ক্ষমা করো", ["ক্ষমা", "করো"]),  # Bengali
        ("Việt Nam", ["việt", "nam"]),  # Latin with stacked accents, decomposed or not
        ("Ελληνικά ΟΔΟΣ", ["ελληνικά", "οδος"]),  # Greek, final-sigma lowercasing
    ],
)
def test_combining_marks_stay_inside_their_word(text, words):
    assert NORM(text).split() == words
    assert NORM.normalize_many([text]) == [NORM(text)]


def test_decomposed_and_precomposed_forms_are_one_word():
    assert NORM("cafe\u0301 Vie\u0323\u0302t") == NORM("café Việt") == "café việt"
    assert alignment_counts(["cafe\u0301"], ["café"]).loc[0, "errors"] == 0


def test_turkish_dotted_capital_i_lowercases_to_one_word():
    assert NORM("İSTANBUL İzmir") == "istanbul izmir"
    assert alignment_counts(["İstanbul'a gittim"], ["istanbul'a gittim"]).loc[0, "errors"] == 0
    assert TextNormalizer(lowercase=False)("İstanbul") == "İstanbul"


@pytest.mark.parametrize("apostrophe", ["\u2019", "\u02bc", "\u2018", "\u0060", "\u00b4"])
def test_apostrophe_look_alikes_fold_to_ascii(apostrophe):
    assert NORM(f"Don{apostrophe}t") == "don't"
    assert alignment_counts([f"I don{apostrophe}t know"], ["i don't know"]).loc[0, "errors"] == 0
    # As a quotation mark it is punctuation, like the ASCII one.
    assert NORM(f"{apostrophe}quoted{apostrophe}") == "quoted"


@pytest.mark.parametrize(
    "raw,clean",
    [
        ("hel\u200blo", "hello"),  # zero-width space
        ("\ufeffhello", "hello"),  # BOM
        ("hyphen\u00adation", "hyphenation"),  # soft hyphen
        ("क्\u200dष", "क्ष"),  # ZWJ in Devanagari: same word with or without it
        ("न\u200cम", "नम"),  # ZWNJ
        ("\u200fשלום\u200e", "שלום"),  # bidi marks
    ],
)
def test_invisible_format_characters_neither_split_nor_change_a_word(raw, clean):
    assert NORM(raw) == clean
    assert alignment_counts([raw + " x"], [clean + " x"]).loc[0, "errors"] == 0


def test_a_combining_mark_without_a_base_goes_with_its_punctuation():
    assert NORM("! \u0301 x") == "x"
    assert NORM("«\u0301word»") == "word"


def test_nfkc_folds_compatibility_forms():
    assert NORM("ﬁne ＦＵＬＬ") == "fine full"


def test_latin_cyrillic_greek_cjk_unchanged_and_equal_to_jiwer():
    """The category rules change nothing for scripts without marks or look-alikes; counts stay jiwer's."""
    refs = ["привет как дела", "καλημέρα κόσμε", "日本語 の テスト", "the quick brown fox"]
    hyps = ["привет как", "καλημέρα κόσμος", "日本語 テスト", "the quick fox jumps"]
    assert NORM.normalize_many(refs) == refs
    counts = alignment_counts(refs, hyps)
    for i, (ref, hyp) in enumerate(zip(refs, hyps)):
        out = jiwer.process_words(ref, hyp)
        assert tuple(counts.iloc[i, :4]) == (out.hits, out.substitutions, out.deletions, out.insertions)


def test_bulk_normalization_equals_per_text_on_every_script_family():
    rng = random.Random(5)
    alphabet = list("aé'’ʼ‘`´ \t-.İI") + ["ि", "्", "क", "ழ", "ֹ", "ש", "\u200b", "\u200c", "\u200d", "\ufeff", "\u00ad", "\u0301", "!"]
    texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 25))) for _ in range(5000)]
    assert NORM.normalize_many(texts) == [NORM(t) for t in texts]


def test_more_distinct_words_than_code_points_match_jiwer(monkeypatch):
    """Past the single-character codes an utterance is aligned as word numbers, with the same counts."""
    monkeypatch.setattr(wer_module, "_CHAR_CODES", 7)
    rng = random.Random(6)
    vocab = [f"w{i}" for i in range(40)]
    refs = [" ".join(rng.choices(vocab, k=rng.randint(1, 12))) for _ in range(400)]
    hyps = [" ".join(rng.choices(vocab, k=rng.randint(0, 12))) if i % 3 else refs[i] for i, _ in enumerate(refs)]
    counts = alignment_counts(refs, hyps, IDENTITY, workers=1)
    for i, (ref, hyp) in enumerate(zip(refs, hyps)):
        out = jiwer.process_words(ref, hyp) if hyp else None
        expected = (out.hits, out.substitutions, out.deletions, out.insertions) if out else (0, 0, len(ref.split()), 0)
        assert tuple(counts.iloc[i, :4]) == expected, (ref, hyp)
    masks = wer_module.reference_hits(refs[:50], hyps[:50], IDENTITY)
    assert [int(m.sum()) for m in masks] == counts["hits"].iloc[:50].tolist()


def test_over_a_million_distinct_words_are_counted():
    """1.1M distinct words, more than the code points from U+E000 (this failed with chr() out of range)."""
    per, n_utt = 1000, 1100
    refs = [" ".join(f"w{u * per + j}" for j in range(per)) for u in range(n_utt)]
    hyps = list(refs)
    hyps[-1] = refs[-1].replace(f"w{n_utt * per - 1}", "other") + " w0"  # words numbered past the limit
    assert n_utt * per > wer_module._CHAR_CODES
    counts = alignment_counts(refs, hyps, IDENTITY, workers=1)
    assert counts.iloc[-1, :4].tolist() == [per - 1, 1, 0, 1]
    assert int(counts["errors"].sum()) == 2
