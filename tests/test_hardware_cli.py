"""``fairspeech profile``: built-in names and trained checkpoints, on profiles with and without measurements."""

import argparse
import json

import pytest

from fairspeech.training import checkpoint as ckpt
from fairspeech.asr.config import build_model, load_config
from fairspeech.asr.tokenizer import CharTokenizer
from fairspeech.hardware.cli import add_parser, run_profile


def parse(argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["profile", *argv])


def test_builtin_model_on_two_profiles(capsys):
    assert run_profile(parse(["conv_small", "--target", "single_thread_650mflops,neural_engine_like", "--seconds", "1"])) == 0
    out = capsys.readouterr().out
    assert "MFLOP per output frame" in out and "50 output frames" in out
    assert "single_thread_650mflops" in out and "neural_engine_like" in out and out.count("roofline") == 2


def test_trained_checkpoint_as_json(tmp_path, capsys):
    config = load_config(None, ["model.dim=64", "model.heads=2", "model.ff_dim=128", "model.layers=1"])
    tokenizer = CharTokenizer()
    model = build_model(config, tokenizer.vocab_size)
    path = tmp_path / "model.safetensors"
    ckpt.save_model(path, model, {"config": config.to_dict(), "tokenizer": tokenizer.to_dict(), "step": 0})
    assert run_profile(parse([str(tmp_path), "--target", "single_thread_650mflops", "--seconds", "2", "--json"])) == 0
    data = json.loads(capsys.readouterr().out)
    (report,) = data["reports"]
    assert report["profile"] == "single_thread_650mflops" and report["output_frames"] == 49
    assert report["flops_per_frame"] == pytest.approx(report["flops"] / 49)
    assert report["latency_s"] >= report["flops"] / 650e6  # never faster than the peak rate
    assert report["real_time_factor"] == pytest.approx(report["latency_s"] / 2)


def test_unknown_model_and_profile_fail_clearly():
    with pytest.raises(FileNotFoundError, match="built-in"):
        run_profile(parse(["no_such_model"]))
    with pytest.raises(FileNotFoundError, match="known profiles"):
        run_profile(parse(["conv_small", "--target", "no_such_device"]))
