"""EmbeddingKMeans: clusters of speaker embeddings (no labels needed), ranked by WER.

Embeddings are L2-normalized first, so k-means works in cosine geometry (for unit vectors squared
Euclidean distance is 2 - 2 cos). Up to ``minibatch_above`` speakers the clustering is full
``KMeans`` (4 seeded initializations); above it ``MiniBatchKMeans`` (3 initializations, batches of
4096), which keeps 100k x 256 embeddings in seconds. Clustering runs with ``threads`` BLAS/OpenMP
threads (default 1): on a shared 2-core machine OpenMP's spin-waiting made 2 threads 5x slower than
1 (MiniBatchKMeans on 100k x 256: 7.3 s vs 1.5 s; KMeans on 1200 x 32: 1.8 s vs 0.03 s). Pass
``threads=None`` for the libraries' defaults on a dedicated many-core machine.

``k=None`` chooses k in ``k_range`` by the mean silhouette on a seeded subsample of
``silhouette_sample`` speakers (k-means refitted on the subsample for each k; highest silhouette
wins, ties to the smaller k). Silhouette rather than the elbow: it needs no knee heuristic and
favours well-separated clusters, which is what a cohort should be. The search stops at
k = speakers / (2 x min_speakers), so clusters average at least twice the size a cohort needs to be
ranked: on the demo corpus, k = 10 on 160 speakers left most clusters below min_speakers = 20, and
the bottom cohort of such a fit did not hold up on held-out speakers.

The clusters do not look at WER, so under the null (WER unrelated to the voice) speakers' (errors,
words) are exchangeable across clusters: ``p_value_`` is a max-statistic permutation test of the
best "cluster vs rest" gain over clusters with at least ``min_speakers`` speakers.

Embedding columns: ``columns`` if given, else those named ``emb_*``, else an ``embedding`` column
holding one vector (list/array) per speaker. ``fairspeech.verification.pretrained.speaker_embeddings_from_audio``
computes them from the manifest's audio with resemblyzer's bundled encoder (the audit side runs no model).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score

from fairspeech.cohorts.base import CannotDiscover, CohortDiscoverer, plain
from fairspeech.cohorts.search import PermutationTest, limit_threads, membership_gains, permutation_test
from fairspeech.data import schema
from fairspeech.metrics import bootstrap as bs

EMBEDDING_PREFIX = "emb_"
EMBEDDING_LIST_COLUMN = "embedding"


def embedding_columns(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> list[str]:
    """The embedding columns of a speaker frame: ``columns``, else the ``emb_*`` columns."""
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise KeyError(f"embedding columns {missing[:5]} are not in the speaker frame")
        return list(columns)
    return [c for c in frame.columns if str(c).startswith(EMBEDDING_PREFIX)]


def expand_embedding_lists(vectors: pd.Series) -> pd.DataFrame:
    """A column of per-row vectors (lists/arrays, None where absent) as ``emb_000...`` columns (NaN rows if absent)."""
    present = vectors.map(lambda v: v is not None and not (np.isscalar(v) and pd.isna(v)))
    lengths = {len(v) for v in vectors[present]}
    if len(lengths) > 1:
        raise ValueError(f"embedding vectors have different lengths {sorted(lengths)[:5]}")
    dim = lengths.pop() if lengths else 0
    matrix = np.full((len(vectors), dim), np.nan)
    if present.any():
        matrix[present.to_numpy()] = np.vstack([np.asarray(v, dtype=np.float64) for v in vectors[present]])
    return pd.DataFrame(matrix, index=vectors.index, columns=[f"{EMBEDDING_PREFIX}{i:03d}" for i in range(dim)])


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (rows of norm 0 must be excluded beforehand)."""
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


class EmbeddingKMeans(CohortDiscoverer):
    """k-means clusters of L2-normalized speaker embeddings ranked by WER; see the module docstring.

    Learned: ``labels_`` (cluster per speaker), ``cohorts_``, ``k_``, ``silhouette_`` (k -> score
    when k was chosen), ``model_`` (the fitted scikit-learn clusterer), ``p_value_``.
    """

    method = "embedding"

    def __init__(
        self,
        k: int | None = None,
        k_range: tuple[int, int] = (2, 10),
        columns: Sequence[str] | None = None,
        min_speakers: int = 20,
        minibatch_above: int = 20_000,
        silhouette_sample: int = 3000,
        n_permutations: int = 999,
        alpha: float = 0.05,
        seed: int = 0,
        threads: int | None = 1,
    ):
        self.k = k
        self.k_range = k_range
        self.columns = columns
        self.min_speakers = min_speakers
        self.minibatch_above = minibatch_above
        self.silhouette_sample = silhouette_sample
        self.n_permutations = n_permutations
        self.alpha = alpha
        self.seed = seed
        self.threads = threads

    # -- inputs -----------------------------------------------------------------------------
    def _matrix(self, speakers: pd.DataFrame) -> np.ndarray:
        columns = embedding_columns(speakers, self.columns)
        if columns:
            return speakers[columns].to_numpy(np.float32)
        if EMBEDDING_LIST_COLUMN in speakers.columns:
            return expand_embedding_lists(speakers[EMBEDDING_LIST_COLUMN]).to_numpy(np.float32)
        raise KeyError(f"no embeddings: give columns, or {EMBEDDING_PREFIX}* columns, or an {EMBEDDING_LIST_COLUMN!r} column")

    def _exclusion_reasons(self, speakers: pd.DataFrame) -> dict[str, np.ndarray]:
        matrix = self._matrix(speakers)
        missing = ~np.isfinite(matrix).all(axis=1) if matrix.shape[1] else np.ones(len(matrix), dtype=bool)
        zero = ~missing & (np.abs(np.nan_to_num(matrix)).sum(axis=1) == 0)
        return {"missing_embedding": missing, "zero_embedding": zero}

    def _unit_embeddings(self, speakers: pd.DataFrame) -> np.ndarray:
        return unit_rows(self._matrix(speakers))

    # -- fitting ----------------------------------------------------------------------------
    def _fit(self, speakers: pd.DataFrame) -> tuple[np.ndarray, dict[int, str]]:
        x = self._unit_embeddings(speakers)
        with limit_threads(self.threads):
            self.silhouette_ = {} if self.k is not None else self._silhouettes(x)
            self.k_ = int(self.k) if self.k is not None else max(self.silhouette_, key=lambda k: (self.silhouette_[k], -k))
            if self.k_ < 2 or self.k_ > len(x):
                raise CannotDiscover(f"embedding: k={self.k_} clusters for {len(x)} speakers")
            self.model_ = self._clusterer(self.k_, len(x)).fit(x)
        codes = self.model_.labels_.astype(np.int64)
        self.test_ = self._test(codes, speakers)
        return codes, {c: f"cluster {c}" for c in range(self.k_)}

    def _clusterer(self, k: int, n: int):
        if n > self.minibatch_above:
            return MiniBatchKMeans(n_clusters=k, n_init=3, batch_size=4096, random_state=self.seed)
        return KMeans(n_clusters=k, n_init=4, random_state=self.seed)

    def _silhouettes(self, x: np.ndarray) -> dict[int, float]:
        """Mean silhouette of k-means on a seeded subsample, for each k in k_range (inclusive)."""
        rng = bs.stream(self.seed, "embedding/silhouette-sample")
        sample = np.sort(rng.choice(len(x), size=min(len(x), self.silhouette_sample), replace=False))
        sub = x[sample]
        low, high = self.k_range
        high = min(high, len(sub) - 1, len(x) // (2 * max(self.min_speakers, 1)))
        scores = {}
        for k in range(max(2, low), high + 1):
            labels = KMeans(n_clusters=k, n_init=2, random_state=self.seed).fit_predict(sub)
            scores[k] = float(silhouette_score(sub, labels))
        if not scores:
            raise CannotDiscover(f"embedding: no k in {self.k_range} fits {len(sub)} speakers")
        return scores

    def _test(self, codes: np.ndarray, speakers: pd.DataFrame) -> PermutationTest | None:
        sizes = np.bincount(codes, minlength=self.k_)
        testable = np.flatnonzero((sizes >= self.min_speakers) & (sizes <= len(codes) - self.min_speakers))
        if not len(testable):
            return None
        membership = (codes[:, None] == testable[None, :]).astype(np.float64)
        return permutation_test(
            speakers[schema.ERRORS].to_numpy(np.float64),
            speakers[schema.REF_WORDS].to_numpy(np.float64),
            lambda e, w: membership_gains(e, w, membership).max(axis=1),
            self.n_permutations,
            bs.stream(self.seed, "embedding/max-statistic"),
            self.alpha,
        )

    def _predict(self, speakers: pd.DataFrame) -> np.ndarray:
        with limit_threads(self.threads):
            return self.model_.predict(self._unit_embeddings(speakers)).astype(np.int64)

    def _p_value(self) -> float:
        return np.nan if self.test_ is None else self.test_.p_value

    def details(self) -> dict:
        return {
            "k": self.k_,
            "k_chosen_by": "given" if self.k is not None else "silhouette",
            "silhouette": plain(self.silhouette_),
            "algorithm": type(self.model_).__name__,
            "inertia": float(self.model_.inertia_),
            "test": None if self.test_ is None else self.test_.to_dict(),
        }
