"""fairspeech.config: one TOML loader for every config, checked as it is loaded, and the loaders built on it."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import load_recipe_module
from fairspeech.config import apply_overrides, from_dict, load, parse_override, read_toml
from fairspeech.errors import ConfigError, InputError

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Train:
    steps: int = 10
    lr: float = 1e-3
    max_minutes: float | None = None
    splits: list[str] = field(default_factory=lambda: ["dev"])
    crop: tuple[int, ...] = (1, 2)
    progress: bool = True


@dataclass
class Recipe:
    name: str = "r"
    seed: int = 0
    train: Train = field(default_factory=Train)
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Frozen:
    size: int  # required
    tags: list = field(default_factory=list)

    def __post_init__(self):
        if self.size < 1:
            raise ValueError(f"size must be at least 1, got {self.size}")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- reading -----------------------------------------------------------------------------------------

def test_base_files_merge_table_by_table_relative_to_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "root.toml", 'name = "root"\n[train]\nsteps = 1\nlr = 0.5\n[extra]\na = {x = 1, y = 2}\n')
    write(tmp_path / "sub" / "mid.toml", 'base = "../root.toml"\n[train]\nsteps = 2\n[extra.a]\ny = 3\n')
    top = write(tmp_path / "sub" / "top.toml", 'base = "mid.toml"\nname = "top"\n')
    assert read_toml(top) == {"name": "top", "train": {"steps": 2, "lr": 0.5}, "extra": {"a": {"x": 1, "y": 3}}}


def test_reading_errors_name_the_file_and_line(tmp_path):
    bad = write(tmp_path / "bad.toml", "[train]\nsteps = = 3\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML at line 2, column \d+: ") as error:
        read_toml(bad)
    assert isinstance(error.value, InputError) and "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="missing.toml: no such config file"):
        read_toml(tmp_path / "missing.toml")
    child = write(tmp_path / "child.toml", 'base = "gone.toml"\n')
    with pytest.raises(ConfigError, match=r"child\.toml: base = 'gone.toml': no such file"):
        read_toml(child)
    write(tmp_path / "a.toml", 'base = "b.toml"\n')
    write(tmp_path / "b.toml", 'base = "a.toml"\n')
    with pytest.raises(ConfigError, match="starts a loop"):
        read_toml(tmp_path / "a.toml")
    with pytest.raises(ConfigError, match="not UTF-8"):
        (tmp_path / "latin.toml").write_bytes(b'name = "caf\xe9"\n')
        read_toml(tmp_path / "latin.toml")


# -- overrides ---------------------------------------------------------------------------------------

def test_overrides_parse_toml_values_else_strings():
    assert parse_override("train.steps=3") == ("train.steps", 3)
    assert parse_override('data.tokenizer="bpe"') == ("data.tokenizer", "bpe")
    assert parse_override("data.tokenizer=bpe") == ("data.tokenizer", "bpe")
    assert parse_override("eval.by=[\"a\", \"b\"]") == ("eval.by", ["a", "b"])
    tree = apply_overrides({"train": {"lr": 1.0}}, ["train.steps=3", "a.b.c=true"])
    assert tree == {"train": {"lr": 1.0, "steps": 3}, "a": {"b": {"c": True}}}
    with pytest.raises(ConfigError, match="expected SECTION.KEY=VALUE"):
        apply_overrides({}, ["train.steps"])
    with pytest.raises(ConfigError, match=r"--set train.lr.x=1: train.lr is 1.0, not a table"):
        apply_overrides({"train": {"lr": 1.0}}, ["train.lr.x=1"])


# -- checking ----------------------------------------------------------------------------------------

def test_nested_dataclasses_and_conversions():
    config = from_dict(Recipe, {"seed": 3, "train": {"steps": 5, "lr": 1, "crop": [4, 5], "max_minutes": 2.5}, "extra": {"k": [1]}})
    assert config == Recipe(seed=3, train=Train(steps=5, lr=1, crop=(4, 5), max_minutes=2.5), extra={"k": [1]})
    assert isinstance(config.train.lr, int)  # an integer is accepted for a float, and kept as written
    frozen = from_dict(Frozen, {"size": 2, "tags": ["a", ["b"]]})
    assert frozen.tags == ("a", ("b",)) and hash(frozen)  # arrays become tuples in a frozen dataclass


@pytest.mark.parametrize("tree, message", [
    ({"train": {"steps": "abc"}}, r"src\.toml: \[train\] steps: expected int, got 'abc' \(a string\)"),
    ({"train": {"steps": True}}, r"\[train\] steps: expected int, got True \(a boolean\)"),
    ({"train": {"steps": 2.5}}, r"\[train\] steps: expected int, got 2.5"),
    ({"train": {"lr": "fast"}}, r"\[train\] lr: expected float, got 'fast'"),
    ({"train": {"progress": 1}}, r"\[train\] progress: expected bool"),
    ({"train": {"splits": "dev"}}, r"\[train\] splits: expected list\[str\]"),
    ({"train": {"splits": ["dev", 3]}}, r"\[train\] splits: expected list\[str\], got \['dev', 3\]"),
    ({"train": {"crop": "12"}}, r"\[train\] crop: expected tuple\[int, \.\.\.\]"),
    ({"train": {"max_minutes": "soon"}}, r"\[train\] max_minutes: expected float \| None"),
    ({"train": 3}, r"src\.toml: train: expected a table, got 3"),
    ({"name": 3}, r"src\.toml: name: expected str, got 3 \(an integer\)"),
    ({"extra": [1]}, r"extra: expected dict"),
    ({"train": {"step": 3}}, r"\[train\] has unknown keys \['step'\] \(did you mean 'steps'\?\); known: \['crop', 'lr', "),
    ({"trian": {}}, r"unknown keys \['trian'\] \(did you mean 'train'\?\) at the top level; known: \['extra', 'name', 'seed', 'train'\]"),
])
def test_wrong_keys_and_types_fail_naming_file_section_and_key(tree, message):
    with pytest.raises(ConfigError, match=message) as error:
        from_dict(Recipe, tree, "src.toml")
    assert "\n" not in str(error.value)


def test_required_fields_and_the_dataclasses_own_checks():
    with pytest.raises(ConfigError, match=r"f\.toml: size: missing") as error:
        from_dict(Frozen, {}, "f.toml")
    assert error.value.key == "size"
    with pytest.raises(ConfigError, match=r"f\.toml: size must be at least 1, got 0"):
        from_dict(Frozen, {"size": 0}, "f.toml")
    with pytest.raises(ConfigError, match=r"f\.toml: \[train\] has unknown keys"):
        from_dict(Train, {"epochs": 3}, "f.toml", section="train")  # a sub-table checked on its own


def test_load_puts_overrides_then_fields_on_the_file(tmp_path):
    path = write(tmp_path / "r.toml", 'seed = 4\n[train]\nsteps = 7\n')
    assert load(Recipe, path).seed == 4
    config = load(Recipe, path, ["train.lr=0.1", "seed=5"], name="cli", seed=None)
    assert (config.name, config.seed, config.train.steps, config.train.lr) == ("cli", 5, 7, 0.1)  # seed=None: the file's
    assert load(Recipe, path, ["seed=5"], seed=9).seed == 9
    assert load(Recipe) == Recipe()
    with pytest.raises(ConfigError, match=r"r\.toml, --set train.steps=abc: \[train\] steps: expected int") as error:
        load(Recipe, path, ["train.lr=1", "train.steps=abc"])
    assert (error.value.section, error.value.key) == ("train", "steps")
    write(path, '[train]\nsteps = "x"\n')
    with pytest.raises(ConfigError, match=r"^[^,]*r\.toml: \[train\] steps"):  # the file's own value: no override named
        load(Recipe, path, ["train.lr=1"])


# -- the loaders built on it -------------------------------------------------------------------------

def test_every_shipped_recipe_loads(monkeypatch):
    from fairspeech.asr.config import load_config
    from fairspeech.demo.build import DemoConfig
    from fairspeech.hardware.costs import shipped_profile_names
    from fairspeech.accelerator import load_profile

    TrainingCorpusConfig = load_recipe_module("asr_baseline", "corpus").TrainingCorpusConfig
    load_settings = load_recipe_module("ewc_finetune", "compare").load_settings
    chain = load_recipe_module("neural_diff", "chain")

    monkeypatch.chdir(REPO)  # recipes name other recipes from the repository root
    kinds = {p.name: load_config(p).kind for p in sorted((REPO / "recipes").glob("asr_*/*.toml")) if p.name != "corpus.toml"}
    assert kinds["branched.toml"] == "amortized" and kinds["gated.toml"] == "gated" and kinds["config.toml"] == "ctc"
    assert load_settings("recipes/ewc_finetune/config.toml").base_training.enabled
    for path in sorted((REPO / "recipes" / "neural_diff").glob("*.toml")):
        assert chain.load_settings(path)["experiment"]["updates"] >= 1
    assert DemoConfig.from_toml("recipes/demo_corpus/config.toml", seed=None, workers=1).workers == 1
    assert isinstance(TrainingCorpusConfig.from_toml("recipes/asr_baseline/corpus.toml").unseen_voices, tuple)
    assert all(load_profile(name).peak_flops > 0 for name in shipped_profile_names())


def test_asr_recipe_layout_and_stored_configs_round_trip(tmp_path):
    from fairspeech.asr.config import dict_to_config, load_config

    for kind in ("ctc", "amortized", "gated"):
        config = load_config(None, [f'model.kind="{kind}"', "train.max_minutes=3"])
        assert dict_to_config(json.loads(json.dumps(config.to_dict()))) == config
    assert load_config(None, ['model.kind="gated"', "gating.compute_weight=0.3"]).variant == {"compute_weight": 0.3}
    with pytest.raises(ConfigError, match=r"defaults, --set gating.compute_wieght=0.3: \[gating\] has unknown keys \['compute_wieght'\]"):
        load_config(None, ['model.kind="gated"', "gating.compute_wieght=0.3"])  # checked at load, not when the model is built
    with pytest.raises(ConfigError, match=r"\[model\] kind: must be one of ctc, amortized, gated; got 'rnn'"):
        load_config(None, ['model.kind="rnn"'])
    with pytest.raises(ConfigError, match=r"unknown config sections \['trian'\]"):
        load_config(None, ["trian.epochs=3"])
    with pytest.raises(ConfigError, match=r"\[train\] epochs: expected int, got 'three'"):
        load_config(write(tmp_path / "r.toml", '[train]\nepochs = "three"\n'))


def test_finetune_and_chain_settings_are_checked_before_training(tmp_path):
    load_settings = load_recipe_module("ewc_finetune", "compare").load_settings
    chain = load_recipe_module("neural_diff", "chain")

    assert load_settings(write(tmp_path / "f.toml", "seed = 5\n")).seed == 5  # --seed not given: the file's
    assert load_settings(tmp_path / "f.toml", seed=2).seed == 2
    with pytest.raises(ConfigError, match=r"\[train\] has unknown keys \['epoch'\]"):
        load_settings(None, ["train.epoch=3"])  # the fine-tunings' [train] overrides, against the ASR [train]
    with pytest.raises(ConfigError, match=r"\[base_training\] defaults, --set train.epochs=x: \[train\] epochs: expected int"):
        load_settings(None, ["base_training.enabled=true", 'base_training.overrides=["train.epochs=x"]'])
    settings = REPO / "recipes" / "neural_diff" / "config.toml"
    text = settings.read_text(encoding="utf-8").replace('config = "recipes/', f'config = "{REPO}/recipes/')
    write(tmp_path / "nd.toml", text + "\n[hashed.train]\nepoch = 2\n")
    with pytest.raises(ConfigError, match=r"nd\.toml: \[hashed.train\] has unknown keys \['epoch'\]"):
        chain.load_settings(tmp_path / "nd.toml")
    write(tmp_path / "nd.toml", text.replace("max_negative_flip_rate = 0.05", 'max_negative_flip_rate = "5%"'))
    with pytest.raises(ConfigError, match=r"\[gate\] max_negative_flip_rate: expected float"):
        chain.load_settings(tmp_path / "nd.toml")


def test_demo_corpus_settings(tmp_path):
    TrainingCorpusConfig = load_recipe_module("asr_baseline", "corpus").TrainingCorpusConfig

    path = write(tmp_path / "c.toml", 'hours = 2\nunseen_voices = ["flite/rms"]\n')
    config = TrainingCorpusConfig.from_toml(path, seed=3, workers=None)
    assert (config.seed, config.hours, config.unseen_voices, config.workers) == (3, 2, ("flite/rms",), 2)
    with pytest.raises(ConfigError, match=r"c\.toml: unseen_voices \['nobody'\] are not in the voice catalogue"):
        TrainingCorpusConfig.from_toml(write(path, 'unseen_voices = ["nobody"]\n'))
    with pytest.raises(ConfigError, match=r"c\.toml: hours: expected float, got 'long'"):
        TrainingCorpusConfig.from_toml(write(path, 'hours = "long"\n'))


# -- command lines: seeds default to the config's, and a bad config exits 2 before any work -----------

def test_cli_seeds_default_to_the_configs():
    from fairspeech.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["finetune"]).seed is None
    assert parser.parse_args(["train-verifier", "--out", "x"]).seed is None
    assert parser.parse_args(["diff", "create", "--base", "m", "--exp-dir", "e"]).seed is None
    assert parser.parse_args(["audit", "m.csv"]).seed == 0  # no config: 0


def test_diff_create_seed_defaults_to_the_base_models(tmp_path):
    from fairspeech.updates.cli import _base_seed

    (tmp_path / "model.json").write_text(json.dumps({"config": {"train": {"seed": 11}}}))
    assert _base_seed(str(tmp_path / "model.safetensors")) == 11
    assert _base_seed(str(tmp_path / "none.safetensors")) == 0


def test_bad_override_exits_2_with_one_line_before_loading_data(tmp_path, capsys):
    from fairspeech.cli import main

    config = write(tmp_path / "x.toml", f'[data]\nmanifest = "{tmp_path / "no_such_manifest.parquet"}"\n')
    assert main(["train-verifier", "--config", str(config), "--set", "train.steps=abc", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "x.toml" in err and "[train] steps" in err and "--set train.steps=abc" in err
    assert not (tmp_path / "out").exists()
    assert load_recipe_module("ewc_finetune", "compare").main(["--config", str(config)]) == 2  # [data] is no finetune setting
    assert "unknown keys ['data']" in capsys.readouterr().err
