"""EWC, sparse diffs and adversarial reweighting on a user's transformers model: tiny random-initialised
Wav2Vec2ForCTC and Whisper configs (nothing is downloaded), trained through fairspeech's Trainer."""

import math

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from fairspeech.asr.data import UtteranceData  # noqa: E402
from fairspeech.asr.hf import Wav2Vec2CTC, WhisperASR  # noqa: E402
from fairspeech.mitigation.ewc import DiagonalFisher, OnlineEWC  # noqa: E402
from fairspeech.training import AdversarialReweighter, Callback, CTCObjective, Seq2SeqObjective, Trainer, TrainerConfig  # noqa: E402
from fairspeech.updates import format as fmt  # noqa: E402
from fairspeech.updates.train import DiffTrainer  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def tiny_wav2vec2() -> Wav2Vec2CTC:
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(
        vocab_size=12, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8),
        conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, pad_token_id=0,
        feat_extract_norm="group", mask_time_prob=0.0, layerdrop=0.0)
    return Wav2Vec2CTC(transformers.Wav2Vec2ForCTC(config))


def tiny_whisper() -> WhisperASR:
    torch.manual_seed(0)
    config = transformers.WhisperConfig(
        vocab_size=20, num_mel_bins=8, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=16, decoder_ffn_dim=16, d_model=16, max_source_positions=8, max_target_positions=16, pad_token_id=1,
        bos_token_id=2, eos_token_id=3, decoder_start_token_id=2, suppress_tokens=None, begin_suppress_tokens=None)
    return WhisperASR(transformers.WhisperForConditionalGeneration(config))


def waveform_data(n: int = 8, seed: int = 0) -> UtteranceData:
    rng = np.random.default_rng(seed)
    inputs = [torch.from_numpy(rng.standard_normal(int(rng.integers(1200, 2000))).astype(np.float32)) for _ in range(n)]
    targets = [rng.integers(1, 12, int(rng.integers(2, 5))).tolist() for _ in range(n)]
    return UtteranceData(inputs, targets)


def logmel_data(n: int = 8, seed: int = 0) -> UtteranceData:
    rng = np.random.default_rng(seed)
    inputs = [torch.from_numpy(rng.standard_normal((int(rng.integers(10, 17)), 8)).astype(np.float32)) for _ in range(n)]
    targets = [rng.integers(4, 20, int(rng.integers(2, 6))).tolist() for _ in range(n)]
    return UtteranceData(inputs, targets)


MODELS = {
    "wav2vec2": (tiny_wav2vec2, waveform_data, lambda m: CTCObjective(m.blank_id), 4000),
    "whisper": (tiny_whisper, logmel_data, lambda m: Seq2SeqObjective(), 40),
}


def fit(model, objective, data, callbacks=(), steps: int = 6, lr: float = 3e-3, device="cpu", max_frames=None):
    plan = data.batches(max_frames, shuffle_seed=[0, 0])
    trainer = Trainer(model, objective, TrainerConfig(lr=lr, warmup_steps=1, progress=False), callbacks, device=device)
    epochs = math.ceil(steps / len(plan))
    return trainer, trainer.fit(lambda epoch: data.batches(max_frames, shuffle_seed=[0, epoch]), epochs, make_batch=data.batch)


def distance_to(model, anchor: dict) -> float:
    return float(sum(((p.detach().float() - anchor[n].to(p.device)) ** 2).sum() for n, p in model.named_parameters() if n in anchor))


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("device", DEVICES)
def test_ewc_pulls_a_transformers_model_towards_its_anchor(name, device):
    build, make_data, make_objective, max_frames = MODELS[name]
    population, adaptation = make_data(8, seed=1), make_data(6, seed=2)
    results = {}
    for lam in (0.0, 1e4):
        model = build().to(device)
        objective = make_objective(model)
        fisher = DiagonalFisher(kind="empirical", progress=False).fit(model, population, objective=objective)
        assert all(f.device.type == device for f in fisher.fisher_.values())
        assert fisher.n_samples_ == len(population) and fisher.raw_mean_ > 0
        ewc = OnlineEWC().consolidate(model, fisher.fisher_)
        anchor = {k: v.clone() for k, v in ewc.anchor_.items()}
        fit(model, objective, adaptation, [ewc.callback(lam)], device=device, max_frames=max_frames)
        results[lam] = (float(ewc.distance(model).detach()), distance_to(model, anchor))
    # the penalty is what differs: with it the Fisher-weighted distance from the pre-update weights shrinks
    assert results[1e4][0] < 0.5 * results[0.0][0]
    assert results[1e4][1] < results[0.0][1]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sparse_diff_of_a_transformers_model_has_the_density_asked(name):
    build, make_data, make_objective, max_frames = MODELS[name]
    model = build()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    diff = DiffTrainer("sparse", density=0.05, prune_every=1, value_dtype="float32")
    fit(model, make_objective(model), make_data(6), [diff], steps=8, max_frames=max_frames)
    parameters = diff.diff_.header["parameters"]
    assert diff.diff_.header["entries"] == math.ceil(0.05 * parameters)
    assert diff.diff_.header["density"] == pytest.approx(0.05, abs=1.0 / parameters + 1e-9)
    applied = fmt.apply_diff(base, diff.diff_)
    trained = model.state_dict()
    assert all(torch.equal(applied[k], trained[k]) for k in trained)  # the file rebuilds exactly the trained weights
    tied = diff.diff_.header.get("tied", {})  # Whisper's output projection is its token embedding
    assert (name == "whisper") == bool(tied)
    changed = sum(int((applied[k] != base[k]).sum()) for k in base if k not in tied)
    assert 0 < changed <= diff.diff_.header["entries"]


class WeightProbe(Callback):
    """Records the weights the reweighter puts on every batch."""

    name = "probe"

    def __init__(self, reweighter):
        self.reweighter, self.seen = reweighter, []

    def regularize(self, trainer, batch, loss):
        weights = self.reweighter.sample_weights(trainer, batch, loss)
        if weights is not None:
            self.seen.append((trainer.step, weights.samples.detach().cpu(), len(batch.indices)))
        return None


@pytest.mark.parametrize("name", sorted(MODELS))
def test_reweighter_weights_a_transformers_models_utterances(name):
    build, make_data, make_objective, max_frames = MODELS[name]
    model = build()
    data = make_data(8)
    dim = model.model.config.hidden_size if name == "wav2vec2" else model.model.config.d_model
    reweighter = AdversarialReweighter(dim, len(data), n_clusters=2, hidden=8, adversary_lr=1e-2, start_step=2, recluster_every=2)
    probe = WeightProbe(reweighter)
    fit(model, make_objective(model), data, [reweighter, probe], steps=8, max_frames=max_frames)
    assert probe.seen and all(step >= 2 for step, _, _ in probe.seen)  # plain training before start_step
    for _, weights, n in probe.seen:
        assert len(weights) == n
        assert float(weights.sum()) == pytest.approx(2 * n, rel=1e-5)  # ARL normalization: 1 + n s / sum(s), mean 2
        assert float(weights.min()) >= 1.0
    assert bool(reweighter.state_.seen.all())  # every utterance's embedding reached the bank
    assert reweighter.state_.centers.abs().sum() > 0  # clusters fitted on it


def test_pair_weight_is_the_sum_of_sample_weights():
    from fairspeech.training.protocol import StepLoss, Weights, combine

    per_sample = torch.tensor([1.0, 2.0, 3.0])
    i, j = torch.tensor([0, 0, 1]), torch.tensor([1, 2, 2])
    pair_losses = torch.tensor([0.5, 1.0, 1.5])
    weights = torch.tensor([1.0, 2.0, 3.0])
    loss, _ = combine(StepLoss(per_sample, None, pairs=(i, j, pair_losses), pair_weight=1.0), Weights(weights))
    pair_w = torch.tensor([3.0, 4.0, 5.0])
    expected = (weights * per_sample).sum() / weights.sum() + (pair_w * pair_losses).sum() / pair_w.sum()
    assert float(loss) == pytest.approx(float(expected))


def test_own_ctc_model_offers_embeddings_for_reweighting():
    from fairspeech.asr.ctc_model import CTCModel
    from fairspeech.asr.encoder import EncoderConfig

    model = CTCModel(EncoderConfig(n_mels=8, dim=16, heads=2, ff_dim=32, layers=1, subsampling_channels=4), vocab_size=6)
    out = model(torch.randn(3, 40, 8), torch.tensor([40, 30, 20]))
    assert out.embeddings.shape == (3, 16)


def test_trainer_resumes_a_transformers_model_exactly(tmp_path):
    data = waveform_data(8)

    def run(exp_dir, stop=None):
        model = tiny_wav2vec2()
        model.model.train()
        trainer = Trainer(model, CTCObjective(model.blank_id), TrainerConfig(lr=3e-3, warmup_steps=1, checkpoint_every=2, progress=False),
                          exp_dir=exp_dir)
        trainer.fit(lambda epoch: data.batches(4000, shuffle_seed=[0, epoch]), 3, make_batch=data.batch, stop_after_steps=stop)
        return model

    straight = run(tmp_path / "straight")
    run(tmp_path / "resumed", stop=3)  # killed after step 3; the newest checkpoint is step 2
    resumed = run(tmp_path / "resumed")
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))


def test_readme_recipe_ewc_finetunes_a_transformers_model_for_the_worst_audited_cohort(tmp_path):
    """The README's "your own model" lines, on a tiny model and noise audio."""
    import wave

    import pandas as pd

    from fairspeech import UtteranceData, ewc_finetune, read_manifest, run_audit  # the README's imports

    rng = np.random.default_rng(0)
    rows = []
    for k in range(24):
        path = tmp_path / f"u{k}.wav"
        with wave.open(str(path), "wb") as handle:
            handle.setnchannels(1), handle.setsampwidth(2), handle.setframerate(16000)
            handle.writeframes((rng.standard_normal(int(rng.integers(1200, 2000))) * 3000).astype("<i2").tobytes())
        accent = ["a", "b", "c"][k % 3]
        rows.append({"utt_id": f"u{k}", "speaker_id": f"s{k // 2}", "reference": "a b c d", "accent": accent, "audio_path": str(path),
                     "hypothesis": "a b x y" if accent == "c" else "a b c d"})
    pd.DataFrame(rows).to_csv(tmp_path / "dev.csv", index=False)
    vocab = {"<pad>": 0, "|": 1, **{c: i + 2 for i, c in enumerate("abcdxy")}, "<unk>": 8}
    (tmp_path / "vocab.json").write_text(__import__("json").dumps(vocab))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"), pad_token="<pad>", word_delimiter_token="|")
    model = tiny_wav2vec2()
    model.processor = transformers.Wav2Vec2Processor(feature_extractor=transformers.Wav2Vec2FeatureExtractor(), tokenizer=tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    # --- the README lines ---
    audit = run_audit(read_manifest(tmp_path / "dev.csv"), by=["accent"], seed=0, min_speakers=2)
    (worst,) = audit.tables[0].by_group["wer"].idxmax()                # the accent served worst
    rows = audit.utterances
    data = UtteranceData.from_manifest(rows, encode=model.encode)
    summary = ewc_finetune(model, data, np.flatnonzero(rows["accent"] == worst), lam=100.0, epochs=2, lr=1e-3,
                           max_frames=8000, exp_dir=tmp_path / "ewc", progress=False)
    # ---
    assert worst == "c"
    assert summary["target_utterances"] == 8 and summary["fisher_samples"] == 24 and summary["steps"] >= 2
    assert summary["ewc_distance"] > 0
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert (tmp_path / "ewc" / "checkpoints").is_dir()


@pytest.fixture
def saved_model_and_manifest(tmp_path):
    """A tiny wav2vec 2.0 saved as a transformers folder (model + processor) and a 12-utterance noise manifest."""
    import json
    import wave

    import pandas as pd

    vocab = {"<pad>": 0, "|": 1, **{c: i + 2 for i, c in enumerate("abcdxy")}, "<unk>": 8}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    processor = transformers.Wav2Vec2Processor(feature_extractor=transformers.Wav2Vec2FeatureExtractor(),
                                               tokenizer=transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json")))
    model = tiny_wav2vec2()
    model.model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    rng = np.random.default_rng(0)
    rows = []
    for k in range(12):
        with wave.open(str(tmp_path / f"u{k}.wav"), "wb") as handle:
            handle.setnchannels(1), handle.setsampwidth(2), handle.setframerate(16000)
            handle.writeframes((rng.standard_normal(4000) * 3000).astype("<i2").tobytes())
        rows.append({"utt_id": f"u{k}", "speaker_id": f"s{k}", "reference": "a b c", "accent": "abc"[k % 3], "audio_path": f"u{k}.wav"})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    return tmp_path / "model", tmp_path / "m.csv"


def test_audit_transcribes_with_a_saved_transformers_model(saved_model_and_manifest):
    """``--asr hf:PATH``: a local transformers folder (model + processor) fills a manifest's hypotheses."""
    from fairspeech.asr.transcribe import transcribe_manifest
    from fairspeech.data.manifest import read_manifest

    model_dir, manifest_path = saved_model_and_manifest
    out = transcribe_manifest(read_manifest(manifest_path, require_hypothesis=False), f"hf:{model_dir}", progress=False)
    assert out.frame["hypothesis"].map(lambda h: isinstance(h, str)).all() and len(out.frame) == 12


def test_finetune_cli_adapts_a_saved_transformers_model(saved_model_and_manifest, tmp_path):
    import json

    from fairspeech.cli import main

    model_dir, manifest_path = saved_model_and_manifest
    out = tmp_path / "ewc"
    status = main(["finetune", "--model", f"hf:{model_dir}", "--manifest", str(manifest_path), "--target", "accent == 'c'", "--by", "accent",
                   "--out", str(out), "--epochs", "2", "--lr", "1e-3", "--fisher-samples", "6", "--seed", "3", "--no-progress"])
    assert status == 0
    report = json.loads((out / "finetune_report.json").read_text())
    assert report["target_utterances"] == 4 and report["train"]["fisher_samples"] == 6
    assert sorted(report["by"]["accent"]["cohorts"]) == ["a", "b", "c"]
    assert set(report["by"]["accent"]["across_cohorts"]) == {"before", "after"}
    assert (out / "hypotheses_before.csv").exists() and (out / "hypotheses_after.csv").exists()
    tuned = transformers.Wav2Vec2ForCTC.from_pretrained(out / "model", local_files_only=True)
    original = transformers.Wav2Vec2ForCTC.from_pretrained(model_dir, local_files_only=True)
    assert any(not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), original.state_dict().values()))
    assert main(["finetune", "--model", f"hf:{model_dir}", "--manifest", str(manifest_path), "--target", "accent == 'zz'",
                 "--out", str(out)]) == 2  # selects nothing: a one-line input error


def test_diff_cli_creates_and_applies_an_update_of_a_saved_transformers_model(saved_model_and_manifest, tmp_path):
    from fairspeech.cli import main

    model_dir, manifest_path = saved_model_and_manifest
    exp = tmp_path / "update"
    assert main(["diff", "create", "--model", f"hf:{model_dir}", "--manifest", str(manifest_path), "--query", "accent == 'c'",
                 "--exp-dir", str(exp), "--density", "0.05", "--epochs", "2", "--lr", "1e-3", "--value-dtype", "float32"]) in (0, None)
    diff = fmt.read_diff(exp / "update.diff.safetensors")
    assert diff.header["density"] == pytest.approx(0.05, abs=1e-3)
    assert all(not name.startswith("model.") for name in diff.header["tensors"])  # the user's own weight names
    assert main(["diff", "apply", f"hf:{model_dir}", str(exp / "update.diff.safetensors"), "--out", str(tmp_path / "applied")]) in (0, None)
    applied = transformers.Wav2Vec2ForCTC.from_pretrained(tmp_path / "applied", local_files_only=True).state_dict()
    trained = transformers.Wav2Vec2ForCTC.from_pretrained(exp / "model", local_files_only=True).state_dict()
    assert all(torch.equal(applied[k], trained[k]) for k in trained)
    assert (tmp_path / "applied" / "vocab.json").exists()  # the processor travels with the weights


def test_diff_apply_checks_a_transformers_update_per_cohort_before_writing_it(saved_model_and_manifest, tmp_path, capsys):
    """``diff apply hf:BASE DIFF --check SPLIT --manifest M``: both folders decode M's SPLIT rows; the regression
    gate decides whether the updated folder is written."""
    import pandas as pd

    from fairspeech.cli import main

    model_dir, manifest_path = saved_model_and_manifest
    checked = tmp_path / "checked.csv"
    pd.read_csv(manifest_path).assign(split="test").to_csv(checked, index=False)
    exp = tmp_path / "update"
    assert main(["diff", "create", "--model", f"hf:{model_dir}", "--manifest", str(manifest_path), "--exp-dir", str(exp),
                 "--density", "0.05", "--epochs", "1", "--lr", "1e-3", "--value-dtype", "float32"]) in (0, None)
    diff = str(exp / "update.diff.safetensors")
    check = ["--check", "test", "--manifest", str(checked), "--by", "accent", "--min-speakers", "1", "--n-boot", "50"]
    lenient = ["--max-wer-increase", "10", "--max-negative-flip-rate", "1", "--max-word-negative-flip-rate", "1"]
    assert main(["diff", "apply", f"hf:{model_dir}", diff, "--out", str(tmp_path / "applied")] + check + lenient) in (0, None)
    printed = capsys.readouterr().out
    assert "no cohort flagged" in printed and all(f"accent {c}" in " ".join(printed.split()) for c in "abc")
    applied = transformers.Wav2Vec2ForCTC.from_pretrained(tmp_path / "applied", local_files_only=True).state_dict()
    trained = transformers.Wav2Vec2ForCTC.from_pretrained(exp / "model", local_files_only=True).state_dict()
    assert all(torch.equal(applied[k], trained[k]) for k in trained)
    with pytest.raises(SystemExit) as stopped:  # a gate every cohort fails: nothing is written
        main(["diff", "apply", f"hf:{model_dir}", diff, "--out", str(tmp_path / "refused")] + check + ["--max-wer-increase", "-10"])
    assert stopped.value.code == 2 and not (tmp_path / "refused").exists()
    assert "NOT applied" in capsys.readouterr().out
    assert main(["diff", "apply", f"hf:{model_dir}", diff, "--out", str(tmp_path / "x"), "--check", "test"]) == 2
    assert "needs --manifest" in capsys.readouterr().err


def test_audit_cli_transcribes_with_a_saved_whisper_folder(saved_model_and_manifest, tmp_path):
    """``fairspeech audit --asr hf:PATH`` on a Whisper folder (model, feature extractor, tokenizer): Whisper's
    own ``generate`` writes the hypotheses the audit scores."""
    import json

    import pandas as pd

    from fairspeech.cli import main

    _, manifest_path = saved_model_and_manifest
    folder = tmp_path / "whisper"
    chars = "abcdxy"
    vocab = {"<|endoftext|>": 0, "<|startoftranscript|>": 1, "<|notimestamps|>": 2, "Ġ": 3, **{c: i + 4 for i, c in enumerate(chars)}}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    special = "<|endoftext|>"
    tokenizer = transformers.WhisperTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), unk_token=special,
                                              bos_token=special, eos_token=special, pad_token=special)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|startoftranscript|>", "<|notimestamps|>"]})
    processor = transformers.WhisperProcessor(feature_extractor=transformers.WhisperFeatureExtractor(feature_size=8, chunk_length=1),
                                              tokenizer=tokenizer)
    torch.manual_seed(0)
    config = transformers.WhisperConfig(  # 1 s windows: 100 log-mel frames = 2 x max_source_positions
        vocab_size=len(tokenizer), num_mel_bins=8, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=16, decoder_ffn_dim=16, d_model=16, max_source_positions=50, max_target_positions=16, pad_token_id=0,
        bos_token_id=0, eos_token_id=0, decoder_start_token_id=1, suppress_tokens=None, begin_suppress_tokens=None)
    model = transformers.WhisperForConditionalGeneration(config)
    model.generation_config.max_length = 8
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    out = tmp_path / "audit"
    assert main(["audit", str(manifest_path), "--asr", f"hf:{folder}", "--by", "accent", "--out", str(out), "--n-boot", "20",
                 "--n-permutations", "20", "--no-progress"]) == 0
    scored = pd.read_parquet(out / "alignments.parquet")
    assert len(scored) == 12 and scored["ref_words"].sum() == 36
    assert (scored["substitutions"] + scored["insertions"] >= 1).all()  # every utterance got a non-empty hypothesis
    assert "accent" in json.dumps(json.loads((out / "audit.json").read_text())["cohort_tables"])
    from fairspeech.asr.user_model import load_model

    hyps = load_model(f"hf:{folder}").transcribe_many([tmp_path / "u0.wav", tmp_path / "u1.wav"], progress=False)
    assert all(h and "<|" not in h for h in hyps)  # special tokens stripped by the processor
