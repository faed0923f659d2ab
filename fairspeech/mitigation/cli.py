"""``fairspeech finetune --recipe ewc``: fine-tune the base recognizer for its worst cohorts and compare mitigations."""

from __future__ import annotations

import argparse

RECIPES = ("ewc",)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("finetune", help="fine-tune an ASR model for its worst cohorts (EWC, replay, distillation) and measure negative flips")
    parser.add_argument("--recipe", choices=RECIPES, default="ewc", help="mitigation recipe (default: %(default)s)")
    parser.add_argument("--config", default=None, help="recipe TOML, e.g. recipes/ewc_finetune/config.toml (default: built-in defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting, e.g. lambdas=[1,10] or train.epochs=2 (repeatable)")
    parser.add_argument("--seed", type=int, default=None, help="seed for cohorts, Fisher sample, replay and training (default: the config's seed)")
    parser.add_argument("--variants", default=None, help="comma-separated subset of none,finetune,replay,ewc_<lambda>,ewc_distill")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run)
    return parser


def run(args) -> int:
    from fairspeech.mitigation.finetune import load_settings, run_comparison

    overrides = list(args.set)
    if args.variants:
        overrides.append("variants=[" + ",".join(f'"{v.strip()}"' for v in args.variants.split(",")) + "]")
    if args.no_progress:
        overrides.append("progress=false")
    settings = load_settings(args.config, overrides, seed=args.seed)
    report = run_comparison(settings)
    print(f"wrote {settings.result} ({report['wall_minutes']:.1f} min)")
    return 0


def main(argv=None) -> int:
    from fairspeech.errors import cli_status

    parser = argparse.ArgumentParser(prog="fairspeech")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["finetune", *(argv if argv is not None else __import__("sys").argv[1:])])
    return cli_status(args.handler, args)


if __name__ == "__main__":
    raise SystemExit(main())
