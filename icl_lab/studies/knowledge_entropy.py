"""Knowledge entropy (Kim et al., ICLR 2025): its decay over pretraining, what it costs continual
learning, and resuscitation, reproduced as a phenomenon on a small SwiGLU decoder pretrained on the
synthetic fact world (`icl_lab.tasks.fact_world`), not on OLMo.

1. Pretrain on world 0, keeping evenly spaced checkpoints; measure knowledge entropy (and attention
   and next-token entropy) at each on the first training sequences, which every checkpoint has seen.
2. Continue chosen checkpoints on world 1 (a new filler language and new persons) with fictional
   facts injected every `inject_every` steps, with a fresh AdamW state. Acquisition A compares the
   log-probability of the fictional facts' values after and before (memorisation and
   generalisation probes, paraphrase and once splits); forgetting F compares the multiple-choice
   accuracy on world 0's facts after and before.
3. Resuscitate the final checkpoint (Algorithm 1: p = 50% with q swept, q = 1 with p swept) and
   earlier ones, and continue each the same way; A and F keep the unmodified checkpoint as their
   reference, so damage done by the edit counts as forgetting.
4. A warmup-stable-decay control run per seed, whose checkpoints before its decay continue too:
   a trend across them cannot come from the annealed learning rate.

Every number is the mean over the pretraining seeds, with each seed's value and a 95% interval from
a hierarchical bootstrap: the seeds resampled, then items within each drawn seed (sequences for H,
paired probe prompts for A, F and P), so the interval includes the spread between seeds. Beside A
stand its parts (K before and after, and the multiple-choice accuracy on the new facts), and beside
H, A and F the fraction P of pretraining facts each checkpoint answers, so saturation is visible.
Criteria that compare point estimates ("A falls", "ΔF < 0") are met only when the paired interval
of the change excludes 0 in that direction, and are inconclusive otherwise (`results.directional`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from icl_lab import config as config_lib
from icl_lab import results, tasks
from icl_lab.analysis import knowledge_entropy as ke
from icl_lab.config import Config, ConfigError, FactConfig, ModelConfig, TaskConfig, TrainConfig
from icl_lab.io import atomic_write_text, read_json
from icl_lab.results import Criterion, Seeds
from icl_lab.studies.base import Output, RunRequest, Study, fmt, settings_for
from icl_lab.studies.plotting import save_figure
from icl_lab.tasks import fact_world
from icl_lab.training import checkpoints, train

NAME = "knowledge_entropy"
# The capacity-pressure world is the headline: on the one-token quick world every checkpoint answers
# every pretraining fact (P = 1), so forgetting and acquisition had nothing to compete for (those
# results are kept in experiments/knowledge_entropy_onetoken/ as the unsaturated contrast).
HEADLINE_PRESET = "pressure"
# The world must be contested: the final checkpoint answers at most this share of its facts.
MAX_FINAL_P = 0.8
DECAY, ACQUISITION, RESUSCITATION = "knowledge_entropy_decay", "knowledge_acquisition", "knowledge_resuscitation"
# How the *_ci95 intervals are drawn; files without the key predate it and hold within-seed intervals.
INTERVAL = "hierarchical bootstrap: seeds, then items within each drawn seed"
PROBES = tuple((split, kind) for split in ("paraphrase", "once") for kind in ("memorisation", "generalisation"))


@dataclasses.dataclass(frozen=True)
class Settings:
  config_overrides: tuple[str, ...] = ()  # applied to the preset's pretraining config
  seeds: tuple[int, ...] = (0, 1)  # each sets the pretraining run's train.seed and train.data_seed
  cl_from: tuple[float, ...] = (0.2, 0.5, 0.75, 1.0)  # fractions of pretraining whose checkpoints continue
  cl_steps: int = 1600
  cl_batch: int = 128
  cl_lr: float = 4e-4
  cl_end_lr_frac: float = 0.1  # the paper's continual runs decay to 10% of their peak
  inject_every: int = 160
  resus_p: float = 0.5
  resus_q: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)  # at p = resus_p, on the final checkpoint
  resus_p_sweep: tuple[float, ...] = (0.1, 0.3, 0.7, 0.9)  # at q = 1, on the final checkpoint
  resus_earlier: tuple[float, ...] = (0.2, 0.5)  # fractions of pretraining, at p = resus_p, q = earlier_q
  resus_earlier_q: float = 2.0
  # A warmup-stable-decay control: its checkpoints before the decay have seen no annealing, so a
  # decay of H (and a fall of A) across them is not the learning rate's doing.
  wsd_control: bool = True
  wsd_decay_frac: float = 0.2
  entropy_sequences: int = 2048
  num_boot: int = 200  # bootstrap resamples (sequences for H, probe facts for A and F)
  p_persons: int | None = None  # P (world 0 accuracy) on this many persons' facts; None: every person
  decay_from: float = 0.1  # the decay criteria use checkpoints from this fraction of pretraining on
  cpu_s: float | None = None  # expected wall clock on a 2-core CPU; None: needs a GPU


def _pretrain(preset: str, model: ModelConfig, facts: FactConfig, steps: int, batch: int, lr: float,
              checkpoints_kept: int, steps_per_call: int) -> Config:
  """Pretraining on world 0: AdamW (0.9, 0.95), wd 0.1, clip 1.0, warmup then cosine to 0."""
  every = steps // checkpoints_kept
  return Config(preset=f"ke_{preset}", task=TaskConfig(kind="fact_lm"), model=model, facts=facts,
                train=TrainConfig(steps=steps, batch_size=batch, lr=lr, warmup_frac=0.02, weight_decay=0.1,
                                  grad_clip=1.0, b1=0.9, b2=0.95, steps_per_call=steps_per_call,
                                  checkpoint_every=every, keep_checkpoints=checkpoints_kept))


PRETRAIN = {
    # Seconds: the tests run it end to end.
    "tiny": _pretrain("tiny", ModelConfig(layers=2, hidden=32, heads=2, mlp="swiglu"),
                      FactConfig(persons=32, paraphrase_facts=8, once_facts=8), steps=200, batch=32, lr=3e-3,
                      checkpoints_kept=5, steps_per_call=20),
    # About 8 minutes per pretraining run on 2 CPU cores (8k steps at about 17 steps/s): a 2-layer
    # model, so that two seeds and their warmup-stable-decay controls fit the preset's hour.
    "quick": _pretrain("quick", ModelConfig(layers=2, hidden=64, heads=4, mlp="swiglu"),
                       FactConfig(persons=256, paraphrase_facts=32, once_facts=32), steps=8_000, batch=64,
                       lr=2e-3, checkpoints_kept=20, steps_per_call=100),
    # A GPU run (an estimated 1-2 hours on one H200, not yet run): a wider, deeper model on a world of
    # 4096 persons, continual learning at the paper's scale (1600 steps, batch 128, injections every 160).
    # Capacity pressure (defined, not yet run): the quick model on a world of two-token names holding
    # 1.54x its measured capacity (`capacity_ratio`), so the final checkpoint cannot answer every
    # pretraining fact, as the quick world's checkpoints all do (P = 1). 20k steps give each fact
    # about 95 exposures on average (Zipf: far fewer for rare persons), near the 100 at which the
    # capacity was measured. Persons are drawn by inverse CDF: a Gumbel per person per sentence
    # (the categorical draw) would cost 13,500 variates a sentence.
    "pressure": _pretrain("pressure", ModelConfig(layers=2, hidden=64, heads=4, mlp="swiglu"),
                          FactConfig(persons=13_500, values=32, name_tokens=2, name_pool=168, paraphrase_facts=32,
                                     once_facts=32, person_draw="inverse_cdf"), steps=20_000, batch=64, lr=2e-3,
                          checkpoints_kept=20, steps_per_call=100),
    "gpu": _pretrain("gpu", ModelConfig(layers=8, hidden=256, heads=8, mlp="swiglu"),
                     FactConfig(persons=4096, relations=8, values=32, filler_vocab=256, filler_branching=4,
                                sentences=16, paraphrase_facts=64, once_facts=64),
                     steps=100_000, batch=256, lr=1e-3, checkpoints_kept=20, steps_per_call=200),
}

SETTINGS = {
    "tiny": Settings(seeds=(0,), cl_from=(0.2, 1.0), cl_steps=30, cl_batch=32, cl_lr=1e-3, inject_every=10,
                     resus_q=(1.0,), resus_p_sweep=(0.9,), resus_earlier=(0.2,), wsd_control=False,
                     entropy_sequences=128, num_boot=50, cpu_s=40),
    # Two seeds of 8k pretraining steps, each with its WSD control, then 17 continual runs of 300
    # steps per seed: from 4 checkpoints of each schedule, 7 resuscitations of the final checkpoint
    # and 2 of earlier ones (the 20% and 50% checkpoints, whose unedited runs serve as reference).
    "quick": Settings(cl_steps=300, cl_batch=64, cl_lr=1e-3, inject_every=30, resus_q=(0.5, 1.0, 2.0),
                      entropy_sequences=1024, cpu_s=3000),
    # The quick schedule on the pressure world; P on 2048 of its 13,500 persons (32,768 prompts),
    # since scoring all 216,000 (16 s each on a loaded CPU) at 84 checkpoints would add 20 minutes.
    # Measured: 8742 s on 2 cores with seed 0 resumed from step 8000, so about 9400 s from scratch
    # (pretraining at 10-12.5 steps/s, continual runs and scoring 28 min). The 1.8 h estimated
    # before the run assumed about 15.6 steps/s. With the inverse-CDF draw of persons a
    # training step took 1.09x the quick preset's (152 against 140 ms, median of six interleaved
    # 20-step calls on 2 cores shared with another run); the categorical draw took 2.90x (406 ms),
    # almost all of it its Gumbels (the sampler alone: 265 ms a batch against 0.6 ms). Scaled from
    # the quick preset's 50 minutes from scratch (31 of them 32k pretraining steps at 17 steps/s):
    # 2.5x its pretraining steps at 1.09x (86 min), the continual runs and scoring at 1.09x
    # (20 min), P on 32,768 prompts at 84 checkpoints (3 min).
    "pressure": Settings(cl_steps=300, cl_batch=64, cl_lr=1e-3, inject_every=30, resus_q=(0.5, 1.0, 2.0),
                         entropy_sequences=1024, p_persons=2048, cpu_s=9_400),
    "gpu": Settings(entropy_sequences=2048),
}


# The most bits per non-embedding parameter the capacity study measured (figures/knowledge_capacity.json,
# L1/H8 at 2048 persons, 100 exposures): the largest capacity a model may be credited with, so a world
# sized against it is over capacity under any of the measured rates.
BITS_PER_PARAM = 1.325


def capacity_ratio(cfg: Config, params: int, bits_per_param: float = BITS_PER_PARAM) -> float:
  """World 0's information (persons × relations × log₂V bits) over the model's capacity (its
  non-embedding `params` × `bits_per_param`): above 1 the model cannot store every fact."""
  fc = cfg.facts
  return fc.persons * fc.relations * math.log2(fc.values) / (params * bits_per_param)


def pretrain_config(preset: str, s: Settings, overrides=()) -> Config:
  if preset not in PRETRAIN:
    raise ConfigError(f"study {NAME} has no preset {preset!r}; accepted: {', '.join(PRETRAIN)}")
  return config_lib.apply_overrides(PRETRAIN[preset], [*s.config_overrides, *overrides])


def continual_config(pt: Config, s: Settings, source: Path, step: int) -> Config:
  """World 1 with injected facts, from `source` at `step`, fresh optimiser (paper App. B, scaled)."""
  per_call = math.gcd(s.cl_steps, pt.train.steps_per_call)
  return config_lib.apply_overrides(pt, [
      "facts.world=1", f"facts.inject_every={s.inject_every}", f"train.steps={s.cl_steps}",
      f"train.batch_size={s.cl_batch}", f"train.lr={s.cl_lr}", "train.warmup_frac=0.05",
      "train.schedule=cosine", f"train.end_lr_frac={s.cl_end_lr_frac}",
      f"train.data_seed={pt.train.data_seed + 1}", f"train.steps_per_call={per_call}",
      f"train.checkpoint_every={s.cl_steps}", "train.keep_checkpoints=1", f"train.init_from={source}",
      f"train.init_from_step={step}"])


def seed_configs(pt: Config, s: Settings) -> tuple[list[Config], list[Config]]:
  """The pretraining run of each seed, and its warmup-stable-decay control (empty if off)."""
  runs = [config_lib.apply_overrides(pt, [f"train.seed={seed}", f"train.data_seed={seed}"]) for seed in s.seeds]
  wsd = [config_lib.apply_overrides(c, ["train.schedule=wsd", f"train.decay_frac={s.wsd_decay_frac}"])
         for c in runs] if s.wsd_control else []
  return runs, wsd


def configs(preset: str, overrides=()) -> list[Config]:
  """The pretraining runs (the continual runs depend on their checkpoints' folders)."""
  runs, wsd = seed_configs(pretrain_config(preset, SETTINGS[preset], overrides), SETTINGS[preset])
  return runs + wsd


# ---------------------------------------------------------------------------
# Measurements


def knowledge_scores(model, facts: FactConfig, p_persons: int | None = None) -> dict:
  """K per probe (mean log-probability of the fictional values) and their mean; K_accuracy (the
  multiple-choice accuracy on the fictional facts against their relation's other values, mean over
  probes), so a change of A reads as facts answered or not; P (world 0 accuracy). "_items" keeps
  each prompt's scores for the bootstrap; it never reaches a file."""
  k = {f"{split}_{kind}": fact_world.score(model, fact_world.fictional_probe(facts, split, kind), items=True)
       for split, kind in PROBES if (facts.paraphrase_facts if split == "paraphrase" else facts.once_facts)}
  known = fact_world.score(model, fact_world.known_probe(facts, persons=p_persons), items=True)
  return {"K": float(np.mean([v["logprob"] for v in k.values()])),
          "K_by_probe": {p: v["logprob"] for p, v in k.items()},
          "K_accuracy": float(np.mean([v["accuracy"] for v in k.values()])),
          "K_accuracy_by_probe": {p: v["accuracy"] for p, v in k.items()},
          "P": known["accuracy"], "P_logprob": known["logprob"],
          "_items": {"K": {p: v["logprob_N"] for p, v in k.items()}, "P": known["hits_N"]}}


def public(scores: dict) -> dict:
  return {k: v for k, v in scores.items() if k != "_items"}


def scores_vs(pt: dict, cl: dict, num_boot: int, seed: int = 0) -> dict:
  """A and F of a continual run against its reference checkpoint's scores, with their bootstrap
  replicates over the probe prompts (paired: one resample serves both models)."""
  rng = np.random.default_rng(seed)
  k_pt_R, k_cl_R = np.zeros(num_boot), np.zeros(num_boot)
  for probe, lp_pt_N in pt["_items"]["K"].items():
    idx_RxN = rng.integers(0, len(lp_pt_N), (num_boot, len(lp_pt_N)))
    k_pt_R += lp_pt_N[idx_RxN].mean(1) / len(pt["_items"]["K"])
    k_cl_R += cl["_items"]["K"][probe][idx_RxN].mean(1) / len(pt["_items"]["K"])
  hits_pt_N, hits_cl_N = pt["_items"]["P"], cl["_items"]["P"]
  idx_RxN = rng.integers(0, len(hits_pt_N), (num_boot, len(hits_pt_N)))
  p_pt_R, p_cl_R = hits_pt_N[idx_RxN].mean(1), hits_cl_N[idx_RxN].mean(1)
  return {"A": ke.acquisition(cl["K"], pt["K"]), "F": ke.forgetting(cl["P"], pt["P"]),
          "A_by_probe": {p: ke.acquisition(cl["K_by_probe"][p], pt["K_by_probe"][p]) for p in pt["K_by_probe"]},
          "_boot": {"A": (k_cl_R - k_pt_R) / np.abs(k_pt_R), "F": -(p_cl_R - p_pt_R) / np.maximum(p_pt_R, 1e-12)}}


def checkpoint_steps(run_dir: Path, keep: int) -> list[int]:
  mngr = checkpoints.manager(run_dir, keep)
  try:
    return sorted(mngr.all_steps())
  finally:
    mngr.close()


def write_checkpoint_folder(folder: Path, cfg: Config, model, step: int) -> Path:
  """A run folder holding only `model` at `step` (with a fresh optimiser state), so a continual run
  can start from it through train.init_from. Reused when it already holds that step."""
  if (folder / "checkpoints" / str(step)).exists():
    return folder
  # The config first: a folder with a checkpoint is then always complete.
  atomic_write_text(folder / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
  params = nnx.to_pure_dict(nnx.split(model)[1])
  tx = train.make_optimizer(cfg.train)
  mngr = checkpoints.manager(folder, 1)
  try:
    mngr.save(step, args=ocp.args.StandardSave(train.TrainState(params, tx.init(params))))
    mngr.wait_until_finished()
  finally:
    mngr.close()
  return folder


def _continue(pt: Config, s: Settings, source: Path, step: int, runs_dir: Path, ref: dict) -> dict:
  cfg = continual_config(pt, s, source, step)
  run_dir = train.train(cfg, runs_dir)
  _, model = train.load_model(run_dir)
  cl = knowledge_scores(model, cfg.facts, s.p_persons)
  return {"cl_run": run_dir.name, "cl": public(cl), **scores_vs(ref, cl, s.num_boot),
          "cl_train_s": train.train_seconds(run_dir)}


def _nearest(steps: list[int], frac: float, total: int) -> int:
  return min(steps, key=lambda t: abs(t - frac * total))


def _entropy_curve(pt: Config, run_dir: Path, s: Settings, ids_NxT) -> dict:
  """Entropies at initialisation and at every kept checkpoint of one pretraining run."""
  steps = checkpoint_steps(run_dir, pt.train.keep_checkpoints)
  curve = {"run": run_dir.name, "steps": [0, *steps], "reports": {}, "cbar": {}, "boot": {}, "P": {},
           "P_boot": {}}
  models = {0: tasks.get_task(pt).build_model(pt, pt.train.seed)}
  known = fact_world.known_probe(pt.facts, persons=s.p_persons)
  # One resample of the facts for every checkpoint (and seed), so P's replicates stay paired.
  idx_RxN = np.random.default_rng(0).integers(0, len(known.target_N), (s.num_boot, len(known.target_N)))
  for step in curve["steps"]:
    model = models[step] if step in models else train.load_model(run_dir, step)[1]
    report, cbar, boot = ke.measure(model, ids_NxT, num_boot=s.num_boot)
    curve["reports"][step], curve["cbar"][step], curve["boot"][step] = report, cbar, boot
    # P: the fraction of pretraining facts this checkpoint answers (is the world saturated?).
    hits_N = fact_world.score(model, known, items=True)["hits_N"]
    curve["P"][step], curve["P_boot"][step] = float(hits_N.mean()), hits_N[idx_RxN].mean(1)
    print(f"{run_dir.name} step {step:6d}  H = {report.total:.4f}  H/(L ln W) = {report.normalised:.5f}  "
          f"P = {curve['P'][step]:.4f}", flush=True)
  return curve


def _from_checkpoints(pt: Config, run_dir: Path, curve: dict, sources: list[int], s: Settings,
                      runs_dir: Path, refs: dict) -> list[dict]:
  rows = []
  for step in sources:
    if step not in refs:
      refs[step] = knowledge_scores(train.load_model(run_dir, step)[1], pt.facts, s.p_persons)
    row = {"step": step, "frac": step / pt.train.steps, "entropy": curve["reports"][step].total,
           "pt": public(refs[step]), **_continue(pt, s, run_dir, step, runs_dir, refs[step])}
    rows.append(row)
    print(f"{run_dir.name} from step {step:6d}: A = {row['A']:+.4f}  F = {row['F']:+.4f}", flush=True)
  return rows


def _resuscitated(pt: Config, run_dir: Path, curve: dict, step: int, p: float, q: float, s: Settings,
                  runs_dir: Path, refs: dict, ids_NxT) -> dict:
  """Algorithm 1 on checkpoint `step`, then the same continual run; A and F against the unedited
  checkpoint, so damage done by the edit counts as forgetting."""
  _, model = train.load_model(run_dir, step)
  if step not in refs:
    refs[step] = knowledge_scores(model, pt.facts, s.p_persons)
  cbar = curve["cbar"][step]
  new = ke.resuscitate(model, cbar, p, q)
  folder = write_checkpoint_folder(runs_dir / f"{run_dir.name}-resus-s{step}-p{p:g}-q{q:g}", pt, new, step)
  after = ke.measure(new, ids_NxT)[0]
  row = {"step": step, "frac": step / pt.train.steps, "p": p, "q": q, "entropy_before": curve["reports"][step].total,
         "entropy_after": after.total, "normalised_after": after.normalised,
         "units_changed": int((ke.resuscitation_scales(cbar, p, q) != 1.0).sum()),
         "pt": public(refs[step]), "edited": public(knowledge_scores(new, pt.facts, s.p_persons)),
         **_continue(pt, s, folder, step, runs_dir, refs[step])}
  print(f"{run_dir.name} step {step} resuscitated p = {p:g}, q = {q:g}: H {row['entropy_before']:.4f} -> "
        f"{row['entropy_after']:.4f}, A = {row['A']:+.4f}  F = {row['F']:+.4f}", flush=True)
  return row


def _one_seed(pt: Config, run_dir: Path, wsd_cfg: Config | None, wsd_dir: Path | None, s: Settings,
              runs_dir: Path) -> dict:
  """Every measurement of one pretraining seed (and its WSD control)."""
  ids_NxT = fact_world.first_batches(pt, s.entropy_sequences)[:, :-1]
  total = pt.train.steps
  curve = _entropy_curve(pt, run_dir, s, ids_NxT)
  steps = curve["steps"][1:]
  refs: dict[int, dict] = {}
  sources = sorted({_nearest(steps, f, total) for f in s.cl_from})
  out = {"curve": curve, "sources": _from_checkpoints(pt, run_dir, curve, sources, s, runs_dir, refs)}
  final = steps[-1]
  grid = [(final, s.resus_p, q) for q in s.resus_q] + [(final, p, 1.0) for p in s.resus_p_sweep]
  grid += [(_nearest(steps, f, total), s.resus_p, s.resus_earlier_q) for f in s.resus_earlier]
  rows = {}
  for step, p, q in grid:
    if (step, p, q) not in rows:
      rows[(step, p, q)] = _resuscitated(pt, run_dir, curve, step, p, q, s, runs_dir, refs, ids_NxT)
  out["resus"] = rows
  out["base"] = {row["step"]: row for row in out["sources"]}
  for step in {g[0] for g in grid} - set(out["base"]):  # an earlier checkpoint that did not continue
    out["base"].update({r["step"]: r for r in _from_checkpoints(pt, run_dir, curve, [step], s, runs_dir, refs)})
  if wsd_cfg is not None:
    wcurve = _entropy_curve(wsd_cfg, wsd_dir, s, ids_NxT)
    decay_start = total - max(int(s.wsd_decay_frac * total), 1)
    # The same fractions of the stable phase, so the latest source is the last unannealed checkpoint.
    before = [t for t in wcurve["steps"][1:] if t <= decay_start]
    wsources = sorted({_nearest(before, f, decay_start) for f in s.cl_from})
    out["control"] = {"curve": wcurve, "decay_start": decay_start,
                      "sources": _from_checkpoints(wsd_cfg, wsd_dir, wcurve, wsources, s, runs_dir, {})}
  return out


# ---------------------------------------------------------------------------
# Aggregation over seeds: means, each seed's value, and 95% intervals from a hierarchical
# bootstrap (seeds, then sequences for H or probe prompts for A, F and P within each drawn seed;
# `ke.seed_bootstrap`). The within-seed interval (the mean of the seeds' replicates, which leaves
# the spread between seeds out) is kept beside it as `*_ci95_items` for comparison.


def _quantiles(replicates_R) -> list[float]:
  return np.quantile(replicates_R, [0.025, 0.975]).tolist()


def _ci(replicates_SxR) -> list[float]:
  """The 95% interval of the seed mean: seeds resampled, then items within each drawn seed."""
  return _quantiles(ke.seed_bootstrap(replicates_SxR))


def _ci_items(replicates_SxR) -> list[float]:
  """The within-seed interval (items resampled, seeds fixed): narrower than the seeds' spread."""
  return _quantiles(np.mean(replicates_SxR, axis=0))


def _diff(new: dict, old: dict, key: str) -> tuple[float, list[float]]:
  """new − old of `key` and its 95% interval, from the rows' paired hierarchical replicates."""
  return new[key] - old[key], _quantiles(new["_boot"][key] - old["_boot"][key])


def strip(rows: list[dict]) -> list[dict]:
  """Rows without their replicates, which never reach a file."""
  return [{k: v for k, v in row.items() if k != "_boot"} for row in rows]


def _trend(rows: list[dict]) -> dict:
  """A and F from the earliest to the latest continued checkpoint, with paired intervals."""
  rows = sorted(rows, key=lambda x: x["step"])
  (da, da_ci), (df, df_ci) = _diff(rows[-1], rows[0], "A"), _diff(rows[-1], rows[0], "F")
  return {"from": rows[0]["step"], "to": rows[-1]["step"], "dA": da, "dA_ci95": da_ci, "dF": df, "dF_ci95": df_ci}


def _curve_summary(curves: list[dict], max_entropy: float) -> dict:
  steps = curves[0]["steps"]
  if any(c["steps"] != steps for c in curves):
    raise ValueError("the seeds' pretraining runs kept different checkpoints")
  rep = [[c["reports"][t] for t in steps] for c in curves]
  return {"steps": steps, "runs": [c["run"] for c in curves],
          "entropy": np.mean([[r.total for r in row] for row in rep], 0).tolist(),
          "entropy_seeds": [[r.total for r in row] for row in rep],
          "entropy_ci95": [_ci([c["boot"][t] for c in curves]) for t in steps],
          "entropy_ci95_items": [_ci_items([c["boot"][t] for c in curves]) for t in steps],
          "P": np.mean([[c["P"][t] for t in steps] for c in curves], 0).tolist(),
          "P_seeds": [[c["P"][t] for t in steps] for c in curves],
          "P_ci95": [_ci([c["P_boot"][t] for c in curves]) for t in steps],
          "normalised": np.mean([[r.normalised for r in row] for row in rep], 0).tolist(),
          "per_layer": np.mean([[list(r.per_layer) for r in row] for row in rep], 0).tolist(),
          "attention": np.mean([[r.attention for r in row] for row in rep], 0).tolist(),
          "next_token": np.mean([[r.next_token for r in row] for row in rep], 0).tolist(),
          "max_entropy": max_entropy}


def _rows_summary(rows_by_seed: list[list[dict]], keys=("step",)) -> list[dict]:
  """One row per position, A and F as the mean over seeds with each seed's value and an interval."""
  out = []
  for rows in zip(*rows_by_seed):
    first = rows[0]
    row = {k: first[k] for k in (*keys, "frac") if k in first}
    row["_boot"] = {}
    for key in ("A", "F"):
      row[key] = float(np.mean([r[key] for r in rows]))
      row[f"{key}_seeds"] = [r[key] for r in rows]
      row["_boot"][key] = ke.seed_bootstrap([r["_boot"][key] for r in rows])
      row[f"{key}_ci95"] = _quantiles(row["_boot"][key])
      row[f"{key}_ci95_items"] = _ci_items([r["_boot"][key] for r in rows])
    row["A_by_probe"] = {p: float(np.mean([r["A_by_probe"][p] for r in rows])) for p in first["A_by_probe"]}
    # A's parts: K (mean log-probability of the new values) before and after, and the multiple-choice
    # accuracy on the new facts after, so a change of A can be read as facts answered.
    parts = {"K_pt": ("pt", "K"), "K_cl": ("cl", "K"), "acc_new_pt": ("pt", "K_accuracy"),
             "acc_new_cl": ("cl", "K_accuracy"), "P_pt": ("pt", "P"), "P_cl": ("cl", "P")}
    for name, (which, key) in parts.items():
      if which in first:
        row[f"{name}_seeds"] = [r[which][key] for r in rows]
        row[name] = float(np.mean(row[f"{name}_seeds"]))
    for key in ("entropy", "entropy_before", "entropy_after", "units_changed"):
      if key in first:
        row[key] = float(np.mean([r[key] for r in rows]))
    row["cl_runs"] = [r["cl_run"] for r in rows]
    out.append(row)
  return out


def run(req: RunRequest, dest: results.Destination) -> list[Path]:
  s = settings_for(NAME, SETTINGS, req)
  if not s.seeds:
    raise ConfigError("study.seeds is empty; give at least one seed")
  pt = pretrain_config(req.preset, s, req.config_overrides)
  runs_dir = Path(req.runs_dir)
  t0 = time.perf_counter()
  cfgs, wsd_cfgs = seed_configs(pt, s)
  print(f"icl-lab {NAME}: pretraining {train.config_summary(pt)}, seeds {list(s.seeds)}"
        f"{' and their WSD controls' if wsd_cfgs else ''}", flush=True)
  # One run at a time (not as an ensemble), so each run folder is what a solo run of its config gives.
  dirs = [train.train(cfg, runs_dir) for cfg in cfgs + wsd_cfgs]
  per_seed = []
  for i, cfg in enumerate(cfgs):
    wsd = (wsd_cfgs[i], dirs[len(cfgs) + i]) if wsd_cfgs else (None, None)
    per_seed.append(_one_seed(cfg, dirs[i], *wsd, s, runs_dir))
  max_entropy = pt.model.layers * math.log(pt.model.mlp_ratio * pt.model.hidden)
  common_cfg = {"preset": req.preset, "seeds_list": list(s.seeds), "total_steps": pt.train.steps}

  decay = {**common_cfg, "config": pt.to_dict(), "decay_from": s.decay_from,
           "num_sequences": s.entropy_sequences, "num_boot": s.num_boot, "interval": INTERVAL,
           **_curve_summary([x["curve"] for x in per_seed], max_entropy),
           "pretrain_s": [train.train_seconds(d) for d in dirs]}
  if wsd_cfgs:
    decay["control"] = {"schedule": "wsd", "decay_frac": s.wsd_decay_frac,
                        "decay_start": per_seed[0]["control"]["decay_start"],
                        **_curve_summary([x["control"]["curve"] for x in per_seed], max_entropy)}

  acquisition = {**common_cfg, "cl_steps": s.cl_steps, "cl_lr": s.cl_lr, "cl_end_lr_frac": s.cl_end_lr_frac,
                 "inject_every": s.inject_every, "num_boot": s.num_boot,
                 "interval": INTERVAL}
  sources = _rows_summary([x["sources"] for x in per_seed])
  acquisition.update(sources=strip(sources), trend=_trend(sources) if len(sources) >= 2 else None)
  first_source = per_seed[0]["sources"][0]["step"]
  acquisition["continual_config"] = continual_config(cfgs[0], s, dirs[0], first_source).to_dict()
  if wsd_cfgs:
    control = _rows_summary([x["control"]["sources"] for x in per_seed])
    acquisition.update(control_sources=strip(control), control_trend=_trend(control) if len(control) >= 2 else None)

  final = per_seed[0]["curve"]["steps"][-1]
  keys = list(per_seed[0]["resus"])
  resus = {k: _rows_summary([[x["resus"][k]] for x in per_seed], keys=("step", "p", "q"))[0] for k in keys}
  bases = {step: _rows_summary([[x["base"][step]] for x in per_seed])[0] for step in {k[0] for k in keys}}
  for row in resus.values():
    b = bases[row["step"]]
    (row["dA"], row["dA_ci95"]), (row["dF"], row["dF_ci95"]) = _diff(row, b, "A"), _diff(row, b, "F")
  resus = {k: strip([row])[0] for k, row in resus.items()}
  bases = {k: strip([row])[0] for k, row in bases.items()}
  resuscitation = {**common_cfg, "step": final, "p": s.resus_p, "num_boot": s.num_boot, "interval": INTERVAL,
                   "base": {k: bases[final][k] for k in ("A", "F", "entropy", "A_ci95", "F_ci95", "A_seeds",
                                                         "F_seeds")},
                   "settings": [resus[k] for k in keys if k[0] == final and k[1] == s.resus_p and k[2] in s.resus_q],
                   "p_sweep": [resus[k] for k in keys if k[0] == final and k[2] == 1.0 and k[1] in s.resus_p_sweep],
                   "earlier": [{**resus[k], "base": {"A": bases[k[0]]["A"], "F": bases[k[0]]["F"]}}
                               for k in keys if k[0] != final]}

  wall = time.perf_counter() - t0
  data_seeds = {c.train.data_seed for c in cfgs} | {c.train.data_seed + 1 for c in cfgs}
  seeds = Seeds(tuple(s.seeds), tuple(sorted(data_seeds)), cfgs[0].train.data_seed,
                (("world_seed", pt.facts.world_seed), ("bootstrap", 0)))
  common = dict(preset=req.preset, seeds=seeds, wall_s=wall, run=dirs[0].name)
  paths = results.write(dest, DECAY, decay, criteria=criteria_decay, plot=plot_decay, **common)
  paths += results.write(dest, ACQUISITION, acquisition, criteria=criteria_acquisition, plot=plot_acquisition,
                         **common)
  paths += results.write(dest, RESUSCITATION, resuscitation, criteria=criteria_resuscitation,
                         plot=plot_resuscitation, **common)
  for p in paths:
    if p.suffix == ".json":
      print(f"\n{p.name}:\n{results.format_criteria(read_json(p)['criteria'])}")
  print(f"\nresults and figures written to {dest.folder.resolve()} ({wall:.0f} s)")
  return paths


# ---------------------------------------------------------------------------
# Criteria


def _spearman_from(steps, h, start: float) -> float | None:
  steps, h = np.asarray(steps), np.asarray(h)
  late = steps >= start
  return ke.spearman(steps[late], h[late]) if late.sum() >= 3 else None


def criteria_decay(r: dict) -> list[Criterion]:
  steps = np.asarray(r["steps"])
  start = r["decay_from"] * r["total_steps"]
  late = steps >= start
  rho = _spearman_from(steps, r["entropy"], start)
  per_layer = np.asarray(r["per_layer"])[late]
  lower = int((per_layer[-1] < per_layer[0]).sum()) if late.sum() >= 2 else 0
  layers = per_layer.shape[1]
  frac = f"{r['decay_from']:.0%}"
  out = [Criterion(f"Spearman ρ(step, H) over checkpoints from {frac} of pretraining on", rho, "≤ −0.9",
                   rho is not None and rho <= -0.9),
         Criterion(f"layers whose Hˡ at the end is below its value at {frac}", lower, f"all {layers}",
                   lower == layers)]
  c = r.get("control")
  if c:  # the WSD control's checkpoints from decay_from up to the start of its decay
    cs = np.asarray(c["steps"])
    keep = cs <= c["decay_start"]
    crho = _spearman_from(cs[keep], np.asarray(c["entropy"])[keep], start)
    out.append(Criterion(f"WSD control: Spearman ρ(step, H) from {frac} to the start of its decay (no annealing)",
                         crho, "≤ −0.9", crho is not None and crho <= -0.9))
  if "P" in r:  # absent from files written before it
    final_p = r["P"][-1]
    out.append(Criterion("capacity pressure: share of the pretraining facts answered at the final checkpoint",
                         final_p, f"≤ {MAX_FINAL_P}", final_p <= MAX_FINAL_P))
  return out


def _ratio(num: float, den: float) -> float | None:
  return num / den if den > 0 else None


def diff_interval(new: dict, old: dict, key: str, stored: list[float] | None = None) -> list[float] | None:
  """The 95% interval of new[key] − old[key]: the stored paired one, else (files written before it)
  the widest difference of the two rows' own intervals, which excludes 0 exactly when they are
  disjoint; None without intervals."""
  if stored is not None:
    return stored
  a, b = new.get(f"{key}_ci95"), old.get(f"{key}_ci95")
  return None if a is None or b is None else [a[0] - b[1], a[1] - b[0]]


def criteria_acquisition(r: dict) -> list[Criterion]:
  out = _acquisition_criteria(r["sources"], "", r.get("trend"))
  if r.get("control_sources"):
    out += _acquisition_criteria(r["control_sources"], "WSD control, before its decay: ", r.get("control_trend"))[:2]
  return out


def _acquisition_criteria(sources: list[dict], prefix: str, trend: dict | None = None) -> list[Criterion]:
  """A falls and F rises from the earliest to the latest checkpoint (ratios of the point estimates,
  met only when the paired interval of the change excludes 0 in that direction), and the Pearson
  correlations of H with A and F."""
  rows = sorted(sources, key=lambda x: x["step"])
  first, last = rows[0], rows[-1]
  trend = trend or {}
  da_ci = diff_interval(last, first, "A", trend.get("dA_ci95"))
  df_ci = diff_interval(last, first, "F", trend.get("dF_ci95"))
  a_ratio, f_ratio = _ratio(last["A"], first["A"]), _ratio(last["F"], first["F"])
  h = [x["entropy"] for x in rows]
  enough = len(rows) >= 2
  pa = ke.pearson(h, [x["A"] for x in rows]) if enough else None
  pf = ke.pearson(h, [x["F"] for x in rows]) if enough else None
  note = " (±1 with two checkpoints)" if len(rows) == 2 else ""
  f_met = last["F"] > 0 and last["F"] >= 1.3 * first["F"]
  return [results.directional(f"{prefix}A(step {last['step']}) / A(step {first['step']})", a_ratio,
                              "≤ 0.85 (A(first) > 0); ΔA < 0", a_ratio is not None and a_ratio <= 0.85, [da_ci], [-1]),
          results.directional(f"{prefix}F(step {last['step']}) / F(step {first['step']})", f_ratio,
                              "≥ 1.3 (or F(first) ≤ 0 < F(last)); ΔF > 0", bool(f_met), [df_ci], [1]),
          Criterion(f"{prefix}Pearson(H, A) over the continued checkpoints", pa, f"≥ 0.8{note}",
                    pa is not None and pa >= 0.8),
          Criterion(f"{prefix}Pearson(H, F) over the continued checkpoints", pf, f"≤ −0.8{note}",
                    pf is not None and pf <= -0.8)]


def criteria_resuscitation(r: dict) -> list[Criterion]:
  by_q = {row["q"]: row for row in r["settings"]}
  base = r["base"]
  out = []
  # Each change is met only when its interval (paired, or the rows' own intervals in older files)
  # lies on the stated side of 0; a point estimate on that side alone is inconclusive.
  ci = lambda row, key: None if row is None or base is None else diff_interval(row, base, key, row.get(f"d{key}_ci95"))
  for q in (1.0, 2.0):
    row = by_q.get(q)
    ok = row is not None and base is not None and row["A"] > base["A"] and row["F"] < base["F"]
    value = None if row is None or base is None else [row["A"] - base["A"], row["F"] - base["F"]]
    out.append(results.directional(f"p = {r['p']:g}, q = {q:g}: [ΔA, ΔF] against the unedited final checkpoint",
                                   value, "ΔA > 0 and ΔF < 0", bool(ok), [ci(row, "A"), ci(row, "F")], [1, -1]))
  row = by_q.get(0.5)
  value = None if row is None or base is None else row["A"] - base["A"]
  out.append(results.directional(f"p = {r['p']:g}, q = 0.5: ΔA", value, "< 0", value is not None and value < 0,
                                 [ci(row, "A")], [-1]))
  rises = [row["entropy_after"] > row["entropy_before"] for row in r["settings"]]
  out.append(Criterion("settings whose knowledge entropy rises after the edit", sum(rises),
                       f"all {len(rises)}", bool(rises) and all(rises)))
  return out


# ---------------------------------------------------------------------------
# Figures


def plot_decay(json_path: str | Path) -> list[Path]:
  """H/(L ln W) against step (seed mean, each seed, 95% interval; the WSD control dashed), each
  layer's Hˡ, and the attention and next-token entropies."""
  json_path = Path(json_path)
  r = read_json(json_path)
  steps, norm = np.asarray(r["steps"]), r["max_entropy"]
  fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
  ax = axes[0]
  for h in r.get("entropy_seeds", []):
    ax.plot(steps, np.asarray(h) / norm, "-", color="0.75", lw=0.8)
  if "entropy_ci95" in r:
    ci = np.asarray(r["entropy_ci95"]) / norm
    ax.fill_between(steps, ci[:, 0], ci[:, 1], color="k", alpha=0.15, lw=0)
  ax.plot(steps, r["normalised"], "k-o", ms=3, label="cosine schedule (seed mean)")
  c = r.get("control")
  if c:
    ax.plot(c["steps"], c["normalised"], "--s", color="tab:purple", ms=3, label="WSD control")
    ax.axvline(c["decay_start"], color="tab:purple", ls=":", lw=1)
  ax.axvline(r["decay_from"] * r["total_steps"], color="0.6", ls=":", lw=1)
  ax.set_ylabel("knowledge entropy H / (L ln W)")
  ax.legend(fontsize=7)
  if "P" in r:  # is the world saturated? (absent from files written before it)
    twin = ax.twinx()
    twin.plot(steps, r["P"], ":", color="tab:green", label="P: world-0 facts answered")
    twin.set_ylim(0, 1.02)
    twin.set_ylabel("P")
    twin.legend(loc="center right", fontsize=7)
  per_layer = np.asarray(r["per_layer"])
  for l in range(per_layer.shape[1]):
    axes[1].plot(steps, per_layer[:, l], "-o", ms=2, label=f"layer {l}")
  axes[1].set_ylabel("Hˡ (nats)")
  axes[1].legend(fontsize=7)
  axes[2].plot(steps, r["attention"], "-o", ms=3, label="attention (mean over layers)")
  axes[2].plot(steps, r["next_token"], "-o", ms=3, label="next token")
  axes[2].set_ylabel("entropy (nats)")
  axes[2].legend(fontsize=7)
  for ax in axes:
    ax.set_xlabel("pretraining step")
    ax.grid(alpha=0.3, lw=0.4)
  seeds = r.get("seeds_list", [])
  fig.suptitle(f"Knowledge entropy over pretraining (preset {r['preset']}, {len(seeds) or 1} seed(s))")
  return save_figure(fig, json_path)


def _errorbar(ax, x, rows, key, fmt, color, label):
  y = np.asarray([row[key] for row in rows])
  if rows and f"{key}_ci95" in rows[0]:
    ci = np.asarray([row[f"{key}_ci95"] for row in rows])
    ax.errorbar(x, y, yerr=[y - ci[:, 0], ci[:, 1] - y], fmt=fmt, color=color, label=label, capsize=3, ms=4)
  else:
    ax.plot(x, y, fmt, color=color, label=label)


def plot_acquisition(json_path: str | Path) -> list[Path]:
  """A and F of continual learning against the checkpoint it started from (95% intervals), with
  that checkpoint's H; the WSD control's pre-decay checkpoints dashed."""
  json_path = Path(json_path)
  r = read_json(json_path)
  rows = sorted(r["sources"], key=lambda x: x["step"])
  steps = [x["step"] for x in rows]
  fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
  _errorbar(ax, steps, rows, "A", "-o", "tab:blue", "acquisition A")
  _errorbar(ax, steps, rows, "F", "-s", "tab:red", "forgetting F")
  control = sorted(r.get("control_sources") or [], key=lambda x: x["step"])
  if control:
    cs = [x["step"] for x in control]
    _errorbar(ax, cs, control, "A", "--o", "tab:cyan", "A, WSD control")
    _errorbar(ax, cs, control, "F", "--s", "tab:orange", "F, WSD control")
  ax.axhline(0, color="0.6", lw=0.8)
  ax.set_xlabel("pretraining step of the starting checkpoint")
  ax.set_ylabel("A, F")
  twin = ax.twinx()
  twin.plot(steps, [x["entropy"] for x in rows], ":", color="0.4", label="knowledge entropy H")
  twin.set_ylabel("H (nats)")
  ax.legend(loc="upper left", fontsize=7)
  twin.legend(loc="upper right", fontsize=7)
  ax.set_title(f"Continual learning from each checkpoint (preset {r['preset']})")
  return save_figure(fig, json_path)


def plot_resuscitation(json_path: str | Path) -> list[Path]:
  """ΔA and ΔF (against the unedited checkpoint's continual run) for every resuscitation setting."""
  json_path = Path(json_path)
  r = read_json(json_path)
  base = r["base"]
  rows = [("q", row) for row in r["settings"]] + [("p", row) for row in r.get("p_sweep", [])]
  rows += [("early", row) for row in r.get("earlier", [])]
  labels, da, df = [], [], []
  for kind, row in rows:
    ref = row.get("base") or base
    early = f"step {row['step']}\nq = {row['q']:g}"
    labels.append({"q": f"q = {row['q']:g}", "p": f"p = {row['p']:g}, q = 1"}.get(kind, early))
    da.append(row["A"] - ref["A"])
    df.append(row["F"] - ref["F"])
  x = np.arange(len(labels))
  fig, ax = plt.subplots(figsize=(max(6.5, 0.7 * len(labels) + 2), 4.2), layout="constrained")
  ax.bar(x - 0.2, da, 0.4, color="tab:blue", label="ΔA (higher: acquires more)")
  ax.bar(x + 0.2, df, 0.4, color="tab:red", label="ΔF (lower: forgets less)")
  ax.axhline(0, color="0.6", lw=0.8)
  ax.set_xticks(x, labels, fontsize=7)
  ax.legend(fontsize=8)
  ax.set_title(f"Resuscitation (final step {r['step']}: p = {r['p']:g} with q swept, q = 1 with p swept; "
               f"earlier checkpoints) — preset {r['preset']}", fontsize=9)
  return save_figure(fig, json_path)


# ---------------------------------------------------------------------------
# README tables


def _pm(row: dict, key: str) -> str:
  ci = row.get(f"{key}_ci95")
  seeds = row.get(f"{key}_seeds")
  out = f"{row[key]:+.4f}"
  if ci:
    out += f" [{ci[0]:+.4f}, {ci[1]:+.4f}]"
  if seeds and len(seeds) > 1:
    out += " (" + ", ".join(f"{v:+.3f}" for v in seeds) + ")"
  return out


def _opt(row: dict, key: str, spec: str = ".4f") -> str:
  """row[key] formatted, or "–" for a file written before the key existed."""
  return "–" if row.get(key) is None else format(row[key], spec)


def readme_decay(r: dict) -> str:
  ctrl = r.get("control")
  cstep = {t: i for i, t in enumerate(ctrl["steps"])} if ctrl else {}
  has_p = "P" in r  # P per checkpoint: absent from files written before it
  head = "| step | H [95% CI] | H / (L ln W) | attention | next token |" + (" P (world 0) |" if has_p else "")
  head += " H, WSD control |" if ctrl else ""
  lines = [head, "|---|---|---|---|---|" + ("---|" if has_p else "") + ("---|" if ctrl else "")]
  for i, step in enumerate(r["steps"]):
    ci = r.get("entropy_ci95")
    h = f"{r['entropy'][i]:.4f}" + (f" [{ci[i][0]:.4f}, {ci[i][1]:.4f}]" if ci else "")
    line = f"| {step} | {h} | {r['normalised'][i]:.5f} | {fmt(r['attention'][i])} | {fmt(r['next_token'][i])} |"
    if has_p:
      line += f" {r['P'][i]:.4f} |"
    if ctrl:
      j = cstep.get(step)
      mark = "" if j is None or step <= ctrl["decay_start"] else " (decaying)"
      line += f" {'' if j is None else format(ctrl['entropy'][j], '.4f')}{mark} |"
    lines.append(line)
  return "\n".join(lines)


def readme_acquisition(r: dict) -> str:
  """One row per continued checkpoint: H, P before and after, A with its parts (K before and after,
  the multiple-choice accuracy on the new facts after) and F; "–" where an older file lacks a key."""
  lines = ["| schedule | from step | H | P_PT | P_CL | K_PT | K_CL | new facts answered | A [95% CI] (per seed) | "
           "F [95% CI] (per seed) |", "|---|---|---|---|---|---|---|---|---|---|"]
  for label, rows in (("cosine", r["sources"]), ("WSD control", r.get("control_sources") or [])):
    for x in sorted(rows, key=lambda x: x["step"]):
      lines.append(f"| {label} | {x['step']} | {x['entropy']:.4f} | {_opt(x, 'P_pt')} | {_opt(x, 'P_cl')} | "
                   f"{_opt(x, 'K_pt', '.3f')} | {_opt(x, 'K_cl', '.3f')} | {_opt(x, 'acc_new_cl')} | {_pm(x, 'A')} | "
                   f"{_pm(x, 'F')} |")
  for label, key in (("cosine", "trend"), ("WSD control", "control_trend")):
    t = r.get(key)
    if t:
      lines.append(f"\n{label}, step {t['from']} → {t['to']}: ΔA {t['dA']:+.4f} [{t['dA_ci95'][0]:+.4f}, "
                   f"{t['dA_ci95'][1]:+.4f}], ΔF {t['dF']:+.4f} [{t['dF_ci95'][0]:+.4f}, {t['dF_ci95'][1]:+.4f}] "
                   "(paired seed-level intervals)")
  return "\n".join(lines)


def _delta(row: dict, key: str) -> str:
  """ΔA or ΔF against the unedited checkpoint, with its paired interval when the file has one."""
  if row.get(key) is None:
    return "–"
  ci = row.get(f"{key}_ci95")
  return f"{row[key]:+.4f}" + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "")


def readme_resuscitation(r: dict) -> str:
  lines = ["| checkpoint | setting | H after edit | A [95% CI] (per seed) | F [95% CI] (per seed) | ΔA [95% CI] | "
           "ΔF [95% CI] |", "|---|---|---|---|---|---|---|"]
  if r["base"]:
    lines.append(f"| {r['step']} | unedited | {r['base']['entropy']:.4f} | {_pm(r['base'], 'A')} | "
                 f"{_pm(r['base'], 'F')} | | |")
  for row in [*r["settings"], *r.get("p_sweep", []), *r.get("earlier", [])]:
    extra = f" (unedited A {row['base']['A']:+.4f}, F {row['base']['F']:+.4f})" if "base" in row else ""
    lines.append(f"| {row.get('step', r['step'])} | p = {row['p']:g}, q = {row['q']:g}{extra} | "
                 f"{row['entropy_after']:.4f} | {_pm(row, 'A')} | {_pm(row, 'F')} | {_delta(row, 'dA')} | "
                 f"{_delta(row, 'dF')} |")
  return "\n".join(lines)


STUDY = Study(
    name=NAME,
    description="Knowledge entropy (Kim et al. 2025): its decay over pretraining, its cost to continual "
                "learning, and resuscitation, on a synthetic fact world",
    presets={p: s.cpu_s for p, s in SETTINGS.items()},
    headline_preset=HEADLINE_PRESET,
    run=run,
    outputs=(Output(DECAY, DECAY, criteria_decay, plot_decay, readme_decay),
             Output(ACQUISITION, ACQUISITION, criteria_acquisition, plot_acquisition, readme_acquisition),
             Output(RESUSCITATION, RESUSCITATION, criteria_resuscitation, plot_resuscitation,
                    readme_resuscitation)),
)
