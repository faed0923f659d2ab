"""``fairspeech profile MODEL --target PROFILE``: latency, memory and compute per frame of a model.

MODEL is a trained ASR model (``model.safetensors`` with its JSON sidecar, as written by
:mod:`fairspeech.asr.train`, or the directory holding it) or a built-in architecture name
(:data:`fairspeech.hardware.zoo.BUILTIN`). PROFILE is a shipped profile name, a TOML path, a
comma-separated list of either, or ``all`` (the default).

Wiring into the main CLI::

    add_parser(subparsers)          # registers the ``profile`` verb, handler=run_profile
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from fairspeech.hardware import zoo
from fairspeech.hardware.costs import load_profiles, shipped_profile_names
from fairspeech.hardware.estimator import CostReport, decompose, estimate_graph


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("profile", help="estimate a model's latency, memory and compute per frame on accelerator profiles")
    parser.add_argument("model", help=f"model.safetensors (with its .json sidecar) or its directory, or a built-in: {', '.join(zoo.BUILTIN)}")
    parser.add_argument("--target", default="all", help="profile name or TOML path, comma-separated, or 'all' (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the example input, seconds of audio (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the decomposition pass (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    parser.set_defaults(handler=run_profile)
    return parser


def load_model(name_or_path: str) -> tuple[torch.nn.Module, int, str]:
    """(model in eval mode, its number of mel bins, a description) from a built-in name or a trained model."""
    if name_or_path in zoo.BUILTIN:
        spec = zoo.BUILTIN[name_or_path]
        return zoo.build(spec), zoo.N_MELS, f"built-in {name_or_path}: {spec.name}"
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "model.safetensors"
    if path.suffix != ".safetensors" or not path.exists():
        raise FileNotFoundError(f"{name_or_path!r} is neither a built-in model ({', '.join(zoo.BUILTIN)}) nor a model.safetensors with a .json sidecar")
    from fairspeech.asr.evaluate import load_trained

    model, _, config = load_trained(path)
    return model.eval(), config.model.n_mels, f"{path} ({config.kind}, dim {config.model.dim}, {config.model.layers} layers)"


def _mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB"


def format_reports(description: str, seconds: float, reports: list[CostReport]) -> str:
    first = reports[0]
    lines = [
        f"model:   {description}",
        f"input:   {seconds:g} s of audio -> {first.output_frames} output frames, {first.operators} operator calls",
        f"compute: {first.flops / 1e6:.1f} MFLOP per pass, {first.flops_per_frame / 1e6:.3f} MFLOP per output frame",
        "",
        f"{'profile':<26}{'method':<21}{'latency':>11}{'per frame':>12}{'RTF':>8}{'weights':>12}{'activations':>13}",
    ]
    for r in reports:
        lines.append(f"{r.profile:<26}{r.method:<21}{1e3 * r.latency_s:>8.2f} ms{1e3 * r.latency_per_frame_s:>9.3f} ms"
                     f"{r.real_time_factor:>8.2g}{_mib(r.params_bytes):>12}{_mib(r.peak_activation_bytes):>13}")
    return "\n".join(lines)


def run_profile(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    model, n_mels, description = load_model(args.model)
    profiles = load_profiles(shipped_profile_names() if args.target == "all" else [t.strip() for t in args.target.split(",") if t.strip()])
    graph, frames = decompose(model, zoo.example_input(args.seconds, n_mels=n_mels))
    reports = [estimate_graph(graph, frames, profile, args.seconds) for profile in profiles]
    if args.json:
        print(json.dumps({"model": description, "seconds": args.seconds, "reports": [r.to_dict() for r in reports]}, indent=2))
    else:
        print(format_reports(description, args.seconds, reports))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fairspeech")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_profile(args)


if __name__ == "__main__":
    raise SystemExit(main())
