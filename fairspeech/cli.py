"""The ``fairspeech`` command line: one verb per job."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO_ROOT / "data_manifests" / "demo"

# Verbs that live beside their library code: each module's add_parser(subparsers) registers its verb
# with set_defaults(handler=run), and main() calls the handler.
VERB_MODULES = ["fairspeech.hardware.cli", "fairspeech.mitigation.cli", "fairspeech.updates.cli", "fairspeech.verification.cli"]


def _mapping(text: str | None) -> dict[str, str]:
    """'reference=text,hypothesis=pred' -> {'reference': 'text', 'hypothesis': 'pred'}."""
    if not text:
        return {}
    pairs = {}
    for item in text.split(","):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"--map expects FIELD=COLUMN pairs, got {item!r}")
        field, column = item.split("=", 1)
        pairs[field.strip()] = column.strip()
    return pairs


def _add_audit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", default=None, help="attributes to audit, comma-separated; '*' intersects (e.g. gender,age,gender*age)")
    parser.add_argument("--out", default="fairspeech_audit", help="output directory (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed for bootstrap, permutations and discovery (default: %(default)s)")
    parser.add_argument("--n-boot", type=int, default=1000, help="speaker bootstrap replicates (default: %(default)s)")
    parser.add_argument("--n-permutations", type=int, default=1000, help="permutations per p-value (default: %(default)s)")
    parser.add_argument("--alpha", type=float, default=0.05, help="1 - interval coverage, and the FDR level (default: %(default)s)")
    parser.add_argument("--min-speakers", type=int, default=5, help="smallest cohort reported one by one (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="processes for alignment (default: all CPUs)")
    parser.add_argument("--discover", default="", help="discover cohorts: comma-separated of geo, geodemo, embedding")
    parser.add_argument("--discover-min-speakers", type=int, default=20, help="smallest discovered cohort, in speakers (default: %(default)s)")
    parser.add_argument("--zip-attributes", default=None, help="zip-level attribute table (CSV/Parquet with a 'zip' column) for --discover geodemo")
    parser.add_argument("--embeddings", default=None, help="speaker embeddings (Parquet: speaker_id + one column per dimension) for --discover embedding")
    norm = parser.add_argument_group("text normalization (applied to reference and hypothesis alike)")
    norm.add_argument("--keep-case", action="store_true", help="do not lowercase")
    norm.add_argument("--keep-punctuation", action="store_true", help="do not strip punctuation")
    norm.add_argument("--normalize-sub", action="append", default=[], metavar="PATTERN=>REPL", help="extra regex substitution, applied after the defaults (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fairspeech", description="Find the speakers a speech model serves worst, fix that, and prove nobody got worse.")
    parser.add_argument("--version", action="version", version=f"fairspeech {__import__('fairspeech').__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    audit = sub.add_parser("audit", help="audit WER gaps by cohort: per-cohort WER with speaker-level intervals, discovered cohorts, report")
    audit.add_argument("manifest", help="CSV, TSV, JSONL, Parquet, NeMo JSONL, Common Voice TSV, or a Kaldi data dir")
    audit.add_argument("--format", default=None, help="force the format (csv, tsv, jsonl, parquet, nemo, commonvoice, kaldi)")
    audit.add_argument("--map", type=_mapping, default={}, metavar="FIELD=COLUMN,...", help="map file columns to canonical fields")
    audit.add_argument("--hyp", default=None, help="hypotheses file ('utt-id words...' lines) for manifests without them")
    audit.add_argument("--asr", default=None, metavar="ASR", help="transcribe the manifest's audio_path with this ASR (its hypotheses replace any in the file): "
                       "pocketsphinx, hf:PATH (a local transformers *ForCTC or Whisper folder) or fairspeech:MODEL.safetensors")
    audit.add_argument("--audio-root", default=None, help="folder that relative audio paths start from (default: the manifest's folder)")
    audit.add_argument("--skip-bad-rows", action="store_true", help="exclude bad rows (counted by reason in the report) instead of failing")
    audit.add_argument("--engine", choices=["memory", "dask"], default="memory", help="'dask' audits a partitioned Parquet manifest out of core (default: %(default)s)")
    audit.add_argument("--scheduler", default=None, help="with --engine dask: address of a running Dask scheduler (default: a local cluster of --workers processes)")
    _add_audit_options(audit)

    for module in VERB_MODULES:
        importlib.import_module(module).add_parser(sub)

    demo = sub.add_parser("demo", help="run the audit, with cohort discovery, on the embedded demo corpus")
    _add_audit_options(demo)
    demo.set_defaults(out="fairspeech_demo")
    return parser


def _normalizer(args):
    from fairspeech.errors import InputError
    from fairspeech.metrics.normalize import TextNormalizer, regex_transform

    transforms = []
    for item in args.normalize_sub:
        if "=>" not in item:
            raise InputError(f"--normalize-sub expects PATTERN=>REPLACEMENT, got {item!r}")
        pattern, replacement = item.split("=>", 1)
        transforms.append(regex_transform(pattern, replacement))
    return TextNormalizer(lowercase=not args.keep_case, remove_punctuation=not args.keep_punctuation, transforms=tuple(transforms))


def _read_table(path: str | None):
    if path is None:
        return None
    import pandas as pd
    import pyarrow

    from fairspeech.errors import InputError

    if not Path(path).is_file():
        raise InputError(f"no such file: {path}")
    try:
        if path.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={"zip": str}, comment="#")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, pyarrow.ArrowException) as error:
        raise InputError(f"file {path}: cannot be read as {'Parquet' if path.endswith(('.parquet', '.pq')) else 'UTF-8 CSV'} ({error})") from None


def _run_audit(args, manifest, discover: list[str]) -> None:
    """``manifest``: a Manifest (in-memory engine) or the path of a Parquet manifest (dask engine)."""
    embeddings = _read_table(args.embeddings)
    if embeddings is not None and "speaker_id" in embeddings.columns:
        embeddings = embeddings.set_index("speaker_id")
    common = dict(
        n_boot=args.n_boot, n_permutations=args.n_permutations, alpha=args.alpha, min_speakers=args.min_speakers,
        seed=args.seed, normalizer=_normalizer(args), discover=discover, discover_min_speakers=args.discover_min_speakers, zip_attributes=_read_table(args.zip_attributes),
        embeddings=embeddings, skip_bad_rows=getattr(args, "skip_bad_rows", False), progress=not args.no_progress,
    )
    if getattr(args, "engine", "memory") == "dask":
        from fairspeech.engines.dask_engine import run_audit_dask

        result = run_audit_dask(manifest, args.by, scheduler=args.scheduler, workers=args.workers, **common)
    else:
        from fairspeech.audit import run_audit

        result = run_audit(manifest, args.by, workers=args.workers, **common)
    out = result.write(args.out)
    overall = result.overall.overall
    print(f"overall WER {100 * overall['wer']:.2f}% [{100 * overall['wer_low']:.2f}, {100 * overall['wer_high']:.2f}] "
          f"over {int(overall['speakers'])} speakers, {int(overall['utterances'])} utterances")
    for table in result.tables:
        if table.gap:
            g = table.gap
            print(f"  by {table.name}: worst {g['worst']} {100 * g['wer_worst']:.2f}% vs best {g['best']} "
                  f"{100 * g['wer_best']:.2f}% (gap {100 * g['difference']:.2f} pts [{_pts(g['difference_low'])}, {_pts(g['difference_high'])}] "
                  f"simultaneous; max-statistic p {_p(table.global_test['p_value'])})")
    if result.discovery is not None:
        print(result.discovery.comparison.to_string(index=False))
    exclusions = result.source.get("exclusions")
    if exclusions:
        print(f"excluded rows: {exclusions}")
    print(f"wrote {out / 'report.html'}, {out / 'audit.json'}, {out / 'cohorts.csv'}")


def _pts(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"  # None: undefined (a 1-speaker cohort has no spread)


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _command(args: argparse.Namespace) -> int | None:
    from fairspeech.data.manifest import ManifestError, read_manifest

    if args.command == "audit" and args.engine == "dask":
        if args.map or args.hyp or args.format not in (None, "parquet"):
            raise ManifestError("--engine dask reads canonical Parquet manifests; --map, --hyp and --format are for the in-memory engine")
        _run_audit(args, args.manifest, _split(args.discover))
    elif args.command == "audit":
        manifest = read_manifest(
            args.manifest, format=args.format, columns=args.map, hypotheses=args.hyp, skip_bad_rows=args.skip_bad_rows,
            require_hypothesis=args.asr is None,
        )
        if args.asr and "audio_start" in manifest.frame.columns:
            raise ManifestError("--asr transcribes whole audio files; this Kaldi dir's utterances are segments of "
                                "recordings (segments file): decode them with your recognizer and pass --hyp", args.manifest)
        if args.asr:
            from fairspeech.asr.transcribe import transcribe_manifest

            manifest = transcribe_manifest(
                manifest, args.asr, audio_root=args.audio_root, workers=args.workers or 1,
                skip_bad_rows=args.skip_bad_rows, progress=not args.no_progress,
            )
        _run_audit(args, manifest, _split(args.discover))
    elif args.command == "demo":
        manifest_path = DEMO_DIR / "manifest.parquet"
        if not manifest_path.exists():
            raise ManifestError("the demo manifest is missing; build it with recipes/demo_corpus/run.sh", manifest_path)
        args.by = args.by or "gender,age,accent,voice_family,condition,gender*age"
        if not args.discover:
            args.discover = "geo,geodemo,embedding"
        args.zip_attributes = args.zip_attributes or str(DEMO_DIR / "zip_attributes_SYNTHETIC.csv")
        args.embeddings = args.embeddings or str(DEMO_DIR / "speaker_embeddings.parquet")
        _run_audit(args, read_manifest(manifest_path), _split(args.discover))
    else:
        return args.handler(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    # Arrow's default pool (mimalloc) keeps the pages a Parquet read frees; jemalloc hands them back, so a
    # 10-million-utterance audit peaks lower (benchmarks/results/audit_scale.json). Set before pyarrow loads;
    # Dask workers inherit it. A user's own setting wins.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
    from fairspeech.errors import cli_status

    return cli_status(_command, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
