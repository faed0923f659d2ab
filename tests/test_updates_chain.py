"""The neural-diff experiment driver end to end on the tone corpus: the deployed model is trained without the
updates' names, each update is trained full / sparse / hashed from its own chain's previous model, every diff
applied to its base gives the trained model, and a rerun reuses everything."""

import json

import pandas as pd
import pytest

from fairspeech.asr.synthetic import make_tone_corpus, tiny_overrides
from conftest import load_recipe_module

chain = load_recipe_module("neural_diff", "chain")

NAMED = {"bad", "cab", "ace", "bed"}  # the tone corpus's "names": these first words


@pytest.fixture()
def corpus(tmp_path, monkeypatch):
    manifest = make_tone_corpus(tmp_path / "tones", n_speakers=8, utterances_per_speaker=6)
    frame = pd.read_parquet(manifest).assign(sentence_template="named")
    frame.to_parquet(manifest, index=False)
    monkeypatch.setattr(chain, "name_of", lambda reference, template: reference.split()[0] if reference.split()[0] in NAMED else None)
    return tmp_path, manifest


def _settings(root, manifest):
    return {
        "deployed": {"exp_dir": str(root / "deployed"), "overrides": tiny_overrides(manifest, root / "feats", epochs=2)},
        "experiment": {"out_dir": str(root / "nd"), "results": str(root / "nd" / "results.json"), "updates": 2, "replay_ratio": 0.5,
                       "eval_splits": ["dev", "test"], "by": ["voice_family"], "n_boot": 20, "chain_methods": ["full", "sparse", "hashed"],
                       "chain_density": 0.2, "single_methods": ["sparse"], "single_density": 0.05, "value_dtype": "float16"},
        "train": {"epochs": 1, "lr": 0.003, "warmup_steps": 1, "threads": 1, "progress": False},
        "sparse": {"prune_start": 0.1, "prune_end": 0.7, "prune_every": 1},
        "gate": {"max_wer_increase": 0.0, "min_speakers": 1},
    }


def test_chain_trains_the_deployed_model_without_names_then_each_update(corpus):
    root, manifest = corpus
    results = chain.Experiment(_settings(root, manifest), seed=0).run()
    frame = pd.read_parquet(manifest)
    train_rows = frame[frame.split == "train"]
    unnamed = int((~train_rows.reference.str.split().str[0].isin(NAMED)).sum())
    assert results["base_train"]["train_utterances"] == unnamed  # no utterance with a name reached the deployed model
    assert sorted(n for names in results["names"]["names_per_update"].values() for n in names) == sorted(
        NAMED & set(train_rows.reference.str.split().str[0]))
    methods = [(r["update"], r["method"]) for r in results["chain"]]
    assert methods == [(k, m) for k in (1, 2) for m in ("full", "sparse", "hashed")]
    for record in results["chain"] + results["single_update"]:
        if record["method"] != "full":
            assert record["applied_equals_trained"] and "wer_relative_to_full" in record
            low, high = record["wer_relative_to_full_interval"]
            assert low <= record["wer_relative_to_full"] <= high
            assert record["sizes"]["shipped"]["disk"] < record["sizes"]["model"]["disk"]
    update2_sparse = next(r for r in results["chain"] if r["update"] == 2 and r["method"] == "sparse")
    assert update2_sparse["base"].endswith("sparse/update1/model.safetensors")  # chained on its own previous model
    assert json.loads((root / "nd" / "results.json").read_text())["summary"]["chain"].keys() == {"full", "sparse", "hashed"}

    deployed = root / "deployed" / "model.safetensors"
    before = (deployed.stat().st_mtime_ns, (root / "nd" / "sparse" / "update2" / "model.safetensors").stat().st_mtime_ns)
    again = chain.Experiment(_settings(root, manifest), seed=0).run()
    assert (deployed.stat().st_mtime_ns, (root / "nd" / "sparse" / "update2" / "model.safetensors").stat().st_mtime_ns) == before
    assert [r["wer"] for r in again["chain"]] == [r["wer"] for r in results["chain"]]

    # [experiment] base = a model file: that model is the deployed one, [deployed] is not trained
    given = _settings(root, manifest)
    given["deployed"]["exp_dir"] = str(root / "never_trained")
    given["experiment"].update(base=str(deployed), chain_methods=["full"], single_methods=[], results=str(root / "nd" / "seed{seed}.json"))
    reused = chain.Experiment(given, seed=0).run()
    assert (root / "nd" / "seed0.json").exists()  # "{seed}" in a path: one settings file for every seed
    assert reused["base_model"] == str(deployed) and not (root / "never_trained").exists()
    assert reused["chain"][0]["wer"] == results["chain"][0]["wer"]  # the same full update 1, reused from its folder


def test_settings_need_a_deployed_model(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[experiment]\nout_dir = "x"\n')
    from fairspeech.errors import ConfigError

    with pytest.raises(ConfigError, match=r"needs \[experiment\] base .* or a \[deployed\] section"):
        chain.load_settings(path)


def test_changed_settings_retrain_the_updates(corpus):
    root, manifest = corpus
    settings = _settings(root, manifest)
    settings["experiment"].update(chain_methods=["full", "sparse"], single_methods=[])
    first = chain.Experiment(settings, seed=0).run()
    settings["train"]["epochs"] = 2
    again = chain.Experiment(settings, seed=0).run()
    steps = lambda results: [r["train"]["steps"] for r in results["chain"]]  # noqa: E731
    assert all(b == 2 * a for a, b in zip(steps(first), steps(again)))
    # a method's own schedule ([sparse.train]) retrains that method only; the full updates are reused
    full_model = root / "nd" / "full" / "update2" / "model.safetensors"
    stamp = full_model.stat().st_mtime_ns
    settings["sparse"]["train"] = {"epochs": 4}
    third = chain.Experiment(settings, seed=0).run()
    by_method = lambda results, m: [r["train"]["steps"] for r in results["chain"] if r["method"] == m]  # noqa: E731
    assert by_method(third, "sparse") == [2 * s for s in by_method(again, "sparse")]
    assert by_method(third, "full") == by_method(again, "full") and full_model.stat().st_mtime_ns == stamp
    # the cache follows the resolved schedule, not its spelling: restating [train]'s rate in [sparse.train] retrains nothing
    sparse_model = root / "nd" / "sparse" / "update2" / "model.safetensors"
    stamp = sparse_model.stat().st_mtime_ns
    settings["sparse"]["train"] = {"epochs": 4, "lr": settings["train"]["lr"]}
    fourth = chain.Experiment(settings, seed=0).run()
    assert sparse_model.stat().st_mtime_ns == stamp and [r["wer"] for r in fourth["chain"]] == [r["wer"] for r in third["chain"]]
    # a second method of one type on the same chain: its own table, its own models; the others are reused
    settings["sparse_fisher"] = {"type": "sparse", "criterion": "fisher"}  # [sparse]'s schedule and [sparse.train], inherited
    settings["experiment"]["chain_methods"] = ["full", "sparse", "sparse_fisher"]
    fifth = chain.Experiment(settings, seed=0).run()
    assert sparse_model.stat().st_mtime_ns == stamp
    fisher = [r for r in fifth["chain"] if r["method"] == "sparse_fisher"]
    assert [r["type"] for r in fisher] == ["sparse", "sparse"] and all("wer_relative_to_full" in r for r in fisher)
    assert [r["train"]["steps"] for r in fisher] == by_method(third, "sparse")  # [sparse.train]'s epochs
    assert fisher[1]["base"].endswith("sparse_fisher/update1/model.safetensors")
    assert not (root / "nd" / "sparse_fisher" / "update2" / "update.diff.safetensors").read_bytes() == \
        (root / "nd" / "sparse" / "update2" / "update.diff.safetensors").read_bytes()
    settings["experiment"]["chain_methods"] = ["full", "sprase"]
    with pytest.raises(KeyError, match="sprase"):
        chain.Experiment(settings, seed=0).run()


def test_a_settings_file_starts_from_its_base(tmp_path):
    (tmp_path / "config.toml").write_text('[deployed]\nexp_dir = "d"\n[experiment]\nout_dir = "x"\nresults = "r.json"\nupdates = 5\n'
                                          'replay_ratio = 0.5\neval_splits = ["dev"]\nby = []\nn_boot = 10\nchain_density = 0.1\n'
                                          'single_density = 0.01\nchain_methods = ["full"]\nsingle_methods = []\nvalue_dtype = "float16"\n'
                                          '[train]\nepochs = 4\nlr = 5e-4\n')
    (tmp_path / "longer.toml").write_text('base = "config.toml"\n[experiment]\nout_dir = "y"\n[full.train]\nepochs = 8\n')
    settings = chain.load_settings(tmp_path / "longer.toml")
    assert settings["experiment"]["out_dir"] == "y" and settings["experiment"]["updates"] == 5
    assert settings["train"] == {"epochs": 4, "lr": 5e-4} and settings["full"] == {"train": {"epochs": 8}}
    assert chain.load_settings("recipes/neural_diff/epochs_8.toml")["sparse"]["train"] == {"epochs": 8}
    assert chain.load_settings("recipes/neural_diff/epochs_8.toml")["train"]["lr"] == 5e-4  # through lr_5e-4.toml
    seeds = chain.load_settings("recipes/neural_diff/seeds.toml")["experiment"]
    assert seeds["base"] == "runs/neural_diff/deployed/model.safetensors" and "{seed}" in seeds["out_dir"] and "{seed}" in seeds["results"]
