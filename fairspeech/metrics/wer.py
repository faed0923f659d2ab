"""Per-utterance alignment counts, computed once; every WER is then sum(errors) / sum(ref words).

The alignment is rapidfuzz's Levenshtein edit script over word sequences, the same one jiwer
uses, so hits/substitutions/deletions/insertions agree exactly with ``jiwer.process_words`` on the
same normalized text.

Speed: each distinct whitespace token is normalized once and mapped to one private character, so
an utterance becomes a short string and rapidfuzz aligns it on its C fast path; identical pairs
skip alignment. With the built-in normalization (token by token), a chunk is split into tokens,
deduplicated and re-joined by Arrow compute kernels, so Python touches each distinct token once and
each utterance only to align it; and only pairs whose counts the edit distance leaves open go
through the edit script (one edit, or only insertions/deletions to make up the length difference,
fix substitutions, deletions and insertions; their distance comes from rapidfuzz's C batch
``cpdist``). Large inputs are split over worker processes. There is no vocabulary limit: once a
run has more distinct words than there are code points from U+E000 (1,056,768), utterances become
lists of word numbers instead, which rapidfuzz aligns the same way, only slower.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import process as rf_process
from rapidfuzz.distance import Levenshtein
from tqdm.auto import tqdm

from fairspeech.data import schema
from fairspeech.metrics.normalize import TextNormalizer, TokenCache

COUNT_DTYPE = np.int32
_FIRST_CODE = 0xE000  # private-use area and above: one character per word for the first ~1.06M words
_CHAR_CODES = 0x10FFFF + 1 - _FIRST_CODE
_PARALLEL_MIN = 200_000  # below this, process start-up costs more than it saves
_CHUNK = 50_000


class _VocabularyFull(Exception):
    """More distinct words than single-character codes: the counter switches to word numbers."""


class _WordEncoder:
    """Normalized text -> one code per word, consistent across all utterances of a run.

    Called with ``wide=False``: a string of one character per word (raises :class:`_VocabularyFull`
    once the characters run out); with ``wide=True``: a tuple of word numbers, without limit.
    """

    def __init__(self):
        self.numbers: dict[str, int] = {}

    def number(self, word: str) -> int:
        number = self.numbers.get(word)
        if number is None:
            number = self.numbers[word] = len(self.numbers)
        return number

    def chars(self, normalized: str) -> str:
        out = []
        for word in normalized.split():
            number = self.number(word)
            if number >= _CHAR_CODES:
                raise _VocabularyFull
            out.append(chr(_FIRST_CODE + number))
        return "".join(out)

    def wide(self, normalized: str) -> tuple[int, ...]:
        return tuple(map(self.number, normalized.split()))


class _ChunkCounter:
    """Counts chunk after chunk in one process, reusing its word codes and token cache."""

    def __init__(self, normalizer: TextNormalizer):
        self.normalizer = normalizer
        self.encoder = _WordEncoder()
        self.wide = False
        self._set_encode(self.encoder.chars, "".join)

    def _set_encode(self, encode_words, join) -> None:
        normalizer = self.normalizer
        if normalizer.tokenwise:
            lookup = TokenCache(normalizer, encode_words).__getitem__
            self.encode = lambda text: join(map(lookup, text.split()))
        else:
            self.encode = lambda text: encode_words(normalizer(text))

    def _encode_pair(self, reference: str, hypothesis: str):
        """Both texts in one code space: strings of characters, or (past ~1.06M words) tuples of numbers."""
        if not self.wide:
            try:
                return self.encode(reference), self.encode(hypothesis)
            except _VocabularyFull:
                # Word numbers stay the same; only their spelling changes, from here on.
                self.wide = True
                self._set_encode(self.encoder.wide, lambda parts: tuple(n for part in parts for n in part))
        return self.encode(reference), self.encode(hypothesis)

    def __call__(self, references: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
        """(n, 5) array: hits, substitutions, deletions, insertions, reference words."""
        encode_pair = self._encode_pair
        out = np.zeros((len(references), 5), dtype=COUNT_DTYPE)
        for i in range(len(references)):
            ref, hyp = encode_pair(references[i], hypotheses[i])
            n_ref = len(ref)
            if ref == hyp:
                out[i, 0] = n_ref
                out[i, 4] = n_ref
                continue
            subs, dels, ins = edit_counts(ref, hyp)
            out[i] = (n_ref - subs - dels, subs, dels, ins, n_ref)
        return out

    def hit_masks(self, references: Sequence[str], hypotheses: Sequence[str]) -> list[np.ndarray]:
        """For each pair, one bool per normalized reference word: recognized (a hit) in the same alignment."""
        masks = []
        for reference, hypothesis in zip(references, hypotheses):
            ref, hyp = self._encode_pair(reference, hypothesis)
            mask = np.ones(len(ref), dtype=bool)
            if ref != hyp:
                for tag, src, _ in Levenshtein.editops(ref, hyp):
                    if tag != "insert":
                        mask[src] = False
            masks.append(mask)
        return masks


def edit_counts(ref, hyp) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of rapidfuzz's edit script from ``ref`` to ``hyp`` (sequences of tokens)."""
    subs = dels = ins = 0
    for tag, _, _ in Levenshtein.editops(ref, hyp):
        if tag == "replace":
            subs += 1
        elif tag == "delete":
            dels += 1
        else:
            ins += 1
    return subs, dels, ins


def _as_text_array(values, combine: bool = True) -> pa.Array | pa.ChunkedArray | None:
    """``values`` as one Arrow string array (None where they are not all text or missing); with
    ``combine=False`` a chunked column (a Parquet file's row groups) stays chunked, without a copy."""
    try:
        array = values
        if not isinstance(array, (pa.Array, pa.ChunkedArray)):
            array = pa.array(values if isinstance(values, (pd.Series, np.ndarray)) else list(values), from_pandas=True)
        if isinstance(array, pa.ChunkedArray) and (combine or array.num_chunks == 1):
            array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
        if pa.types.is_null(array.type):  # all missing
            array = pa.array([""] * len(array), type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return None
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return None
    return array.fill_null("") if array.null_count else array


class _ArrowCounter:
    """:class:`_ChunkCounter`'s counts for a token-by-token normalizer, with the per-token work in Arrow.

    A chunk's texts are split at ASCII whitespace by Arrow; each distinct raw token is normalized
    once (per process) and encoded as one character per word (a token can hold several words, or
    none, after normalization: ``normalizer(token).split()``, as the Python path's token cache); the
    codes are joined back per utterance by Arrow. Splitting at ASCII whitespace only is the same as
    splitting at all whitespace for such a normalizer: other whitespace inside a token splits it
    into the same words when the token is normalized. The counts equal the Python path's (tested).
    """

    def __init__(self, normalizer: TextNormalizer):
        self.normalizer = normalizer
        self.encoder = _WordEncoder()
        self.codes: dict[str, str] = {}  # raw token -> one character per normalized word
        self.fallback: _ChunkCounter | None = None

    def _code(self, token: str) -> str:
        code = self.codes.get(token)
        if code is None:
            code = self.codes[token] = self.encoder.chars(self.normalizer(token))
        return code

    def _encode(self, texts: pa.Array) -> pa.Array:
        tokens = pc.ascii_split_whitespace(texts)
        flat = tokens.flatten()
        encoded = pc.dictionary_encode(flat)
        codes = pa.array([self._code(t) for t in encoded.dictionary.to_pylist()], type=pa.string())
        offsets = tokens.offsets
        if len(offsets) and offsets[0].as_py() != 0:
            offsets = pc.subtract(offsets, offsets[0])
        return pc.binary_join(pa.ListArray.from_arrays(offsets, codes.take(encoded.indices)), "")

    def __call__(self, references, hypotheses) -> np.ndarray:
        if self.fallback is None:
            refs, hyps = _as_text_array(references), _as_text_array(hypotheses)
            if refs is not None and hyps is not None:
                try:
                    return _count_codes(self._encode(refs), self._encode(hyps))
                except _VocabularyFull:
                    pass
            self.fallback = _ChunkCounter(self.normalizer)  # from here on, this process counts in Python
        return self.fallback(_as_list(references), _as_list(hypotheses))


def _as_list(values) -> list:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return ["" if v is None else v for v in values.to_pylist()]
    return list(values)


def _count_codes(ref: pa.Array, hyp: pa.Array) -> np.ndarray:
    """(n, 5) counts from per-utterance code strings (one character per word), as :class:`_ChunkCounter`.

    With d the edit distance and delta = n_ref - n_hyp, deletions - insertions = delta and
    substitutions + deletions + insertions = d, so the counts are fixed unless d - |delta| >= 2;
    only those pairs go through the edit script (rapidfuzz's ``editops``, as jiwer).
    """
    n_ref = pc.utf8_length(ref).to_numpy(zero_copy_only=False).astype(np.int64)
    n_hyp = pc.utf8_length(hyp).to_numpy(zero_copy_only=False).astype(np.int64)
    out = np.zeros((len(ref), 5), dtype=COUNT_DTYPE)
    out[:, 0] = n_ref
    out[:, 4] = n_ref
    differ = np.flatnonzero(~pc.equal(ref, hyp).to_numpy(zero_copy_only=False))
    if not len(differ):
        return out
    index = pa.array(differ)
    refs, hyps = ref.take(index).to_pylist(), hyp.take(index).to_pylist()
    d = rf_process.cpdist(refs, hyps, scorer=Levenshtein.distance, workers=1).astype(np.int64)
    delta = n_ref[differ] - n_hyp[differ]
    ins = np.maximum(-delta, 0)  # fixed where d - |delta| < 2: no insertion-deletion pair
    for j in np.flatnonzero(d - np.abs(delta) >= 2).tolist():
        ins[j] = sum(1 for op in Levenshtein.editops(refs[j], hyps[j]) if op[0] == "insert")
    dels = ins + delta
    subs = d - dels - ins
    out[differ, 0] = n_ref[differ] - subs - dels
    out[differ, 1] = subs
    out[differ, 2] = dels
    out[differ, 3] = ins
    return out


def _counter(normalizer: TextNormalizer):
    return _ArrowCounter(normalizer) if normalizer.tokenwise else _ChunkCounter(normalizer)


# Inputs for forked workers: set before the pool starts, so children read them without pickling.
_SHARED: tuple = ()
_WORKER_COUNTER = None


def _count_shared_range(bounds: tuple[int, int]) -> np.ndarray:
    global _WORKER_COUNTER
    references, hypotheses, normalizer = _SHARED
    if _WORKER_COUNTER is None:
        _WORKER_COUNTER = _counter(normalizer)
    start, stop = bounds
    return _WORKER_COUNTER(_slice(references, start, stop), _slice(hypotheses, start, stop))


def _slice(values, start: int, stop: int):
    return values.slice(start, stop - start) if isinstance(values, (pa.Array, pa.ChunkedArray)) else values[start:stop]


def alignment_counts(
    references: Sequence[str],
    hypotheses: Sequence[str],
    normalizer: TextNormalizer | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Hits, substitutions, deletions, insertions, reference words and errors for each pair.

    Texts are normalized with ``normalizer`` (the default :class:`TextNormalizer` if None); pass
    ``fairspeech.metrics.normalize.IDENTITY`` for text that is already normalized. ``workers``
    defaults to the CPUs available (used only for large inputs, and only where fork exists).
    """
    global _SHARED
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    normalizer = TextNormalizer() if normalizer is None else normalizer
    n = len(references)
    if normalizer.tokenwise:  # Arrow arrays, shared by forked workers without copies; chunks are joined per slice
        arrays = _as_text_array(references, combine=False), _as_text_array(hypotheses, combine=False)
        if arrays[0] is not None and arrays[1] is not None:
            references, hypotheses = arrays
    if not isinstance(references, (pa.Array, pa.ChunkedArray)):
        references, hypotheses = _as_list(references), _as_list(hypotheses)
    workers = workers or len(os.sched_getaffinity(0))
    bounds = [(s, min(s + _CHUNK, n)) for s in range(0, n, _CHUNK)]
    bar = tqdm(total=n, desc="aligning", unit="utt", disable=not progress, mininterval=1.0)
    parts = []
    if workers > 1 and n >= _PARALLEL_MIN and "fork" in mp.get_all_start_methods():
        _SHARED = (references, hypotheses, normalizer)
        try:
            with mp.get_context("fork").Pool(workers) as pool:
                for part in pool.imap(_count_shared_range, bounds):
                    parts.append(part)
                    bar.update(len(part))
        finally:
            _SHARED = ()
    else:
        counter = _counter(normalizer)
        for start, stop in bounds:
            parts.append(counter(_slice(references, start, stop), _slice(hypotheses, start, stop)))
            bar.update(stop - start)
    bar.close()
    counts = np.concatenate(parts) if parts else np.zeros((0, 5), dtype=COUNT_DTYPE)
    frame = pd.DataFrame(
        counts, columns=[schema.HITS, schema.SUBSTITUTIONS, schema.DELETIONS, schema.INSERTIONS, schema.REF_WORDS]
    )
    frame[schema.ERRORS] = counts[:, 1:4].sum(axis=1, dtype=COUNT_DTYPE)
    return frame


def reference_hits(references: Sequence[str], hypotheses: Sequence[str], normalizer: TextNormalizer | None = None) -> list[np.ndarray]:
    """Which reference words each hypothesis got right (bool per normalized reference word), from the
    alignment :func:`alignment_counts` uses: ``mask.sum()`` equals its hits."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    return _ChunkCounter(TextNormalizer() if normalizer is None else normalizer).hit_masks(references, hypotheses)


def wer(errors, ref_words) -> float:
    """Corpus WER of summed counts (never a mean of per-utterance WERs). NaN where there are no words."""
    words = float(np.sum(ref_words))
    return float(np.sum(errors)) / words if words > 0 else float("nan")
