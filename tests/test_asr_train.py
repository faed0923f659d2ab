"""End to end on a tiny tone corpus: training lowers the CTC loss, resume after a kill is exact,
evaluation writes a manifest the audit reads."""

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from fairspeech.training import checkpoint as ckpt
from fairspeech.asr.config import load_config
from fairspeech.asr.evaluate import evaluate
from fairspeech.asr.synthetic import make_tone_corpus, tiny_config, tiny_overrides
from fairspeech.asr.train import train
from fairspeech.training.trainer import learning_rate
from fairspeech.data.manifest import read_manifest


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_tone_corpus(tmp_path_factory.mktemp("tones"))


def test_training_lowers_ctc_loss(corpus, tmp_path):
    summary = train(tiny_config(corpus, tmp_path / "feats", epochs=6, dev_every=4), tmp_path / "exp")
    ctc = [record["ctc"] for record in summary["log"]]
    assert summary["stopped"] == "completed" and summary["epochs_completed"] == 6
    assert [d["epoch"] for d in summary["dev_by_epoch"]] == [4, 6]  # every 4 epochs and after the last
    assert len(ctc) >= 2 and ctc[-1] < 0.6 * ctc[0]
    assert (tmp_path / "exp" / "model.safetensors").exists()


def test_resume_after_kill_continues_identically(corpus, tmp_path):
    feats = tmp_path / "feats"
    straight = train(tiny_config(corpus, feats, epochs=3), tmp_path / "straight")
    assert straight["steps"] >= 6
    # Killed after 4 steps: the newest checkpoint is step 3, so step 4 is lost and redone.
    killed = train(tiny_config(corpus, feats, epochs=3), tmp_path / "resumed", stop_after_steps=4)
    assert killed["stopped"] == "stop_after_steps"
    assert ckpt.list_checkpoints(tmp_path / "resumed" / "checkpoints") == [3]
    resumed = train(tiny_config(corpus, feats, epochs=3), tmp_path / "resumed")
    assert resumed["steps"] == straight["steps"]
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["ctc"] for r in resumed["log"]] == [r["ctc"] for r in straight["log"]]


def test_same_seed_same_numbers_other_seed_other_numbers(corpus, tmp_path):
    feats = tmp_path / "feats"
    a = train(tiny_config(corpus, feats, epochs=1), tmp_path / "a")
    b = train(tiny_config(corpus, feats, epochs=1), tmp_path / "b")
    c = train(tiny_config(corpus, feats, epochs=1, seed=1), tmp_path / "c")
    assert [r["ctc"] for r in a["log"]] == [r["ctc"] for r in b["log"]]
    wa, wc = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "c" / "model.safetensors"))
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_checkpoint_keeps_newest_and_ignores_incomplete(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, step, model, opt, {"epoch": 0, "step": step}, keep=2)
    assert ckpt.list_checkpoints(tmp_path) == [2, 3]
    (tmp_path / "step-00000004.json").write_text("{}")  # sidecar without weights: a write that never finished
    assert ckpt.list_checkpoints(tmp_path) == [2, 3]
    other, other_opt = torch.nn.Linear(3, 2), None
    other_opt = torch.optim.AdamW(other.parameters())
    meta = ckpt.load_checkpoint(tmp_path, other, other_opt)
    assert meta["step"] == 3
    assert torch.equal(other.weight, model.weight)
    assert torch.equal(other_opt.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert other_opt.param_groups[0]["betas"] == opt.param_groups[0]["betas"]


def test_learning_rate_warms_up_then_decays():
    config = load_config(None, ["train.lr=1e-3", "train.warmup_steps=10", "train.min_lr_ratio=0.1"]).train
    lrs = [learning_rate(s, 100, config) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert learning_rate(100, 100, config) == pytest.approx(1e-4)


def test_evaluation_writes_an_auditable_manifest(corpus, tmp_path):
    # A corpus that already carries another recognizer's hypotheses (as the demo corpus carries pocketsphinx's).
    source = pd.read_parquet(corpus)
    source["hypothesis"] = source["reference"].str.split().str[0]
    with_prior = tmp_path / "manifest.parquet"
    source.to_parquet(with_prior, index=False)
    config = tiny_config(with_prior, tmp_path / "feats", epochs=2)
    train(config, tmp_path / "exp")
    results = evaluate(tmp_path / "exp" / "model.safetensors", tmp_path / "eval")
    assert set(results) == {"dev", "test"}
    prior = results["test"]["prior_recognizer"]["overall"]
    test_rows = source[source["split"] == "test"]
    expected = 1 - len(test_rows) / test_rows["reference"].str.split().str.len().sum()  # one word kept per request
    assert prior["wer"] == pytest.approx(expected)
    manifest = read_manifest(tmp_path / "eval" / "test_manifest.parquet")
    frame = manifest.frame
    assert len(frame) == len(test_rows)
    assert {"utt_id", "speaker_id", "reference", "hypothesis", "prior_hypothesis", "voice_family", "gender", "encoder_frames"} <= set(frame.columns)
    assert results["test"]["overall"]["wer"] >= 0
    assert "voice_family" in results["test"]["by"]
    assert (tmp_path / "eval" / "audit_test" / "audit.json").exists()


def test_recognizer_of_wav_files_writes_what_evaluation_writes(corpus, tmp_path):
    from fairspeech.asr.config import build_model
    from fairspeech.asr.data import SplitData, build_feature_cache
    from fairspeech.asr.evaluate import transcribe
    from fairspeech.asr.recognizer import TrainedRecognizer
    from fairspeech.asr.tokenizer import CharTokenizer

    torch.manual_seed(3)  # untrained: its outputs are varied, so agreement means something
    config = tiny_config(corpus, tmp_path / "feats")
    tokenizer = CharTokenizer()
    model = build_model(config, tokenizer.vocab_size).eval()
    ckpt.save_model(tmp_path / "model.safetensors", model, {"config": config.to_dict(), "tokenizer": tokenizer.to_dict()})
    frame = pd.read_parquet(corpus).iloc[:6]
    expected, _ = transcribe(model, SplitData(build_feature_cache(frame, tmp_path / "feats.safetensors", progress=False)), tokenizer)
    assert len(set(expected)) > 1
    recognizer = TrainedRecognizer(tmp_path / "model.safetensors")
    assert recognizer.transcribe_many(frame["audio_path"].tolist(), progress=False) == expected


@pytest.mark.parametrize("kind,section,settings", [
    ("amortized", "amortized", ["amortized.fast_rank=4", "amortized.profile=\"single_thread_650mflops\""]),
    ("gated", "gating", ["gating.compute_weight=0.5"]),
])
def test_variant_fine_tunes_from_the_baseline_and_reports_compute(corpus, tmp_path, kind, section, settings):
    from fairspeech.asr.results import variants_results

    base = tiny_config(corpus, tmp_path / "feats", epochs=1)
    train(base, tmp_path / "base")
    evaluate(tmp_path / "base" / "model.safetensors", tmp_path / "base" / "eval", ["test"], {"profile": "single_thread_650mflops"})
    variant = load_config(None, [f"model.kind=\"{kind}\"", *settings])
    variant.data, variant.model, variant.eval = base.data, base.model, base.eval
    variant.train = base.train
    variant.train.init_from = str(tmp_path / "base" / "model.safetensors")
    summary = train(variant, tmp_path / kind)
    assert summary["init"]["loaded"] > 10 and "temperature" in summary["log"][-1]
    results = evaluate(tmp_path / kind / "model.safetensors", tmp_path / kind / "eval", ["test"], {"profile": "single_thread_650mflops"})
    test = results["test"]
    assert 0.0 <= test["routing_rate"] <= 1.0 and set(test["routing_by_cohort"]["voice_family"]) == {"high"}
    assert test["efficiency"]["flops_per_frame"] > 0 and test["efficiency"]["latency_ms"]["max"] >= 0
    report = variants_results("x", tmp_path / "base" / "eval", {kind: tmp_path / kind / "eval"}, {kind: tmp_path / kind})
    versus = report["variants"][kind]["splits"]["test"]["vs_reference"]
    assert versus["compute_reduction"] < 1 and "relative_wer_increase" in versus


def test_config_base_file_and_overrides(tmp_path):
    (tmp_path / "base.toml").write_text('name = "b"\n[model]\ndim = 64\nlayers = 3\n[train]\nepochs = 5\n')
    (tmp_path / "variant.toml").write_text('base = "base.toml"\nname = "v"\n[model]\nkind = "gated"\nlayers = 2\n[gating]\ncompute_weight = 0.3\n')
    config = load_config(tmp_path / "variant.toml", ["train.epochs=7", 'data.tokenizer="bpe"'])
    assert (config.name, config.kind, config.model.dim, config.model.layers) == ("v", "gated", 64, 2)
    assert config.train.epochs == 7 and config.data.tokenizer == "bpe" and config.variant == {"compute_weight": 0.3}
    from fairspeech.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[train\] has unknown keys \['epoch'\]"):
        load_config(None, ["train.epoch=3"])


def test_sigkill_mid_training_then_rerun_ends_with_the_same_weights(corpus, tmp_path):
    """A real kill (SIGKILL, no chance to clean up), wherever it lands, then the same command again."""
    import os
    import signal
    import subprocess
    import sys
    import time

    config = tiny_config(corpus, tmp_path / "feats", epochs=4)
    train(config, tmp_path / "straight")
    args = [sys.executable, "-m", "fairspeech.asr.train", "none", "--exp-dir", str(tmp_path / "killed")]
    command = args + [item for o in tiny_overrides(corpus, tmp_path / "feats", epochs=4) for item in ("--set", o)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 120
    while not ckpt.list_checkpoints(checkpoints) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed" / "model.safetensors").exists(), "killed too late to test anything"
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_teacher_pulls_the_model_towards_its_posteriors(corpus, tmp_path):
    """[train] teacher: the KL to a trained model's posteriors joins the loss (a gated variant distilled from the
    model it starts from); a teacher whose tokenizer differs is refused, since its posteriors mean other tokens."""
    from fairspeech.asr.data import load_splits, SplitData
    from fairspeech.asr.distill import posterior_kl
    from fairspeech.asr.evaluate import load_trained

    feats = tmp_path / "feats"
    train(tiny_config(corpus, feats, epochs=4), tmp_path / "teacher")
    teacher_path = tmp_path / "teacher" / "model.safetensors"
    gated = ["model.kind=\"gated\"", "gating.compute_weight=2.0", f'train.init_from="{teacher_path}"']
    plain = train(load_config(None, tiny_overrides(corpus, feats, epochs=2) + gated), tmp_path / "plain")
    taught = train(load_config(None, tiny_overrides(corpus, feats, epochs=2, teacher=str(teacher_path), teacher_weight=20.0) + gated),
                   tmp_path / "taught")
    assert "distill_kl" in taught["log"][-1] and "distill_kl" not in plain["log"][-1]

    frame, cache = load_splits(corpus, ["dev"], feats)["dev"]
    dev = SplitData(cache)
    batch = dev.batch(list(range(len(frame))))
    teacher, _, _ = load_trained(teacher_path)

    def kl(path):
        model, _, _ = load_trained(path)
        with torch.no_grad():
            ref, out = teacher(batch.features, batch.lengths), model(batch.features, batch.lengths)
        return float(posterior_kl(ref.log_probs, out.log_probs, out.lengths).mean())

    assert kl(tmp_path / "taught" / "model.safetensors") < 0.5 * kl(tmp_path / "plain" / "model.safetensors")

    train(load_config(None, tiny_overrides(corpus, feats, epochs=1) + ['data.tokenizer="bpe"', "data.bpe_merges=5"]), tmp_path / "other_tokens")
    with pytest.raises(ValueError, match="tokenizer differs"):
        train(load_config(None, tiny_overrides(corpus, feats, epochs=1, teacher=str(tmp_path / "other_tokens" / "model.safetensors"))),
              tmp_path / "refused")


def test_feature_cache_is_keyed_by_front_end_settings_and_refuses_a_mismatch(corpus, tmp_path):
    from fairspeech.asr.data import build_feature_cache, load_splits
    from fairspeech.asr.features import LogMel

    default = load_splits(corpus, ["train"], tmp_path / "feats", progress=False)["train"][1]
    coarse = load_splits(corpus, ["train"], tmp_path / "feats", logmel=LogMel(n_mels=40), progress=False)["train"][1]
    files = sorted(p.name for p in (tmp_path / "feats").glob("*.safetensors"))
    assert len(files) == 2 and all(name.startswith("train-logmel") for name in files)  # side by side, never mixed
    assert default.features.dtype == torch.float16 and default.features.shape[1] == 80 and coarse.features.shape[1] == 40
    # A file whose sidecar records other settings is refused, not silently reused or overwritten.
    frame = pd.read_parquet(corpus).iloc[:4]
    path = tmp_path / "one.safetensors"
    build_feature_cache(frame, path, progress=False)
    with pytest.raises(ValueError, match="other front-end settings"):
        build_feature_cache(frame, path, LogMel(n_mels=40), progress=False)
    # Other utterances with the same settings: rebuilt.
    assert len(build_feature_cache(frame.iloc[:2], path, progress=False)) == 2
