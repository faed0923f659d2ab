"""Build the demo corpus: seeded metadata, then audio, pocketsphinx hypotheses and resemblyzer embeddings.

    python -m fairspeech.demo --config recipes/demo_corpus/config.toml [--speakers 40 ...]
    python -m fairspeech.demo --ensure-audio        # audio for the shipped manifest only

Two halves:

* :func:`build_metadata` is pure and cheap (a few seconds): speakers, homes, splits, sentences and
  every generating parameter from the seed. The shipped manifest must equal it column for column.
* :func:`build_corpus` renders, recognizes and embeds every utterance over ``workers`` processes. Each
  finished utterance leaves ``<utt_id>.json`` next to its wav (written atomically) holding its
  hypothesis, duration, embedding and a fingerprint of its generating parameters; a rerun skips
  utterances whose fingerprint matches, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import multiprocessing
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import pandas as pd

from fairspeech.asr.pocketsphinx_backend import FAST_SEARCH
from fairspeech.data import schema
from fairspeech.demo import sentences as sent
from fairspeech.demo import speakers as spk
from fairspeech.demo import synth
from fairspeech.utils.io import atomic_path, write_json, write_text

# Bump when the audio pipeline changes in a way that invalidates cached utterances.
RENDER_VERSION = 1

MANIFEST_NAME = "manifest.parquet"
SPEAKER_EMBEDDINGS_NAME = "speaker_embeddings.parquet"
UTTERANCE_EMBEDDINGS_NAME = "utterance_embeddings.npy"
ZIP_ATTRIBUTES_NAME = "zip_attributes_SYNTHETIC.csv"
BUILD_INFO_NAME = "build_info.json"

# pocketsphinx search settings of the build (recorded in build_info.json; a change re-recognizes).
ASR_OPTIONS = dict(FAST_SEARCH)
# Columns measured from the audio; every other manifest column is metadata from the seed.
AUDIO_DERIVED_COLUMNS = (schema.HYPOTHESIS, schema.DURATION)
# What a rendered wav depends on: a change in any of these re-renders the utterance.
RENDER_COLUMNS = (
    "voice_family", "voice", schema.REFERENCE, "pitch_cents", "tempo", "formant_shift", "gain_db",
    "condition", "snr_db", "noise_color", "noise_seed", "reverberance", "room_scale",
)
MANIFEST_COLUMNS = (
    schema.UTT_ID, schema.SPEAKER_ID, schema.REFERENCE, schema.HYPOTHESIS, schema.AUDIO_PATH,
    schema.DURATION, schema.LAT, schema.LON, schema.ZIP, schema.GENDER, schema.AGE, schema.ACCENT,
    schema.SPLIT, "voice_family", "voice", "first_language", "state", "city", "sentence_id",
    "sentence_template", "pitch_cents", "tempo", "formant_shift", "gain_db", "condition", "snr_db",
    "noise_color", "noise_seed", "reverberance", "room_scale",
)


class TomlConfig:
    """A frozen dataclass of settings read from a TOML file, command-line overrides on top."""

    @classmethod
    def from_toml(cls, path: str | Path, **overrides):
        """The settings in ``path``, checked (:func:`fairspeech.config.load`), then the ``overrides`` that are not None."""
        from fairspeech.config import load

        return load(cls, path, **overrides)


@dataclass(frozen=True)
class DemoConfig(TomlConfig):
    seed: int = 2024
    n_speakers: int = 320
    utterances_per_speaker: int = 9
    n_sentences: int = 1200
    workers: int = 2
    audio_dir: str = "data/demo_audio"
    output_dir: str = "data_manifests/demo"
    benchmark_path: str = "benchmarks/results/demo_corpus.json"
    progress: bool = True


@dataclass
class DemoMetadata:
    manifest: pd.DataFrame  # one row per utterance; hypothesis and duration are left empty
    zip_attributes: pd.DataFrame  # the SYNTHETIC zip-level table


# ----------------------------------------------------------------------------------------------------
# Metadata (pure, seeded)


def build_metadata(seed: int, n_speakers: int, utterances_per_speaker: int, n_sentences: int) -> DemoMetadata:
    """Every speaker, sentence, split and generating parameter of the corpus, from the seed alone."""
    zips = spk.zip_attributes(seed)
    speakers = spk.sample_speakers(seed, n_speakers, zips)
    splits = spk.assign_splits(seed, speakers)
    pool = sent.sentence_pool(seed, n_sentences, sent.speakable_cities(zips))
    assigned = sent.assign_sentences(seed, n_speakers * utterances_per_speaker, pool)
    zip_rows = zips.set_index("zip")
    rows = []
    for i, speaker in enumerate(speakers):
        home = zip_rows.loc[speaker.zip]
        for j in range(utterances_per_speaker):
            sentence = assigned[i * utterances_per_speaker + j]
            condition = spk.sample_condition(seed, i, j, home)
            rows.append(_utterance_row(speaker, j, home, splits[speaker.speaker_id], sentence, condition))
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    return DemoMetadata(manifest.sort_values(schema.UTT_ID, ignore_index=True), zips)


def _utterance_row(speaker: spk.Speaker, j: int, home, split: str, sentence: sent.Sentence,
                   condition: spk.Condition) -> dict:
    utt_id = f"{speaker.speaker_id}-u{j:02d}"
    voice = speaker.voice
    return {
        schema.UTT_ID: utt_id,
        schema.SPEAKER_ID: speaker.speaker_id,
        schema.REFERENCE: sentence.text,
        schema.HYPOTHESIS: None,
        schema.AUDIO_PATH: f"{speaker.speaker_id}/{utt_id}.wav",
        schema.DURATION: math.nan,
        schema.LAT: float(home["lat"]),
        schema.LON: float(home["lon"]),
        schema.ZIP: speaker.zip,
        schema.GENDER: voice.gender,
        schema.AGE: speaker.age,
        schema.ACCENT: voice.accent,
        schema.SPLIT: split,
        "voice_family": voice.family,
        "voice": voice.name,
        "first_language": voice.language,
        "state": home["state"],
        "city": home["city"],
        "sentence_id": sentence.index,
        "sentence_template": sentence.template,
        "pitch_cents": speaker.pitch_cents,
        "tempo": speaker.tempo,
        "formant_shift": speaker.formant_shift,
        "gain_db": speaker.gain_db,
        "condition": condition.name,
        "snr_db": condition.snr_db,
        "noise_color": condition.noise_color,
        "noise_seed": condition.noise_seed,
        "reverberance": condition.reverberance,
        "room_scale": condition.room_scale,
    }


def metadata_columns(frame: pd.DataFrame) -> list[str]:
    """Columns of a manifest that come from the seed (all but the audio-derived ones)."""
    return [c for c in frame.columns if c not in AUDIO_DERIVED_COLUMNS]


# ----------------------------------------------------------------------------------------------------
# Per-utterance work: render, recognize, embed, cache


def render_fingerprint(row: dict) -> str:
    """Hash of everything a wav depends on, so a cached utterance is reused only if still valid."""
    values = {c: _json_value(row[c]) for c in RENDER_COLUMNS}
    values["render_version"] = RENDER_VERSION
    return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()


def _json_value(value):
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _paths(row: dict, audio_dir: Path) -> tuple[Path, Path]:
    wav = audio_dir / row[schema.AUDIO_PATH]
    return wav, wav.with_suffix(".json")


def _read_sidecar(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _ensure_wav(row: dict, audio_dir: Path) -> dict:
    """Render the utterance unless its wav exists with a matching fingerprint; returns its sidecar."""
    wav, sidecar_path = _paths(row, audio_dir)
    fingerprint = render_fingerprint(row)
    sidecar = _read_sidecar(sidecar_path)
    if wav.exists() and sidecar.get("fingerprint") == fingerprint:
        return sidecar
    duration = synth.render(row, wav)
    sidecar = {"utt_id": row[schema.UTT_ID], "fingerprint": fingerprint, "duration": round(duration, 4)}
    write_json(sidecar_path, sidecar)
    return sidecar


_worker: dict = {}


def _init_worker(models: tuple[str, ...]) -> None:
    """Per-process models ("recognizer", "encoder"), loaded once; the encoder on one torch thread
    (2.4x faster than two for it)."""
    if "recognizer" in models:
        from fairspeech.asr.pocketsphinx_backend import PocketSphinxRecognizer

        _worker["recognizer"] = PocketSphinxRecognizer(**ASR_OPTIONS)
    if "encoder" in models:
        from fairspeech.verification.pretrained import PretrainedSpeakerEncoder

        _worker["encoder"] = PretrainedSpeakerEncoder(torch_threads=1)


def _process(task: tuple[dict, str]) -> dict:
    """Render (if needed), recognize and embed one utterance; the result is cached in its sidecar."""
    row, audio_dir = task
    audio_dir = Path(audio_dir)
    sidecar = _ensure_wav(row, audio_dir)
    if "embedding" in sidecar and sidecar.get("asr_options") == ASR_OPTIONS:
        return sidecar
    wav, sidecar_path = _paths(row, audio_dir)
    sidecar["hypothesis"] = _worker["recognizer"].transcribe(wav)
    sidecar["asr_options"] = ASR_OPTIONS
    sidecar["embedding"] = [float(x) for x in _worker["encoder"].embed_file(wav)]
    write_json(sidecar_path, sidecar)
    return sidecar


def _render_only(task: tuple[dict, str]) -> dict:
    row, audio_dir = task
    return _ensure_wav(row, Path(audio_dir))


def _run_parallel(function, rows: list[dict], audio_dir: Path, workers: int, models: tuple[str, ...],
                  progress: bool, desc: str) -> dict[str, dict]:
    tasks = [(row, str(audio_dir)) for row in rows]
    results: dict[str, dict] = {}
    bar = _progress_bar(len(tasks), progress, desc)
    if workers <= 1:
        _init_worker(models)
        for task in tasks:
            results[task[0][schema.UTT_ID]] = function(task)
            bar.update()
    else:
        # spawn: workers start clean (no copied decoder or torch state from the parent).
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_init_worker, initargs=(models,)) as pool:
            for result in pool.imap_unordered(function, tasks, chunksize=1):
                results[result["utt_id"]] = result
                bar.update()
    bar.close()
    return results


def _progress_bar(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="utt", disable=not enabled, smoothing=0.05)


def ensure_audio(manifest: pd.DataFrame, audio_dir: str | Path = "data/demo_audio", workers: int = 2,
                 progress: bool = True) -> Path:
    """Render every wav of ``manifest`` (e.g. the shipped one) that is missing or stale; returns audio_dir.

    Audio is bit-for-bit the build's where flite, festival, espeak-ng and sox are the same versions
    (``build_info.json`` records them); all randomness comes from the manifest's own columns.
    """
    audio_dir = Path(audio_dir)
    rows = manifest.to_dict("records")
    synth.require_tools({spk.VOICES_BY_KEY[f"{r['voice_family']}/{r['voice']}"] for r in rows})
    _run_parallel(_render_only, rows, audio_dir, workers, models=(), progress=progress, desc="audio")
    return audio_dir


def load_shipped_manifest(output_dir: str | Path = "data_manifests/demo") -> pd.DataFrame:
    return pd.read_parquet(Path(output_dir) / MANIFEST_NAME)


# ----------------------------------------------------------------------------------------------------
# The whole build


def build_corpus(config: DemoConfig) -> dict:
    """Metadata, audio, hypotheses, embeddings; writes the output dir and the benchmark; returns the summary."""
    started = time.perf_counter()
    meta = build_metadata(config.seed, config.n_speakers, config.utterances_per_speaker, config.n_sentences)
    rows = meta.manifest.to_dict("records")
    synth.require_tools({spk.VOICES_BY_KEY[f"{r['voice_family']}/{r['voice']}"] for r in rows})
    audio_dir = Path(config.audio_dir)
    cached = sum(_is_finished(row, audio_dir) for row in rows)
    results = _run_parallel(_process, rows, audio_dir, config.workers, models=("recognizer", "encoder"),
                            progress=config.progress, desc="demo corpus")
    manifest, utterance_embeddings = _attach_results(meta.manifest, results)
    summary = summarize(manifest)
    wall = time.perf_counter() - started
    _write_outputs(config, manifest, utterance_embeddings, meta.zip_attributes, summary, wall)
    benchmark = {
        "benchmark": "demo_corpus",
        "wall_seconds": round(wall, 1),
        "utterances": len(manifest),
        "utterances_cached_at_start": cached,
        "speakers": int(manifest[schema.SPEAKER_ID].nunique()),
        "workers": config.workers,
        "audio_seconds": round(float(manifest[schema.DURATION].sum()), 1),
        "machine": _machine(),
        **summary,
    }
    write_json(config.benchmark_path, benchmark)
    return benchmark


def _is_finished(row: dict, audio_dir: Path) -> bool:
    wav, sidecar_path = _paths(row, audio_dir)
    sidecar = _read_sidecar(sidecar_path)
    return (wav.exists() and sidecar.get("fingerprint") == render_fingerprint(row) and "embedding" in sidecar
            and sidecar.get("asr_options") == ASR_OPTIONS)


def _attach_results(manifest: pd.DataFrame, results: dict[str, dict]) -> tuple[pd.DataFrame, np.ndarray]:
    manifest = manifest.copy()
    ordered = [results[u] for u in manifest[schema.UTT_ID]]
    manifest[schema.HYPOTHESIS] = [r["hypothesis"] for r in ordered]
    manifest[schema.DURATION] = [float(r["duration"]) for r in ordered]
    embeddings = np.asarray([r["embedding"] for r in ordered], dtype=np.float32)
    return manifest, embeddings


def wer_table(manifest: pd.DataFrame, by: str) -> list[dict]:
    """Corpus WER (jiwer, on the lowercase references and hypotheses) per value of ``by``."""
    import jiwer

    table = []
    for value, group in manifest.groupby(by, sort=True):
        table.append({
            by: value,
            "wer": round(float(jiwer.wer(list(group[schema.REFERENCE]), list(group[schema.HYPOTHESIS]))), 4),
            "utterances": len(group),
            "speakers": int(group[schema.SPEAKER_ID].nunique()),
        })
    return table


def summarize(manifest: pd.DataFrame) -> dict:
    import jiwer

    return {
        "wer_overall": round(float(jiwer.wer(list(manifest[schema.REFERENCE]), list(manifest[schema.HYPOTHESIS]))), 4),
        **{f"wer_by_{by}": wer_table(manifest, by)
           for by in ("voice_family", "condition", schema.ACCENT, "voice", schema.GENDER, schema.AGE, schema.SPLIT)},
    }


def _write_outputs(config: DemoConfig, manifest: pd.DataFrame, utterance_embeddings: np.ndarray,
                   zip_attributes: pd.DataFrame, summary: dict, wall: float) -> None:
    from fairspeech.verification.pretrained import speaker_means

    out = Path(config.output_dir)
    with atomic_path(out / MANIFEST_NAME) as tmp:
        manifest.to_parquet(tmp, index=False)
    with atomic_path(out / UTTERANCE_EMBEDDINGS_NAME) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, utterance_embeddings.astype(np.float16))
    ids, means = speaker_means(utterance_embeddings, manifest[schema.SPEAKER_ID])
    with atomic_path(out / SPEAKER_EMBEDDINGS_NAME) as tmp:
        pd.DataFrame({schema.SPEAKER_ID: ids, "embedding": list(means)}).to_parquet(tmp, index=False)
    write_text(out / ZIP_ATTRIBUTES_NAME, zip_attributes.to_csv(index=False))
    write_json(out / BUILD_INFO_NAME, {
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "progress"},
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 1),
        "render_version": RENDER_VERSION,
        "pocketsphinx_options": ASR_OPTIONS,
        "tools": synth.tool_versions(),
        "packages": _package_versions(),
        "wer_overall": summary["wer_overall"],
    })


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in ("numpy", "pandas", "zipcodes", "pocketsphinx", "resemblyzer", "torch", "librosa", "jiwer"):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def _machine() -> dict:
    import os
    import platform

    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


# ----------------------------------------------------------------------------------------------------
# Command line


def corpus_arguments(parser: argparse.ArgumentParser, config_help: str) -> argparse.ArgumentParser:
    """The settings every corpus build takes on its command line (None: the config's value)."""
    parser.add_argument("--config", help=config_help)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--utterances-per-speaker", dest="utterances_per_speaker", type=int)
    parser.add_argument("--sentences", dest="n_sentences", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--audio-dir")
    parser.add_argument("--output-dir")
    parser.add_argument("--benchmark-path")
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = corpus_arguments(argparse.ArgumentParser(prog="python -m fairspeech.demo", description=__doc__.split("\n")[0]),
                              "TOML file with DemoConfig settings (recipes/demo_corpus/config.toml)")
    parser.add_argument("--speakers", dest="n_speakers", type=int)
    parser.add_argument("--ensure-audio", action="store_true",
                        help="only render the audio of the manifest in --output-dir (for later recipes)")
    args = vars(parser.parse_args(argv))
    config_path, only_audio = args.pop("config"), args.pop("ensure_audio")
    config = DemoConfig.from_toml(config_path, **args) if config_path else DemoConfig(
        **{k: v for k, v in args.items() if v is not None})
    try:
        if only_audio:
            ensure_audio(load_shipped_manifest(config.output_dir), config.audio_dir, config.workers, config.progress)
            print(f"audio ready in {config.audio_dir}")
            return 0
        result = build_corpus(config)
    except (synth.SynthesisError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: result[k] for k in ("wall_seconds", "utterances", "speakers", "wer_overall",
                                             "wer_by_voice_family", "wer_by_condition")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
