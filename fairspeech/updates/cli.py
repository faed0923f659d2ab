"""``fairspeech diff create|apply|inspect``: train an update as a diff, apply it safely, look inside one.

    fairspeech diff create --base runs/asr_baseline/model.safetensors --exp-dir runs/update1 \\
        --type sparse --density 0.01 --query "sentence_template == 'music_artist'" --seed 0
    fairspeech diff inspect runs/update1/update.diff.safetensors --base runs/asr_baseline/model.safetensors
    fairspeech diff apply runs/asr_baseline/model.safetensors runs/update1/update.diff.safetensors \\
        --out deployed/model.safetensors --check test

``apply --check SPLIT`` decodes SPLIT with the model before and after, and writes the updated model
only if no cohort is flagged (WER increase or negative flips beyond the gate's thresholds, judged on
the lower bound of the speaker-bootstrap interval); a flagged update exits with status 2 unless
``--force``. ``inspect --check SPLIT --base MODEL`` runs the same check without writing anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from fairspeech.updates import format as fmt


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("diff", help="neural diff updates: train an update as a sparse or hashed diff, apply it safely, inspect it")
    verbs = parser.add_subparsers(dest="diff_command", required=True, metavar="ACTION")

    create = verbs.add_parser("create", help="train an update from a deployed model as a diff (ASR training loop)")
    create.add_argument("--base", default=None, help="the deployed model.safetensors (with its .json sidecar), trained by fairspeech")
    create.add_argument("--model", default=None, help="instead of --base: your own model, hf:PATH (a transformers folder); with --manifest")
    create.add_argument("--manifest", default=None, help="with --model: the update's training manifest (audio_path, reference); --query selects rows")
    create.add_argument("--audio-dir", default=None, help="with --model: folder relative audio paths are under")
    create.add_argument("--epochs", type=int, default=3, help="with --model: epochs (default: %(default)s)")
    create.add_argument("--lr", type=float, default=1e-4, help="with --model: peak learning rate (default: %(default)s)")
    create.add_argument("--exp-dir", required=True, help="experiment directory: checkpoints, model.safetensors, update.diff.safetensors (rerun to resume)")
    create.add_argument("--type", choices=fmt.DIFF_TYPES, default="sparse", help="diff type (default: %(default)s)")
    create.add_argument("--density", type=float, default=0.1, help="sparse: share of weights the diff keeps (default: %(default)s)")
    create.add_argument("--bucket-ratio", type=float, default=None, help="hashed: buckets per weight (default: the byte budget of --density as a sparse diff)")
    create.add_argument("--value-dtype", choices=sorted(fmt.VALUE_DTYPES), default="float16", help="stored value type (default: %(default)s)")
    create.add_argument("--query", default=None, help="pandas query over the train split's rows selecting the update's data")
    create.add_argument("--utt-ids", default=None, help="file with one train utt_id per line selecting the update's data")
    create.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="training config override (repeatable), e.g. train.epochs=3")
    create.add_argument("--seed", type=int, default=None, help="training seed and hash seed (default: the base model's training seed)")
    create.set_defaults(handler=run_create)

    apply = verbs.add_parser("apply", help="apply a diff to a model file (validated; the base is untouched on any error)")
    apply.add_argument("base", help="model.safetensors the diff was made for, or hf:PATH (the transformers folder of create --model)")
    apply.add_argument("diff", help="update.diff.safetensors")
    apply.add_argument("--out", required=True, help="updated model.safetensors (may be the base path: replaced atomically)")
    _add_check_options(apply)
    apply.add_argument("--force", action="store_true", help="write the updated model even if the check flags a cohort")
    apply.set_defaults(handler=run_apply)

    inspect = verbs.add_parser("inspect", help="print a diff's header, density and sizes; with --base, whether it applies")
    inspect.add_argument("diff", help="update.diff.safetensors")
    inspect.add_argument("--base", default=None, help="model.safetensors to test the diff against")
    _add_check_options(inspect)
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(handler=run_inspect)
    return parser


def _add_check_options(parser: argparse.ArgumentParser) -> None:
    from fairspeech.updates.check import RegressionGate

    gate = RegressionGate()
    group = parser.add_argument_group("pre-ship check (per-cohort WER change and negative flips against the base)")
    group.add_argument("--check", default=None, metavar="SPLIT", help="decode SPLIT with both models and flag regressing cohorts")
    group.add_argument("--by", default="voice_family,gender", help="cohort attributes, comma-separated (default: %(default)s)")
    group.add_argument("--max-wer-increase", type=float, default=gate.max_wer_increase, help="absolute WER increase allowed (default: %(default)s)")
    group.add_argument("--max-negative-flip-rate", type=float, default=gate.max_negative_flip_rate, help="default: %(default)s")
    group.add_argument("--max-word-negative-flip-rate", type=float, default=gate.max_word_negative_flip_rate, help="default: %(default)s")
    group.add_argument("--min-speakers", type=int, default=gate.min_speakers, help="smallest cohort judged (default: %(default)s)")
    group.add_argument("--n-boot", type=int, default=1000, help="speaker bootstrap replicates (default: %(default)s)")
    group.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    group.add_argument("--manifest", dest="check_manifest", default=None,
                       help="hf: bases: the manifest whose SPLIT rows (audio_path, reference) the check decodes")
    group.add_argument("--audio-dir", dest="check_audio_dir", default=None, help="hf: bases: folder relative audio paths are under")


def run_check(args, base: str, candidate: str):
    """The check's table for ``candidate`` against ``base`` on ``args.check``, printed; returns it. fairspeech
    models decode the split of their own config; transformers folders (hf:) that of ``--manifest``."""
    if base.startswith("hf:"):
        frame, old = decode_hf_split(args, base)
        _, new = decode_hf_split(args, candidate)
    else:
        from fairspeech.updates.check import decode_splits

        frame, old = decode_splits(base, [args.check])
        _, new = decode_splits(candidate, [args.check])
    return _gate_table(args, frame, old, new)


def decode_hf_split(args, model: str):
    """(rows of --manifest's ``args.check`` split, the transformers model's greedy hypotheses of them)."""
    from fairspeech.asr.data import resolve_audio_paths
    from fairspeech.asr.user_model import load_model
    from fairspeech.data import schema
    from fairspeech.data.manifest import read_manifest
    from fairspeech.errors import InputError

    if not args.check_manifest:
        raise InputError(f"--check on {model} needs --manifest: the rows of its split {args.check!r} are decoded by both models")
    frame = resolve_audio_paths(read_manifest(args.check_manifest, require_hypothesis=False).frame, args.check_manifest, args.check_audio_dir)
    if schema.SPLIT not in frame.columns or not (frame[schema.SPLIT] == args.check).any():
        raise InputError(f"{args.check_manifest}: no rows with {schema.SPLIT} == {args.check!r} to check on")
    frame = frame[frame[schema.SPLIT] == args.check].reset_index(drop=True)
    loaded = load_model(model)
    return frame, loaded.transcribe(loaded.dataset(frame, with_targets=False))


def _gate_table(args, frame, old: list[str], new: list[str]):
    from fairspeech.data import schema
    from fairspeech.updates.check import RegressionGate, regression_table

    by = [c for c in args.by.split(",") if c]
    gate = RegressionGate(max_wer_increase=args.max_wer_increase, max_negative_flip_rate=args.max_negative_flip_rate,
                          max_word_negative_flip_rate=args.max_word_negative_flip_rate, min_speakers=args.min_speakers)
    table = gate.check(regression_table(frame, frame[schema.REFERENCE].tolist(), old, new, by, n_boot=args.n_boot, seed=args.seed))
    for row in table.itertuples():
        print(f"  {row.attribute:>12} {row.cohort:<14} WER {100 * row.old_wer:6.2f} -> {100 * row.new_wer:6.2f} "
              f"(change [{100 * row.wer_change_low:+.2f}, {100 * row.wer_change_high:+.2f}])  "
              f"neg. flips {100 * row.negative_flip_rate:5.2f}% words {100 * row.word_negative_flip_rate:5.2f}%"
              + (f"  FLAGGED: {row.reasons}" if row.flagged else ""))
    return table


def _base_seed(base: str) -> int:
    """The training seed in the base model's sidecar config: an update's seed when --seed is not given (0 where
    the sidecar cannot be read; update_config then says what is wrong with the base)."""
    try:
        return int(json.loads(Path(base).with_suffix(".json").read_text(encoding="utf-8"))["config"]["train"]["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def run_create_user_model(args, ratio: float) -> None:
    """``diff create --model hf:PATH``: the update trained on the user's transformers model; the diff's names
    and base hash are those of the model's own weights, so ``diff apply hf:PATH`` rebuilds the update."""
    import torch

    from fairspeech.asr.data import resolve_audio_paths
    from fairspeech.asr.user_model import load_model
    from fairspeech.data.manifest import read_manifest
    from fairspeech.errors import InputError
    from fairspeech.mitigation.user_finetune import select_rows
    from fairspeech.training import Trainer, TrainerConfig
    from fairspeech.updates.train import DIFF_FILE, DiffTrainer

    if not args.model.startswith("hf:") or not args.manifest:
        raise InputError("diff create --model takes hf:PATH and needs --manifest (a fairspeech model: use --base)")
    seed = args.seed if args.seed is not None else 0
    loaded = load_model(args.model)
    frame = resolve_audio_paths(read_manifest(args.manifest, require_hypothesis=False).frame, args.manifest, args.audio_dir)
    rows = select_rows(frame, args.query, args.manifest) if args.query else range(len(frame))
    data = loaded.dataset(frame)
    diff = DiffTrainer(args.type, density=args.density, bucket_ratio=ratio, value_dtype=args.value_dtype, hash_seed=seed, submodule="model")
    torch.manual_seed(seed)
    trainer = Trainer(loaded.module, loaded.objective, TrainerConfig(lr=args.lr, warmup_steps=10), [diff], exp_dir=args.exp_dir, name="diff update")
    summary = trainer.fit(lambda epoch: data.batches(16000 * 60, shuffle_seed=[seed, epoch], indices=list(rows)), args.epochs, make_batch=data.batch)
    path = fmt.write_diff(Path(args.exp_dir) / DIFF_FILE, diff.diff_)
    loaded.save(Path(args.exp_dir) / "model")
    print(f"{summary['steps']} steps on {len(rows)} utterances; {path}: {path.stat().st_size:,} bytes, density {diff.diff_.header['density']:.4f}")


def apply_to_hf_folder(base: str, diff_path: str, out: str) -> dict:
    """Apply a diff made with ``create --model hf:PATH`` to that transformers folder; writes ``out`` (a folder)."""

    from fairspeech.asr.hf import _transformers

    tf = _transformers()
    config = tf.AutoConfig.from_pretrained(base, local_files_only=True)
    cls = getattr(tf, config.architectures[0]) if config.architectures else tf.AutoModel
    model = cls.from_pretrained(base, local_files_only=True)
    diff = fmt.read_diff(diff_path)
    model.load_state_dict(fmt.apply_diff(model.state_dict(), diff, diff_path))
    if Path(out).resolve() != Path(base).resolve():
        shutil.copytree(base, out, dirs_exist_ok=True)  # tokenizer and processor files travel with the weights
    model.save_pretrained(out)
    return diff.header


def run_create(args) -> None:
    from fairspeech.data import schema
    from fairspeech.updates.hashed import budget_bucket_ratio
    from fairspeech.updates.train import DIFF_FILE, DiffTrainer, train_update, update_config

    from fairspeech.errors import ConfigError, InputError

    if (args.base is None) == (args.model is None):
        raise InputError("diff create needs exactly one of --base (a fairspeech model.safetensors) and --model (hf:PATH)")
    if args.model is not None:
        ratio = args.bucket_ratio if args.bucket_ratio is not None else budget_bucket_ratio(args.density, fmt.VALUE_DTYPES[args.value_dtype].itemsize)
        return run_create_user_model(args, ratio)
    try:
        config = update_config(args.base, args.set, args.seed if args.seed is not None else _base_seed(args.base))
    except KeyError as error:
        raise ConfigError(f"--set: {error.args[0]}") from None
    select = None
    if args.utt_ids:
        wanted = {line.strip() for line in Path(args.utt_ids).read_text(encoding="utf-8").splitlines() if line.strip()}
        select = lambda rows: rows[schema.UTT_ID].isin(wanted).to_numpy()  # noqa: E731
    elif args.query:
        select = lambda rows: rows.index.isin(rows.query(args.query).index)  # noqa: E731
    ratio = args.bucket_ratio if args.bucket_ratio is not None else budget_bucket_ratio(args.density, fmt.VALUE_DTYPES[args.value_dtype].itemsize)
    trainer = DiffTrainer(args.type, density=args.density, bucket_ratio=ratio, value_dtype=args.value_dtype, hash_seed=config.train.seed)
    summary = train_update(config, args.exp_dir, trainer, select)
    path = Path(args.exp_dir) / DIFF_FILE
    sizes, base_bytes = fmt.compressed_sizes(path), Path(args.base).stat().st_size
    print(f"{summary['steps']} steps on {summary['train_utterances']} utterances; {path}: {sizes['disk']:,} bytes "
          f"({100 * (1 - sizes['disk'] / base_bytes):.2f}% smaller than the {base_bytes:,}-byte model), density {summary['diff']['density']:.4f}")


def run_apply(args) -> None:
    out = Path(args.out)
    try:
        if args.base.startswith("hf:"):
            if not args.check:
                header = apply_to_hf_folder(args.base[3:], args.diff, args.out)
                print(f"applied {header['diff_type']} diff (density {header['density']:.4f}) -> {out}")
                return
            out.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=out.parent, prefix=".diff-candidate-") as tmp:
                candidate = Path(tmp) / "model"
                header = apply_to_hf_folder(args.base[3:], args.diff, str(candidate))
                flagged = _flagged(run_check(args, args.base, f"hf:{candidate}"), args, out)
                if out.exists():  # a folder: replaced whole, so no file of the old model stays beside the new weights
                    shutil.rmtree(out)
                os.replace(candidate, out)
            print(f"applied {header['diff_type']} diff (density {header['density']:.4f}) -> {out}" + (" despite flags (--force)" if flagged else "; no cohort flagged"))
            return
        if not args.check:
            header = fmt.apply_diff_file(args.base, args.diff, out)
            print(f"applied {header['diff_type']} diff (density {header['density']:.4f}) -> {out}")
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".diff-candidate-") as tmp:
            candidate = Path(tmp) / "model.safetensors"
            header = fmt.apply_diff_file(args.base, args.diff, candidate)
            flagged = _flagged(run_check(args, args.base, str(candidate)), args, out)
            os.replace(candidate, out)
            os.replace(candidate.with_suffix(".json"), out.with_suffix(".json"))
            print(f"applied {header['diff_type']} diff (density {header['density']:.4f}) -> {out}" + (" despite flags (--force)" if flagged else "; no cohort flagged"))
    except fmt.DiffError as error:
        raise SystemExit(f"error: {error}")


def _flagged(table, args, out: Path) -> int:
    """Flagged cohorts of the check; stops (exit 2, ``out`` untouched) unless ``--force``."""
    flagged = int(table.flagged.sum())
    if flagged and not args.force:
        print(f"NOT applied: {flagged} cohort(s) flagged; {out} left as it was (--force to apply anyway)")
        raise SystemExit(2)
    return flagged


def run_inspect(args) -> None:
    try:
        diff = fmt.read_diff(args.diff)
    except fmt.DiffError as error:
        raise SystemExit(f"error: {error}")
    header = diff.header
    report = {"path": args.diff, "header": {k: v for k, v in header.items() if k != "tensors"}, "weights_diffed": len(header["tensors"]),
              "sizes": fmt.compressed_sizes(args.diff)}
    if args.base:
        from fairspeech.training import checkpoint as ckpt

        weights, _ = ckpt.load_weights(args.base)
        report["base"] = {"path": args.base, "sizes": fmt.compressed_sizes(args.base),
                          "applies": fmt.weights_sha256(weights) == header["base_sha256"]}
        report["smaller_than_base"] = 1 - report["sizes"]["disk"] / report["base"]["sizes"]["disk"]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.diff}: {header['diff_type']} diff, format {header['format']} v{header['format_version']}, density {header['density']:.4f} "
              f"({header['entries']:,} of {header['parameters']:,} weights, {header['value_dtype']})")
        print(f"  base SHA-256 {header['base_sha256']}; sizes " + ", ".join(f"{k} {v:,} B" for k, v in report["sizes"].items()))
        if args.base:
            print(f"  {'applies to' if report['base']['applies'] else 'does NOT apply to'} {args.base}; "
                  f"{100 * report['smaller_than_base']:.2f}% smaller than it on disk")
    if args.check:
        if not args.base:
            raise SystemExit("error: --check needs --base")
        with tempfile.TemporaryDirectory(prefix=".diff-inspect-") as tmp:
            candidate = Path(tmp) / "model.safetensors"
            fmt.apply_diff_file(args.base, args.diff, candidate)
            table = run_check(args, args.base, str(candidate))
        if table.flagged.any():
            raise SystemExit(2)
