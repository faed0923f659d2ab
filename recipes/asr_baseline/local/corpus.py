"""A training corpus for fairspeech's own recognizer (recipes/asr_baseline stages 1-2): the demo machinery
(:mod:`fairspeech.demo`) at a scale set by one setting.

    python recipes/asr_baseline/local/corpus.py --config recipes/asr_baseline/corpus.toml [--hours 40]
    python recipes/asr_baseline/local/corpus.py --config ... --recognize     # pocketsphinx on the eval splits

The demo corpus (320 speakers, 2.3 hours) is for auditing; a recognizer trained on 1.6 hours of it
overfits. This corpus uses the same speakers, homes, per-speaker voice shaping, conditions and
rendering (:mod:`fairspeech.demo.build`), with:

* ``hours`` deciding the number of speakers (at ``utterances_per_speaker`` each);
* more voices (:data:`EXTRA_VOICES`: espeak-ng variants on every accent) and some voices held out
  entirely (``unseen_voices``): their speakers form the ``unseen`` split, never heard in training;
* seen voices' speakers split 80/10/10 into train/dev/test (disjoint by speaker, stratified by voice);
* references from a pool of ``n_sentences`` distinct requests drawn from the demo's templates plus
  :data:`~fairspeech.demo.sentences.EXTRA_TEMPLATES`.

Rendering runs over ``workers`` processes with a progress bar and resumes where it stopped (each
utterance's sidecar fingerprints its generating parameters). pocketsphinx runs only when asked
(``--recognize``) and only on ``recognize_splits``: it is the comparison row of the evaluation, and
decoding every training utterance would cost more than rendering it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from fairspeech.data import schema
from fairspeech.demo import build
from fairspeech.demo import sentences as sent
from fairspeech.demo import speakers as spk
from fairspeech.demo import synth
from fairspeech.utils.io import atomic_path, write_json

# Mean utterance length of the demo build (8,143.7 s over 2,880 utterances): turns hours into speakers.
MEAN_UTTERANCE_SECONDS = 2.83
UNSEEN_SPLIT = "unseen"
# Seen voices: every run of 20 speakers (ordered by voice) gives 16 train, 2 dev, 2 test.
SPLIT_PATTERN = ("train",) * 4 + ("dev",) + ("train",) * 4 + ("test",) + ("train",) * 4 + ("dev",) + ("train",) * 4 + ("test",)

_e = spk._espeak
# Two more espeak-ng variants per accent (a male and a female), and the held-out voices' definitions.
EXTRA_VOICES: tuple[spk.Voice, ...] = (
    _e("en-us", "Mike", "us", "male", "english"), _e("en-us", "shelby", "us", "female", "english"),
    _e("en-us-nyc", "travis", "new_york", "male", "english"), _e("en-us-nyc", "f3", "new_york", "female", "english"),
    _e("en-gb", "edward", "british", "male", "english"), _e("en-gb", "f5", "british", "female", "english"),
    _e("en-gb-x-rp", "john", "british_rp", "male", "english"), _e("en-gb-x-rp", "f2", "british_rp", "female", "english"),
    _e("en-gb-x-gbclan", "rob", "lancashire", "male", "english"), _e("en-gb-x-gbclan", "f4", "lancashire", "female", "english"),
    _e("en-gb-x-gbcwmd", "paul", "west_midlands", "male", "english"), _e("en-gb-x-gbcwmd", "f1", "west_midlands", "female", "english"),
    _e("en-gb-scotland", "iven", "scottish", "male", "english"), _e("en-gb-scotland", "Annie", "scottish", "female", "english"),
    _e("en-029", "zac", "caribbean", "male", "english"), _e("en-029", "f5", "caribbean", "female", "english"),
    _e("es", "antonio", "spanish", "male", "spanish", 2.0), _e("es", "f2", "spanish", "female", "spanish", 2.0),
    _e("it", "sandro", "italian", "male", "italian"), _e("it", "f1", "italian", "female", "italian"),
    _e("pl", "norbert", "polish", "male", "polish"), _e("pl", "f3", "polish", "female", "polish"),
    _e("de", "gustave", "german", "male", "german"), _e("de", "f4", "german", "female", "german"),
    _e("fr-fr", "victor", "french", "male", "french"), _e("fr-fr", "f5", "french", "female", "french"),
    _e("pt-br", "pedro", "portuguese", "male", "portuguese"), _e("pt-br", "f1", "portuguese", "female", "portuguese"),
    # Defined for the held-out set (DEFAULT_UNSEEN_VOICES); seen like any other if not held out.
    _e("en-us", "david", "us", "male", "english"), _e("en-gb", "steph3", "british", "female", "english"),
    _e("es", "pablo", "spanish", "male", "spanish"), _e("de", "grandma", "german", "female", "german"),
    _e("en-029", "quincy", "caribbean", "male", "english"),
)
CATALOGUE: tuple[spk.Voice, ...] = spk.VOICES + EXTRA_VOICES
CATALOGUE_BY_KEY = {v.key: v for v in CATALOGUE}
DEFAULT_UNSEEN_VOICES = (
    "flite/rms", "espeak-ng/en-us+david", "espeak-ng/en-gb+steph3", "espeak-ng/es+pablo",
    "espeak-ng/de+grandma", "espeak-ng/en-029+quincy",
)


@dataclass(frozen=True)
class TrainingCorpusConfig(build.TomlConfig):
    seed: int = 7
    hours: float = 24.0  # all splits together; the measured figure is in the benchmark
    utterances_per_speaker: int = 12
    n_sentences: int = 24000
    unseen_voices: tuple[str, ...] = DEFAULT_UNSEEN_VOICES
    unseen_share: float = 0.06  # of speakers, spread evenly over the unseen voices
    # Share of the train speakers kept (a seeded, nested sample: 0.125's speakers are among 0.25's);
    # dev, test and unseen stay whole, so a learning curve's points are scored on the same speakers.
    train_share: float = 1.0
    recognize_splits: tuple[str, ...] = ("test", UNSEEN_SPLIT)
    id_prefix: str = "tc"
    workers: int = 2
    audio_dir: str = "data/train_corpus/audio"
    output_dir: str = "data/train_corpus"
    benchmark_path: str = "benchmarks/results/train_corpus.json"
    progress: bool = True

    def __post_init__(self):
        unknown = [key for key in self.unseen_voices if key not in CATALOGUE_BY_KEY]
        if unknown:
            raise ValueError(f"unseen_voices {unknown} are not in the voice catalogue; known: {sorted(CATALOGUE_BY_KEY)}")
        if self.hours <= 0 or self.utterances_per_speaker < 1 or not 0 <= self.unseen_share < 1:
            raise ValueError("hours must be > 0, utterances_per_speaker >= 1 and unseen_share in [0, 1)")
        if not 0 < self.train_share <= 1:
            raise ValueError(f"train_share must be in (0, 1], got {self.train_share}")

    @property
    def n_speakers(self) -> int:
        return max(20, round(self.hours * 3600 / (self.utterances_per_speaker * MEAN_UTTERANCE_SECONDS)))

    def seen_voices(self) -> tuple[spk.Voice, ...]:
        return tuple(v for v in CATALOGUE if v.key not in self.unseen_voices)

    def held_out_voices(self) -> tuple[spk.Voice, ...]:
        return tuple(CATALOGUE_BY_KEY[key] for key in self.unseen_voices)


def build_training_metadata(config: TrainingCorpusConfig) -> pd.DataFrame:
    """Every utterance's row (hypothesis and duration empty), from the config alone."""
    zips = spk.zip_attributes(config.seed)
    held_out = config.held_out_voices()
    n_unseen = round(config.n_speakers * config.unseen_share) if held_out else 0
    allocated = spk.allocate_voices(config.n_speakers - n_unseen, config.seen_voices())
    allocated += [held_out[i % len(held_out)] for i in range(n_unseen)]
    speakers = spk.speakers_for_voices(config.seed, allocated, zips, config.id_prefix)
    seen = [s for s in speakers if s.voice.key not in config.unseen_voices]
    splits = spk.assign_splits(config.seed, seen, config.seen_voices(), SPLIT_PATTERN)
    splits.update({s.speaker_id: UNSEEN_SPLIT for s in speakers if s.voice.key in config.unseen_voices})
    pool = sent.sentence_pool(config.seed, config.n_sentences, sent.speakable_cities(zips), sent.TRAINING_TEMPLATES)
    per_speaker = config.utterances_per_speaker
    assigned = sent.assign_sentences(config.seed, len(speakers) * per_speaker, pool)
    zip_rows = zips.set_index("zip")
    rows = []
    for i, speaker in enumerate(speakers):
        home = zip_rows.loc[speaker.zip]
        for j in range(per_speaker):
            condition = spk.sample_condition(config.seed, i, j, home)
            rows.append(build._utterance_row(speaker, j, home, splits[speaker.speaker_id], assigned[i * per_speaker + j], condition))
    frame = pd.DataFrame(rows, columns=build.MANIFEST_COLUMNS)
    frame["voice_seen"] = frame[schema.SPLIT] != UNSEEN_SPLIT
    if config.train_share < 1:
        frame = frame[~frame[schema.SPEAKER_ID].isin(dropped_train_speakers(config, frame))]
    return frame.sort_values(schema.UTT_ID, ignore_index=True)


def dropped_train_speakers(config: TrainingCorpusConfig, frame: pd.DataFrame) -> set[str]:
    """Train speakers beyond the first ``train_share`` of a seeded permutation (so smaller shares nest)."""
    train = sorted(frame.loc[frame[schema.SPLIT] == "train", schema.SPEAKER_ID].unique())
    order = np.random.default_rng([config.seed, 26]).permutation(len(train))
    keep = round(len(train) * config.train_share)
    return {train[i] for i in order[keep:]}


def _render_and_recognize(task: tuple[dict, str]) -> dict:
    """Render one utterance (if needed) and, when its row asks, recognize it; cached in its sidecar."""
    row, audio_dir = task
    sidecar = build._ensure_wav(row, Path(audio_dir))
    if row["_recognize"] and not (sidecar.get("asr_options") == build.ASR_OPTIONS and "hypothesis" in sidecar):
        wav, sidecar_path = build._paths(row, Path(audio_dir))
        sidecar["hypothesis"] = build._worker["recognizer"].transcribe(wav)
        sidecar["asr_options"] = build.ASR_OPTIONS
        write_json(sidecar_path, sidecar)
    return sidecar


def build_training_corpus(config: TrainingCorpusConfig, recognize: bool = False) -> dict:
    """Render the corpus (and with ``recognize`` run pocketsphinx on ``recognize_splits``); writes
    ``output_dir/manifest.parquet``, ``build_info.json`` and the benchmark JSON; returns the summary."""
    started = time.perf_counter()
    frame = build_training_metadata(config)
    synth.require_tools(set(CATALOGUE_BY_KEY[f"{f}/{v}"] for f, v in set(zip(frame["voice_family"], frame["voice"]))))
    rows = frame.to_dict("records")
    for row in rows:
        row["_recognize"] = recognize and row[schema.SPLIT] in config.recognize_splits
    audio_dir = Path(config.audio_dir)
    results = build._run_parallel(_render_and_recognize, rows, audio_dir, config.workers,
                                  models=("recognizer",) if recognize else (), progress=config.progress,
                                  desc="training corpus" + (" + pocketsphinx" if recognize else ""))
    ordered = [results[u] for u in frame[schema.UTT_ID]]
    frame[schema.DURATION] = [float(r["duration"]) for r in ordered]
    frame[schema.HYPOTHESIS] = [r.get("hypothesis") if r.get("asr_options") == build.ASR_OPTIONS else None for r in ordered]
    # Relative paths resolve under audio_dir (fairspeech.asr.data.resolve_audio_paths, data.audio_dir).
    wall = time.perf_counter() - started
    out = Path(config.output_dir)
    with atomic_path(out / build.MANIFEST_NAME) as tmp:
        frame.to_parquet(tmp, index=False)
    summary = summarize(frame)
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k != "progress"}
    write_json(out / build.BUILD_INFO_NAME, {
        "config": settings, "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "render_version": build.RENDER_VERSION, "pocketsphinx_options": build.ASR_OPTIONS,
        "tools": synth.tool_versions(), "packages": build._package_versions(),
    })
    benchmark = {"benchmark": "train_corpus", "config": settings, "wall_seconds_this_run": round(wall, 1),
                 "recognized": recognize, "machine": build._machine(), **summary}
    write_json(config.benchmark_path, benchmark)
    return benchmark


def summarize(frame: pd.DataFrame) -> dict:
    """Size per split (speakers, utterances, hours), voices, distinct sentences, and pocketsphinx WER
    per split and voice family where hypotheses exist."""
    by_split = []
    for split, part in frame.groupby(schema.SPLIT, sort=True):
        by_split.append({
            "split": split, "speakers": int(part[schema.SPEAKER_ID].nunique()), "utterances": len(part),
            "hours": round(float(part[schema.DURATION].sum()) / 3600, 3),
            "voices": int(part["voice"].nunique()), "distinct_sentences": int(part[schema.REFERENCE].nunique()),
        })
    train_sentences = set(frame.loc[frame[schema.SPLIT] == "train", schema.REFERENCE])
    summary = {
        "utterances": len(frame), "speakers": int(frame[schema.SPEAKER_ID].nunique()),
        "hours": round(float(frame[schema.DURATION].sum()) / 3600, 3),
        "distinct_sentences": int(frame[schema.REFERENCE].nunique()),
        "templates": int(frame["sentence_template"].nunique()),
        "seen_voices": sorted(set(frame.loc[frame["voice_seen"], "voice_family"] + "/" + frame.loc[frame["voice_seen"], "voice"])),
        "unseen_voices": sorted(set(frame.loc[~frame["voice_seen"], "voice_family"] + "/" + frame.loc[~frame["voice_seen"], "voice"])),
        "by_split": by_split,
        # Share of each eval split's utterances whose sentence was also read in training.
        "sentence_overlap_with_train": {
            split: round(float(part[schema.REFERENCE].isin(train_sentences).mean()), 4)
            for split, part in frame.groupby(schema.SPLIT) if split != "train"
        },
    }
    recognized = frame[frame[schema.HYPOTHESIS].notna()]
    if len(recognized):
        import jiwer

        summary["pocketsphinx_wer"] = [
            {"split": split, "voice_family": family, "utterances": len(part),
             "wer": round(float(jiwer.wer(list(part[schema.REFERENCE]), list(part[schema.HYPOTHESIS]))), 4)}
            for (split, family), part in recognized.groupby([schema.SPLIT, "voice_family"], sort=True)
        ] + [
            {"split": split, "voice_family": "all", "utterances": len(part),
             "wer": round(float(jiwer.wer(list(part[schema.REFERENCE]), list(part[schema.HYPOTHESIS]))), 4)}
            for split, part in recognized.groupby(schema.SPLIT, sort=True)
        ]
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = build.corpus_arguments(
        argparse.ArgumentParser(prog="recipes/asr_baseline/local/corpus.py", description=__doc__.split("\n")[0]),
        "TOML file with TrainingCorpusConfig settings (recipes/asr_baseline/corpus.toml)")
    parser.add_argument("--hours", type=float, help="audio hours of all splits together (sets the number of speakers)")
    parser.add_argument("--train-share", dest="train_share", type=float, help="share of the train speakers kept (dev/test/unseen stay whole)")
    parser.add_argument("--recognize", action="store_true", help="also run pocketsphinx on recognize_splits")
    args = vars(parser.parse_args(argv))
    config_path, recognize = args.pop("config"), args.pop("recognize")
    try:
        config = TrainingCorpusConfig.from_toml(config_path, **args) if config_path else TrainingCorpusConfig(
            **{k: v for k, v in args.items() if v is not None})
        result = build_training_corpus(config, recognize=recognize)
    except (synth.SynthesisError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: result[k] for k in ("utterances", "speakers", "hours", "distinct_sentences", "by_split")
                      if k in result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
