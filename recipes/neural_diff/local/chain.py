"""The neural-diff experiment (recipes/neural_diff): one update, then a chain of updates that each bring new names.

    python recipes/neural_diff/local/chain.py recipes/neural_diff/config.toml --seed 0

The demo corpus's requests name places and artists. Train utterances are grouped by the name they
carry (:func:`name_of`); the names are dealt, in a seeded order, into ``updates`` groups of about equal
utterance count, and update ``k`` trains on group ``k``'s utterances plus a replay share of utterances
without names (the way an assistant learns a batch of names before an event). Each update is trained
three ways from the previous model of its own chain: all parameters (the reference; shipping it means
shipping the whole model), a sparse diff, and a hashed diff of the same byte budget (more methods of a
type side by side through their tables, e.g. ``[sparse_fisher] type = "sparse"`` with another criterion). Every model is
decoded on the held-out speakers (``eval_splits``) and compared with the model it replaces: WER and
negative flips overall and per cohort (voice family, gender, and the update's names vs the rest),
flagged by :class:`~fairspeech.updates.check.RegressionGate`. A first "single update" compares a
very sparse diff (the size target) with the full update 1. Results go to the JSON named in the
config after every model, so an interrupted run keeps what it measured; rerunning resumes (trained
models and decoded hypotheses are reused, an interrupted training continues from its checkpoint).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fairspeech.training import checkpoint as ckpt
from fairspeech.asr.config import load_config, read_tree
from fairspeech.asr.train import file_sha256, reuse_or_reset, train, training_record
from fairspeech.data import schema
from fairspeech.demo.sentences import DAYS, STATE_NAMES
from fairspeech.updates import format as fmt
from fairspeech.updates.check import RegressionGate, decode_splits, paired_wer_change, regression_table, table_records
from fairspeech.updates.hashed import budget_bucket_ratio
from fairspeech.updates.train import DIFF_FILE, DiffTrainer, train_update, update_config
from fairspeech.utils import io

_PLACE = "(?P<place>.+?)"
_DAYS = "|".join(DAYS)
# The templates of fairspeech/demo/sentences.py that carry a name, with the name's slot.
NAME_PATTERNS = {
    "weather_day": rf"what is the weather in {_PLACE} (?:{_DAYS})",
    "weather_rain": rf"will it rain in {_PLACE} (?:{_DAYS})",
    "weather_temp": rf"how cold is it in {_PLACE} right now",
    "drive_time": rf"how long does it take to drive to {_PLACE}",
    "navigate": rf"navigate to {_PLACE}",
    "distance": rf"how far is {_PLACE} from here",
    "local_time": rf"what time is it in {_PLACE}",
    "restaurant": rf"find a \w+ place near {_PLACE}",
    "flight": rf"is my flight to {_PLACE} on time",
    "music_song": r"play .+ by (?P<artist>the \w+ \w+)",
    "music_artist": r"play some music by (?P<artist>the \w+ \w+)",
}
_COMPILED = {k: re.compile(f"^{v}$") for k, v in NAME_PATTERNS.items()}
_STATES = sorted(STATE_NAMES.values(), key=len, reverse=True)
METHOD_TYPES = ("full", "sparse", "hashed")
NAMES = "names"  # the cohort attribute: this update's names, other names, no name
THIS_UPDATE, OTHER_NAMES, NO_NAME = "this update", "other names", "no name"


def name_of(reference: str, template: str) -> str | None:
    """The place (city, without its state) or artist a demo request names; None for requests without one."""
    pattern = _COMPILED.get(template)
    match = pattern.match(reference) if pattern else None
    if match is None:
        return None
    if "artist" in match.groupdict():
        return match["artist"]
    place = match["place"]
    for state in _STATES:  # "sumner texas" -> "sumner"; "new york new york" -> "new york"
        if place.endswith(" " + state):
            return place[: -len(state) - 1]
    return place


def deal_names(train: pd.DataFrame, updates: int, seed: int) -> dict[str, int]:
    """Name -> update (1..updates): names in a seeded order, each to the update with the fewest utterances so far."""
    counts = train["name"].dropna().value_counts().sort_index()
    order = np.random.default_rng([seed, 8]).permutation(len(counts))
    load = np.zeros(updates, dtype=np.int64)
    assigned = {}
    for i in order:
        k = int(np.argmin(load))
        assigned[counts.index[i]] = k + 1
        load[k] += counts.iloc[i]
    return assigned


def selection(train: pd.DataFrame, assigned: dict[str, int], k: int, replay_ratio: float, seed: int) -> set[str]:
    """utt_ids update ``k`` trains on: its names' utterances plus ``replay_ratio`` as many without a name."""
    own = train[train["name"].map(assigned) == k]
    plain = train[train["name"].isna()]
    replay = plain.sample(n=min(len(plain), int(round(replay_ratio * len(own)))), random_state=np.random.default_rng([seed, 9, k]))
    return set(own[schema.UTT_ID]) | set(replay[schema.UTT_ID])


def _train_overrides(table: dict) -> list[str]:
    """A TOML [train] table as ``train.key=value`` overrides of the update's config."""
    return [f"train.{key}={json.dumps(value)}" for key, value in table.items()]


def _sizes(model_path: Path, diff_path: Path | None) -> dict:
    model = fmt.compressed_sizes(model_path)
    if diff_path is None:  # a full update ships the whole model
        return {"shipped": model, "smaller_than_model": {k: 0.0 for k in model}}
    diff = fmt.compressed_sizes(diff_path)
    return {"shipped": diff, "model": model, "smaller_than_model": {k: 1 - diff[k] / model[k] for k in diff}}


class Experiment:
    """The driver: ``settings`` is the parsed config.toml (see recipes/neural_diff/config.toml)."""

    def __init__(self, settings: dict, seed: int = 0):
        self.settings = settings
        self.seed = seed

    # -- pieces ------------------------------------------------------------------------------------
    def _type(self, method: str) -> str:
        """A method's update type: its table's ``type`` (several methods of one type side by side, e.g. two
        pruning criteria; such a method starts from its type's table), else the method's own name; one of
        full, sparse, hashed."""
        kind = self.settings.get(method, {}).get("type", method)
        if kind not in METHOD_TYPES:
            raise KeyError(f"method {method!r}: type {kind!r} is not one of {METHOD_TYPES} (set [{method}] type = ...)")
        return kind

    def _table(self, method: str) -> dict:
        """A method's settings: its type's table (e.g. [sparse]), then its own on top, [<method>.train] merged the same way."""
        kind, own = self._type(method), self.settings.get(method, {})
        inherited = self.settings.get(kind, {}) if kind != method else {}
        table = {**inherited, **own}
        table["train"] = {**inherited.get("train", {}), **own.get("train", {})}
        table.pop("type", None)
        return table

    def _trainer(self, method: str, density: float) -> DiffTrainer | None:
        s = self.settings
        value_bytes = fmt.VALUE_DTYPES[s["experiment"]["value_dtype"]].itemsize
        kind = self._type(method)
        if kind == "full":
            return None
        common = dict(value_dtype=s["experiment"]["value_dtype"], **{k: v for k, v in self._table(method).items() if k != "train"})
        if kind == "sparse":
            return DiffTrainer("sparse", density=density, **common)
        return DiffTrainer("hashed", bucket_ratio=budget_bucket_ratio(density, value_bytes), hash_seed=self.seed, **common)

    def _hyps(self, tag: str, model_path: Path) -> tuple[list[str], float]:
        cache = self.out / "hyps" / f"{tag}.json"
        digest = file_sha256(model_path)
        if cache.exists():
            stored = json.loads(cache.read_text(encoding="utf-8"))
            if stored.get("model_sha256") == digest:  # hypotheses of exactly this model file
                return stored["hyps"], stored["seconds"]
        started = time.perf_counter()
        frame, hyps = decode_splits(model_path, self.eval_splits)
        if list(frame[schema.UTT_ID]) != list(self.eval_frame[schema.UTT_ID]):
            raise RuntimeError(f"{model_path}: decoded utterances differ from the evaluation rows")
        seconds = time.perf_counter() - started
        io.write_json(cache, {"model": str(model_path), "model_sha256": digest, "hyps": hyps, "seconds": seconds})
        return hyps, seconds

    def _update(self, tag: str, method: str, density: float, base: Path, k: int, wanted: set[str] | None = None, overrides: list[str] = ()) -> dict:
        exp = self.out / tag
        model_path, diff_path = exp / "model.safetensors", exp / DIFF_FILE
        trainer = self._trainer(method, density)
        # [train] for every update, then the method's own [<method>.train] (a diff may need another schedule), then the caller's
        overrides = [*self.overrides, *_train_overrides(self._table(method)["train"]), *overrides]
        summary_path = exp / "train_summary.json"
        if wanted is None:
            wanted = selection(self.train, self.assigned, k, self.settings["experiment"]["replay_ratio"], self.seed)
        config = update_config(base, overrides, self.seed)
        # What this update depends on: a rerun with other settings, data or base retrains it from scratch. The
        # resolved schedule, not the overrides that led to it: two spellings of one schedule share their models.
        fingerprint = {"kind": method, "density": density, "trainer": vars(trainer) if trainer else None, "seed": self.seed,
                       "train": config.to_dict()["train"], "base_sha256": file_sha256(base),
                       "utterances": hashlib.sha256("\n".join(sorted(wanted)).encode()).hexdigest()}
        outputs = ["model.safetensors", "train_summary.json"] + ([DIFF_FILE] if trainer is not None else [])
        if not reuse_or_reset(exp, fingerprint, outputs):
            train_update(config, exp, trainer, lambda rows: rows[schema.UTT_ID].isin(wanted).to_numpy())
            shutil.rmtree(exp / "checkpoints", ignore_errors=True)  # the run is complete; its model and diff are what we keep
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        record = {"update": k, "method": method, "type": self._type(method), "density": density if trainer is not None else 1.0,
                  "base": str(base), "model": str(model_path), "train": {key: summary[key] for key in ("steps", "train_minutes", "train_utterances")},
                  "sizes": _sizes(model_path, diff_path if trainer is not None else None)}
        if trainer is not None:
            diff = fmt.read_diff(diff_path)
            record["diff"] = {key: diff.header[key] for key in ("diff_type", "density", "entries", "parameters", "value_dtype")}
            # What a device does: base weights + diff file; apply_diff checks the result's SHA-256 against the header.
            started = time.perf_counter()
            applied = fmt.apply_diff(ckpt.load_weights(base)[0], diff, str(diff_path))
            record["apply_seconds"] = time.perf_counter() - started
            trained = ckpt.load_weights(model_path)[0]
            record["applied_equals_trained"] = applied.keys() == trained.keys() and all(torch.equal(applied[n], trained[n]) for n in trained)
        return record

    def _evaluate(self, record: dict, tag: str, old_hyps: list[str], k: int) -> list[str]:
        hyps, seconds = self._hyps(tag, Path(record["model"]))
        rows = self.eval_frame.assign(**{NAMES: np.where(self.eval_frame["update"] == k, THIS_UPDATE,
                                                         np.where(self.eval_frame["update"] > 0, OTHER_NAMES, NO_NAME))})
        s = self.settings["experiment"]
        table = self.gate.check(regression_table(rows, self.references, old_hyps, hyps, [*s["by"], NAMES], n_boot=s["n_boot"], seed=self.seed))
        overall = table[table["attribute"] == "overall"].iloc[0]
        record.update({"decode_seconds": seconds, "wer": float(overall["new_wer"]), "previous_wer": float(overall["old_wer"]),
                       "flagged": bool(table["flagged"].any()),
                       "flagged_cohorts": [f"{r.attribute}={r.cohort}: {r.reasons}" for r in table[table["flagged"]].itertuples()],
                       "versus_previous": table_records(table)})
        return hyps

    def _deployed(self, deployed: dict) -> Path:
        """The model on devices before the updates: trained from scratch (the baseline recipe's config) on the
        train utterances that carry none of the updates' names, so every update teaches names it never heard."""
        exp = Path(deployed["exp_dir"])
        config = load_config(deployed.get("config"), deployed.get("overrides", []))
        config.train.seed = self.seed
        unnamed = set(self.train.loc[self.train["name"].map(self.assigned).isna(), schema.UTT_ID])
        if not reuse_or_reset(exp, {"config": config.to_dict(), "utterances": sorted(unnamed)}, ["model.safetensors", "train_summary.json"]):
            train(config, exp, select_train=lambda rows: rows[schema.UTT_ID].isin(unnamed).to_numpy())
        return exp / "model.safetensors"

    # -- the run -----------------------------------------------------------------------------------
    def run(self) -> dict:
        s = self.settings["experiment"]
        for method in {*s["chain_methods"], *s["single_methods"]}:
            self._type(method)  # a misspelt method fails here, before any training
        self.out = Path(s["out_dir"].format(seed=self.seed))  # "{seed}": one config serves every seed
        self.overrides = _train_overrides(self.settings.get("train", {}))
        self.gate = RegressionGate(**self.settings.get("gate", {}))
        self.eval_splits = list(s["eval_splits"])
        deployed = None if "base" in s else self.settings.get("deployed")  # [experiment] base: a given model, no training
        data = (load_config(deployed.get("config"), deployed.get("overrides", [])).to_dict() if deployed else ckpt.load_weights(s["base"])[1]["config"])["data"]
        manifest = pd.read_parquet(data["manifest"])
        manifest["name"] = [name_of(r, t) for r, t in zip(manifest[schema.REFERENCE], manifest["sentence_template"])]
        self.train = manifest[manifest[schema.SPLIT] == data["train_split"]]
        self.assigned = deal_names(self.train, s["updates"], self.seed)
        base = self._deployed(deployed) if deployed else Path(s["base"])
        started = time.perf_counter()
        # The evaluation rows: the held-out speakers' utterances, in decoding order, with the update each name belongs to.
        self.eval_frame = manifest[manifest[schema.SPLIT].isin(self.eval_splits)].copy()
        self.eval_frame["_order"] = self.eval_frame[schema.SPLIT].map({sp: i for i, sp in enumerate(self.eval_splits)})
        self.eval_frame = self.eval_frame.sort_values(["_order"], kind="stable").reset_index(drop=True)
        self.eval_frame["update"] = self.eval_frame["name"].map(self.assigned).fillna(0).astype(int)
        self.references = self.eval_frame[schema.REFERENCE].tolist()
        base_hyps, base_seconds = self._hyps("base", base)
        results = {
            "recipe": "neural_diff", "seed": self.seed, "settings": self.settings, "base_model": str(base),
            "base_train": training_record(base.parent),
            "base_sizes": fmt.compressed_sizes(base),
            "eval": {"splits": self.eval_splits, "utterances": len(self.eval_frame), "speakers": int(self.eval_frame[schema.SPEAKER_ID].nunique()),
                     "base_decode_seconds": base_seconds},
            "names": {"per_update_train_utterances": {str(k): int((self.train["name"].map(self.assigned) == k).sum()) for k in range(1, s["updates"] + 1)},
                      "per_update_eval_utterances": {str(k): int((self.eval_frame["update"] == k).sum()) for k in range(1, s["updates"] + 1)},
                      "names_per_update": {str(k): sorted(n for n, g in self.assigned.items() if g == k) for k in range(1, s["updates"] + 1)}},
            "single_update": [], "chain": [], "gate": self.gate.to_dict(),
        }
        results["eval"]["base_wer"] = float(regression_table(self.eval_frame, self.references, base_hyps, base_hyps, n_boot=10).iloc[0]["new_wer"])
        results_path = Path(s["results"].format(seed=self.seed))

        def save() -> None:
            results["elapsed_minutes_this_run"] = (time.perf_counter() - started) / 60
            results["summary"] = summarize(results)
            io.write_json(results_path, results)

        chains = {method: (base, base_hyps) for method in s["chain_methods"]}
        full = None  # (record, hypotheses) of the latest full update: "full" comes first, so at update k it is update k
        for k in range(1, s["updates"] + 1):
            for method in s["chain_methods"]:
                previous, previous_hyps = chains[method]
                tag = f"{method}/update{k}"
                record = self._update(tag, method, s["chain_density"], previous, k)
                hyps = self._evaluate(record, tag.replace("/", "_"), previous_hyps, k)
                chains[method] = (Path(record["model"]), hyps)
                results["chain"].append(record)
                if method == "full":
                    full = (record, hyps)
                self._compare(record, hyps, full)
                save()
            if k == 1:  # the size target: one very sparse update (and its hashed twin) against the full update 1
                for method in s["single_methods"]:
                    tag = f"single_{method}/update1"
                    record = self._update(tag, method, s["single_density"], base, 1)
                    hyps = self._evaluate(record, tag.replace("/", "_"), base_hyps, 1)
                    results["single_update"].append(record)
                    self._compare(record, hyps, full)
                    save()
        demo = self.settings.get("gate_demo")
        if demo:  # an update that should not ship: does the check catch it?
            wanted = set(self.train.query(demo["query"])[schema.UTT_ID])
            overrides = _train_overrides(demo.get("train", {}))
            record = self._update("gate_demo/update", demo["method"], s["chain_density"], base, 0, wanted, overrides)
            self._evaluate(record, "gate_demo", base_hyps, -1)
            results["gate_demo"] = dict(record, query=demo["query"], train_overrides=overrides)
            save()
        return results

    def _compare(self, record: dict, hyps: list[str], full: tuple[dict, list[str]] | None) -> None:
        """WER relative to the full-parameter update at the same point of the chain, with a paired
        speaker-bootstrap interval (both models decode the same utterances): at ~80% WER on 96 speakers a
        1% relative difference is well inside rerun noise, so the interval says whether a gap is real."""
        if full is None or record["method"] == "full" or full[0]["update"] != record["update"]:
            return  # no full update at this point of the chain to compare with
        full_record, full_hyps = full
        full_wer = full_record["wer"]
        record["wer_full_update"] = full_wer
        record["wer_relative_to_full"] = (record["wer"] - full_wer) / full_wer
        record["within_1pct_of_full"] = bool(record["wer_relative_to_full"] <= 0.01)
        _, low, high = paired_wer_change(self.eval_frame, self.references, full_hyps, hyps,
                                         n_boot=self.settings["experiment"]["n_boot"], seed=self.seed)
        record["wer_relative_to_full_interval"] = [low / full_wer, high / full_wer]


def _names_wer(record: dict) -> float:
    """WER on the held-out utterances that carry this update's names (None for an update without names)."""
    return next((r["new_wer"] for r in record["versus_previous"] if r["attribute"] == NAMES and r["cohort"] == THIS_UPDATE), None)


def summarize(results: dict) -> dict:
    """The headline figures: sizes and WER against the full update, per method and update, and every flag."""
    full = {r["update"]: r for r in results["chain"] if r["method"] == "full"}

    def line(record: dict) -> dict:
        out = {"wer": record["wer"], "previous_wer": record["previous_wer"], "names_wer": _names_wer(record), "shipped_bytes": record["sizes"]["shipped"],
               "smaller_than_model": record["sizes"]["smaller_than_model"], "flagged": record["flagged_cohorts"]}
        for key in ("wer_relative_to_full", "wer_relative_to_full_interval", "within_1pct_of_full", "applied_equals_trained"):
            if key in record:
                out[key] = record[key]
        if record["method"] != "full" and record["update"] in full:
            reference = _names_wer(full[record["update"]])
            out["names_wer_relative_to_full"] = (out["names_wer"] - reference) / reference
        return out

    chain: dict[str, dict] = {}
    for record in results["chain"]:
        chain.setdefault(record["method"], {})[f"update{record['update']}"] = line(record)
    out = {"single_update": {f"{r['method']}@{r['density']}": line(r) for r in results["single_update"]}, "chain": chain}
    if "gate_demo" in results:
        demo = results["gate_demo"]
        out["gate_demo"] = {"query": demo["query"], "train_overrides": demo["train_overrides"], "wer": demo["wer"],
                            "previous_wer": demo["previous_wer"], "flagged": demo["flagged_cohorts"]}
    return out


def load_settings(path: str | Path) -> dict:
    """The experiment's settings; a file may start from another with ``base = "config.toml"`` (relative to itself).
    Checked as they are read, before anything is trained: [experiment]'s required keys, [gate], every ``train``
    table ([train], [<method>] train) against the ASR recipe's [train], and the [deployed] recipe with its overrides."""
    from fairspeech.asr.config import TrainConfig
    from fairspeech.config import from_dict
    from fairspeech.errors import ConfigError

    settings, source = read_tree(path), str(path)
    experiment = settings.get("experiment", {})
    if "base" not in experiment and "deployed" not in settings:
        raise ConfigError("needs [experiment] base (a deployed model) or a [deployed] section to train one", source, "experiment", "base")
    for key in ("out_dir", "results", "updates", "replay_ratio", "eval_splits", "by", "n_boot", "chain_density",
                "single_density", "chain_methods", "single_methods", "value_dtype"):
        if key not in experiment:
            raise ConfigError(f"[experiment] needs {key!r}", source, "experiment", key)
    from_dict(RegressionGate, settings.get("gate", {}), source, section="gate")
    from_dict(TrainConfig, settings.get("train", {}), source, section="train")
    for name, table in settings.items():
        if isinstance(table, dict) and name != "train" and "train" in table:
            from_dict(TrainConfig, table["train"], source, section=f"{name}.train")
    if "base" not in experiment:
        try:
            load_config(settings["deployed"].get("config"), settings["deployed"].get("overrides", []))
        except ConfigError as error:
            raise ConfigError(f"[deployed] {error}", source, "deployed") from None
    return settings


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="recipes/neural_diff/local/chain.py", description="Neural diff updates on the demo corpus: size, WER against full updates, per-cohort flips.")
    parser.add_argument("config", help="recipes/neural_diff/config.toml")
    parser.add_argument("--seed", type=int, default=0, help="training, name dealing, replay, hash and bootstrap seed (default: %(default)s)")
    args = parser.parse_args(argv)
    results = Experiment(load_settings(args.config), args.seed).run()
    for record in results["single_update"] + results["chain"]:
        print(f"update {record['update']} {record['method']:>6} density {record['density']:.3f}: WER {100 * record['wer']:.2f}% "
              f"(previous {100 * record['previous_wer']:.2f}%), shipped {record['sizes']['shipped']['disk']:,} B"
              + (f", {100 * record['wer_relative_to_full']:+.2f}% rel. to full [{100 * record['wer_relative_to_full_interval'][0]:+.2f}, "
                 f"{100 * record['wer_relative_to_full_interval'][1]:+.2f}]" if "wer_relative_to_full" in record else "")
              + ("  FLAGGED" if record["flagged"] else ""))


if __name__ == "__main__":
    main()
