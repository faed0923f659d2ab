"""Out-of-core audits on Dask: score Parquet partitions on workers, reduce to (cohort, speaker) sums.

Each task reads one Parquet row group (only the needed columns), validates it with the same
``validate`` as the in-memory engine, aligns it, and returns sums per unit (speaker x the audited
attributes x speaker-level discovery fields) plus 64-bit hashes of its utterance ids. The client
folds results in as they arrive, so memory holds one partition per worker plus the (small)
speaker-level table; then the same cohort-table, bootstrap and discovery code runs on the sums.
Cohort WERs, intervals and p-values are identical to the in-memory engine on the same input:
both resample the same per-speaker sums.

On a cluster (or several processes of one machine) behind a running scheduler:

    dask scheduler                                          # prints tcp://HOST:8786
    dask worker tcp://HOST:8786 --nworkers 2 --nthreads 1   # on each machine: one thread per process
    fairspeech audit parts/ --engine dask --scheduler tcp://HOST:8786 --by accent,gender --out DIR

Every worker must reach the Parquet files at the same path (a shared or network file system) and
have fairspeech installed; tests/test_dask_engine.py runs two worker processes behind a scheduler.
Alignment holds the GIL, so one thread per worker process, as many processes as cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from fairspeech.audit import AuditResult, AuditSettings, check_by_columns, check_by_values, score_utterances, summarize
from fairspeech.data import schema
from fairspeech.data.manifest import validate
from fairspeech.data.readers import FILE_COL, LINE_COL, ManifestError, parquet_file, parquet_files
from fairspeech.metrics.normalize import TextNormalizer

_SUMMED = [*schema.COUNT_COLUMNS, schema.N_UTTERANCES]
# Speaker-level fields carried into the reduced table when present, for discovery.
_SPEAKER_FIELDS = (schema.LAT, schema.LON, schema.ZIP)


@dataclass(frozen=True)
class Partition:
    file: str
    row_group: int
    first_row: int  # 0-based index of the row group's first row in its file


def list_partitions(path: str | Path) -> list[Partition]:
    """Every row group of every Parquet file under ``path`` (a file or a directory), in a stable order."""
    partitions = []
    for file in parquet_files(Path(path)):
        metadata = parquet_file(file).metadata  # a file that is not Parquet: a ManifestError naming it
        first = 0
        for group in range(metadata.num_row_groups):
            partitions.append(Partition(str(file), group, first))
            first += metadata.row_group(group).num_rows
    return partitions


def _utt_hashes(utt_ids: pd.Series) -> np.ndarray:
    return pd.util.hash_pandas_object(utt_ids, index=False).to_numpy(np.uint64)


def score_partition(
    part: Partition, columns: list[str], keys: list[str], normalizer: TextNormalizer, skip_bad_rows: bool, drop_hashes: np.ndarray | None = None
) -> tuple[pd.DataFrame, dict[str, int], np.ndarray]:
    """Validated, aligned and reduced sums of one row group; its exclusions; its utt-id hashes."""
    file = pq.ParquetFile(part.file)
    available = set(file.schema_arrow.names)
    frame = file.read_row_group(part.row_group, columns=[c for c in columns if c in available]).to_pandas()
    frame[FILE_COL] = part.file
    frame[LINE_COL] = np.arange(part.first_row + 1, part.first_row + 1 + len(frame))  # 1-based row, as the Parquet reader
    exclusions: dict[str, int] = {}
    if drop_hashes is not None and len(drop_hashes):
        duplicate = np.isin(_utt_hashes(frame[schema.UTT_ID].astype(str)), drop_hashes)
        if duplicate.any():
            exclusions["duplicate utt_id"] = int(duplicate.sum())
            frame = frame[~duplicate]
    frame, found = validate(frame, part.file, skip_bad_rows=skip_bad_rows)
    for reason, n in found.items():
        exclusions[reason] = exclusions.get(reason, 0) + n
    scored = score_utterances(frame, normalizer, exclusions, workers=1, skip_bad_rows=skip_bad_rows)
    scored[schema.N_UTTERANCES] = 1
    units = scored.groupby(keys, dropna=False, sort=False)[_SUMMED].sum().reset_index()
    return units, exclusions, _utt_hashes(frame[schema.UTT_ID])


def _fold(total: pd.DataFrame | None, units: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    both = units if total is None else pd.concat([total, units], ignore_index=True)
    return both.groupby(keys, dropna=False, sort=False)[_SUMMED].sum().reset_index()


def _client(scheduler: str | None, workers: int):
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    # One thread per worker process: alignment is pure-Python work that holds the GIL.
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster), cluster


def _score_all(client, partitions, columns, keys, normalizer, skip_bad_rows, drop_hashes, progress):
    futures = client.map(
        score_partition, partitions, columns=columns, keys=keys, normalizer=normalizer,
        skip_bad_rows=skip_bad_rows, drop_hashes=drop_hashes, pure=False,
    )
    from distributed import as_completed

    total, exclusions, hashes = None, {}, []
    folded_rows = 0
    pending: list[pd.DataFrame] = []
    with tqdm(total=len(futures), desc="partitions", unit="part", disable=not progress) as bar:
        for future in as_completed(futures):
            units, found, part_hashes = future.result()
            future.release()
            for reason, n in found.items():
                exclusions[reason] = exclusions.get(reason, 0) + n
            hashes.append(part_hashes)
            pending.append(units)
            folded_rows += len(units)
            # Fold in batches: concat+groupby per batch, not per partition, keeps the client fast.
            if folded_rows > 2_000_000:
                total = _fold(total, pd.concat(pending, ignore_index=True), keys)
                pending, folded_rows = [], 0
            bar.update(1)
    if pending:
        total = _fold(total, pd.concat(pending, ignore_index=True), keys)
    return total, exclusions, np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)


def run_audit_dask(
    path: str | Path,
    by: str | Sequence[str] | None = None,
    *,
    scheduler: str | None = None,
    zip_attributes: pd.DataFrame | None = None,
    embeddings: pd.DataFrame | None = None,
    skip_bad_rows: bool = False,
    progress: bool = True,
    **options,
) -> AuditResult:
    """The audit of a partitioned Parquet manifest, out of core; see the module docstring.

    ``options`` are :class:`~fairspeech.audit.AuditSettings` fields, as for ``run_audit``;
    ``workers`` (default 2) sizes the local cluster when no ``scheduler`` address is given.
    """
    settings = AuditSettings.create(by, **options)
    workers = settings.workers or 2
    partitions = list_partitions(path)
    available = pq.ParquetFile(partitions[0].file).schema_arrow.names
    check_by_columns(settings, available, str(path))
    attributes = sorted({c for spec in settings.by for c in spec})
    speaker_fields = [c for c in _SPEAKER_FIELDS if c in available and settings.discover]
    keys = [schema.SPEAKER_ID, *dict.fromkeys(attributes + speaker_fields)]
    columns = [schema.UTT_ID, schema.SPEAKER_ID, schema.REFERENCE, schema.HYPOTHESIS, *keys[1:]]

    start = time.perf_counter()
    client, cluster = _client(scheduler, workers)
    try:
        units, exclusions, hashes = _score_all(client, partitions, columns, keys, settings.normalizer, skip_bad_rows, None, progress)
        unique, counts = np.unique(hashes, return_counts=True)
        duplicated = unique[counts > 1]
        if len(duplicated):
            if not skip_bad_rows:
                raise _locate_duplicate(partitions, duplicated)
            # Rare path: rescore without every row of a duplicated id (either could be the right one).
            units, exclusions, _ = _score_all(client, partitions, columns, keys, settings.normalizer, skip_bad_rows, duplicated, progress)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    scoring_s = time.perf_counter() - start
    check_by_values(settings, units, str(path))
    overall, tables, discovery, timings = summarize(units, settings, zip_attributes=zip_attributes, embeddings=embeddings, progress=progress)
    source = {"path": str(path), "format": "parquet", "engine": "dask", "partitions": len(partitions), "exclusions": exclusions}
    return AuditResult(source, settings, None, overall, tables, discovery, {"scoring": scoring_s, **timings})


def _locate_duplicate(partitions: list[Partition], duplicated: np.ndarray) -> ManifestError:
    """An error naming the file and rows of the first duplicated utterance id."""
    where = []
    for part in partitions:
        ids = pq.ParquetFile(part.file).read_row_group(part.row_group, columns=[schema.UTT_ID]).column(0).to_pandas().astype(str)
        hits = np.flatnonzero(np.isin(_utt_hashes(ids), duplicated[:1]))
        where += [(part.file, part.first_row + 1 + int(i), ids.iloc[int(i)]) for i in hits]
        if len(where) >= 2:
            break
    (file, row, utt), (file2, row2, _) = where[0], where[-1]
    return ManifestError(
        f"duplicate utt_id: {utt!r} (also at {file2} row {row2}); {len(duplicated)} ids are duplicated. "
        "Fix them, or pass --skip-bad-rows to exclude and count them.",
        file, row, schema.UTT_ID,
    )
