import random

import jiwer
import pytest

from fairspeech.metrics import wer as wer_module
from fairspeech.metrics.normalize import IDENTITY, TextNormalizer, regex_transform
from fairspeech.metrics.wer import alignment_counts


def jiwer_counts(ref: str, hyp: str) -> tuple[int, int, int, int]:
    out = jiwer.process_words(ref, hyp)
    return out.hits, out.substitutions, out.deletions, out.insertions


def random_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(30)] + ["é", "naïve", "日本", "straße", "don't"]
    refs, hyps = [], []
    for _ in range(n):
        ref = rng.choices(vocab, k=rng.randint(1, 15))
        hyp = list(ref)
        for _ in range(rng.randint(0, 6)):
            op = rng.random()
            if op < 0.4 and hyp:
                hyp[rng.randrange(len(hyp))] = rng.choice(vocab)
            elif op < 0.7 and hyp:
                del hyp[rng.randrange(len(hyp))]
            else:
                hyp.insert(rng.randint(0, len(hyp)), rng.choice(vocab))
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
    return refs, hyps


def test_counts_agree_exactly_with_jiwer_on_random_pairs():
    refs, hyps = random_pairs(3000, seed=1)
    counts = alignment_counts(refs, hyps, IDENTITY)
    for i, (ref, hyp) in enumerate(zip(refs, hyps)):
        assert tuple(counts.iloc[i, :4]) == jiwer_counts(ref, hyp), (ref, hyp)
    assert (counts["ref_words"] == counts[["hits", "substitutions", "deletions"]].sum(axis=1)).all()
    assert (counts["errors"] == counts[["substitutions", "deletions", "insertions"]].sum(axis=1)).all()


@pytest.mark.parametrize(
    "ref,hyp",
    [
        ("hello world", ""),  # empty hypothesis: all deletions
        ("a b", "a b c d e"),  # insertions only
        ("x", "y z w"),
        ("naïve café 日本 語", "naive café 日本語"),  # unicode words
        ("one two three", "three two one"),
        ("a a a a", "a"),
    ],
)
def test_edge_cases_agree_with_jiwer(ref, hyp):
    counts = alignment_counts([ref], [hyp], IDENTITY)
    assert tuple(counts.iloc[0, :4]) == jiwer_counts(ref, hyp)


def test_corpus_wer_is_summed_errors_over_summed_words_like_jiwer():
    refs, hyps = random_pairs(500, seed=2)
    counts = alignment_counts(refs, hyps, IDENTITY)
    assert wer_module.wer(counts["errors"], counts["ref_words"]) == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)


def test_normalization_is_applied_to_both_sides():
    counts = alignment_counts(["Hello, World!  It's ME."], ["hello world it's me"])
    assert counts.loc[0, "errors"] == 0 and counts.loc[0, "ref_words"] == 4
    # Punctuation off: the comma makes "Hello," a different word.
    counts = alignment_counts(["Hello, world"], ["hello world"], TextNormalizer(remove_punctuation=False))
    assert counts.loc[0, "substitutions"] == 1


def test_default_normalization_documented_behaviour():
    norm = TextNormalizer()
    assert norm("  Don't STOP—me now! ") == "don't stop me now"
    assert norm("'quoted' dogs' ") == "quoted dogs"
    assert norm("ﬁne Straße") == "fine straße"  # NFKC folds the ligature
    assert norm("snake_case") == "snake case"


def test_bulk_normalization_equals_per_text_normalization():
    rng = random.Random(3)
    alphabet = list("abcAB CÉé'’-,.!?_ \t\u00a0ﬁΣΟ\ufdfa\u3000") + ["don't", "\u0301", "ΟΔΟΣ"]
    texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 30))) for _ in range(5000)]
    norm = TextNormalizer()
    assert norm.normalize_many(texts) == [norm(t) for t in texts]


def test_user_transforms_run_after_defaults():
    norm = TextNormalizer(transforms=(regex_transform(r"\bok\b", "okay"),))
    assert norm("OK, fine") == "okay fine"
    counts = alignment_counts(["okay fine"], ["OK fine"], norm)
    assert counts.loc[0, "errors"] == 0


def test_parallel_path_matches_serial(monkeypatch):
    refs, hyps = random_pairs(4000, seed=4)
    serial = alignment_counts(refs, hyps, workers=1)
    monkeypatch.setattr(wer_module, "_PARALLEL_MIN", 100)
    monkeypatch.setattr(wer_module, "_CHUNK", 700)
    parallel = alignment_counts(refs, hyps, workers=2)
    assert serial.equals(parallel)
