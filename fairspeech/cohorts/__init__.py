"""Cohort discovery: find the speakers a model fails without declared attributes (issue 4).

Three scikit-learn style methods over a speaker-level frame (``fairspeech.data.speakers.speaker_table``):
``GeoClusteringTree`` (map rectangles), ``GeodemographicPartition`` (zip-level attribute values) and
``EmbeddingKMeans`` (voice clusters). ``run_discovery`` runs them and reports each through one shared
path (``report``): bottom-cohort WER gaps in sample and cross-fitted, shares, side-by-side table,
agreement, speaker assignments and figures.
"""

from fairspeech.cohorts.base import CannotDiscover, CohortDiscoverer
from fairspeech.cohorts.discovery import METHODS, DiscoveryResult, run_discovery
from fairspeech.cohorts.embedding import EmbeddingKMeans
from fairspeech.cohorts.geo_tree import GeoClusteringTree
from fairspeech.cohorts.geodemographic import GeodemographicPartition

__all__ = [
    "CannotDiscover",
    "CohortDiscoverer",
    "DiscoveryResult",
    "EmbeddingKMeans",
    "GeoClusteringTree",
    "GeodemographicPartition",
    "METHODS",
    "run_discovery",
]
