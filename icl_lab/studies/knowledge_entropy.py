"""Knowledge entropy (Kim et al., ICLR 2025): its decay over pretraining, what it costs continual
learning, and resuscitation, reproduced as a phenomenon on a small SwiGLU decoder pretrained on the
synthetic fact world (`icl_lab.fact_world`), not on OLMo.

1. Pretrain on world 0, keeping evenly spaced checkpoints; measure knowledge entropy (and attention
   and next-token entropy) at each on the first training sequences, which every checkpoint has seen.
2. Continue chosen checkpoints on world 1 (a new filler language and new persons) with fictional
   facts injected every `inject_every` steps, with a fresh AdamW state. Acquisition A compares the
   log-probability of the fictional facts' values after and before (memorisation and
   generalisation probes, paraphrase and once splits); forgetting F compares the multiple-choice
   accuracy on world 0's facts after and before.
3. Resuscitate the final checkpoint (Algorithm 1, p, q) and continue it the same way; A and F keep
   the unmodified checkpoint as their reference, so damage done by the edit counts as forgetting.

Deviation from the paper: the lab's schedule decays the continual run's learning rate to 0 rather
than to 10% of its peak.
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

from icl_lab import checkpoints, fact_world, results, task_api, train
from icl_lab import config as config_lib
from icl_lab import knowledge_entropy as ke
from icl_lab.config import Config, ConfigError, FactConfig, ModelConfig, TaskConfig, TrainConfig
from icl_lab.io import atomic_write_text, read_json
from icl_lab.plotting import save_figure
from icl_lab.results import Criterion, Seeds
from icl_lab.studies.base import Output, RunRequest, Study, fmt, settings_for

NAME = "knowledge_entropy"
HEADLINE_PRESET = "quick"
DECAY, ACQUISITION, RESUSCITATION = "knowledge_entropy_decay", "knowledge_acquisition", "knowledge_resuscitation"
PROBES = tuple((split, kind) for split in ("paraphrase", "once") for kind in ("memorisation", "generalisation"))


@dataclasses.dataclass(frozen=True)
class Settings:
  config_overrides: tuple[str, ...] = ()  # applied to the preset's pretraining config
  cl_from: tuple[float, ...] = (0.2, 0.5, 0.75, 1.0)  # fractions of pretraining whose checkpoints continue
  cl_steps: int = 1600
  cl_batch: int = 128
  cl_lr: float = 4e-4
  inject_every: int = 160
  resus_p: float = 0.5
  resus_q: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)
  entropy_sequences: int = 2048
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
    # 25-50 minutes on 2 CPU cores (estimated from 5.2 steps/s measured on a shared 2-core machine,
    # about twice that when it is idle; not yet run end to end): 20 checkpoints.
    "quick": _pretrain("quick", ModelConfig(layers=4, hidden=64, heads=4, mlp="swiglu"),
                       FactConfig(persons=256, paraphrase_facts=32, once_facts=32), steps=12_000, batch=64,
                       lr=2e-3, checkpoints_kept=20, steps_per_call=100),
    # A GPU run (an estimated 1-2 hours on one H200, not yet run): a wider, deeper model on a world of
    # 4096 persons, continual learning at the paper's scale (1600 steps, batch 128, injections every 160).
    "gpu": _pretrain("gpu", ModelConfig(layers=8, hidden=256, heads=8, mlp="swiglu"),
                     FactConfig(persons=4096, relations=8, values=32, filler_vocab=256, filler_branching=4,
                                sentences=16, paraphrase_facts=64, once_facts=64),
                     steps=100_000, batch=256, lr=1e-3, checkpoints_kept=20, steps_per_call=200),
}

SETTINGS = {
    "tiny": Settings(cl_from=(0.2, 1.0), cl_steps=30, cl_batch=32, cl_lr=1e-3, inject_every=10, resus_q=(1.0,),
                     entropy_sequences=128, cpu_s=40),
    # 12k pretraining steps, then 7 continual runs of 500 steps (4 checkpoints, 3 resuscitations).
    "quick": Settings(cl_from=(0.2, 0.5, 0.75, 1.0), cl_steps=500, cl_batch=64, cl_lr=1e-3, inject_every=50,
                      resus_q=(0.5, 1.0, 2.0), entropy_sequences=1024, cpu_s=3000),
    "gpu": Settings(entropy_sequences=2048),
}


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
      f"train.data_seed={pt.train.data_seed + 1}", f"train.steps_per_call={per_call}",
      f"train.checkpoint_every={s.cl_steps}", "train.keep_checkpoints=1", f"train.init_from={source}",
      f"train.init_from_step={step}"])


def configs(preset: str, overrides=()) -> list[Config]:
  """The pretraining run (the continual runs depend on its checkpoints' folder)."""
  return [pretrain_config(preset, SETTINGS[preset], overrides)]


# ---------------------------------------------------------------------------
# Measurements


def knowledge_scores(model, facts: FactConfig) -> dict:
  """K per probe (mean log-probability of the fictional values) and their mean; P (world 0 accuracy)."""
  k = {f"{split}_{kind}": fact_world.score(model, fact_world.fictional_probe(facts, split, kind))["logprob"]
       for split, kind in PROBES if (facts.paraphrase_facts if split == "paraphrase" else facts.once_facts)}
  known = fact_world.score(model, fact_world.known_probe(facts))
  return {"K": float(np.mean(list(k.values()))), "K_by_probe": k, "P": known["accuracy"],
          "P_logprob": known["logprob"]}


def scores_vs(pt: dict, cl: dict) -> dict:
  """A and F of a continual run against its reference checkpoint's scores."""
  return {"A": ke.acquisition(cl["K"], pt["K"]), "F": ke.forgetting(cl["P"], pt["P"]),
          "A_by_probe": {p: ke.acquisition(cl["K_by_probe"][p], pt["K_by_probe"][p]) for p in pt["K_by_probe"]}}


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
  cl = knowledge_scores(model, cfg.facts)
  return {"cl_run": run_dir.name, "cl": cl, **scores_vs(ref, cl), "cl_train_s": train.train_seconds(run_dir)}


def run(req: RunRequest, dest: results.Destination) -> list[Path]:
  s = settings_for(NAME, SETTINGS, req)
  pt = pretrain_config(req.preset, s, req.config_overrides)
  runs_dir = Path(req.runs_dir)
  t0 = time.perf_counter()
  print(f"icl-lab {NAME}: pretraining {train.config_summary(pt)}", flush=True)
  pt_dir = train.train(pt, runs_dir)
  ids_NxT = fact_world.first_batches(pt, s.entropy_sequences)[:, :-1]

  # 1. Entropy at initialisation and at every kept checkpoint.
  steps = checkpoint_steps(pt_dir, pt.train.keep_checkpoints)
  reports, cbars = {}, {}
  init = task_api.get_task(pt).build_model(pt, pt.train.seed)
  reports[0], _ = ke.measure(init, ids_NxT)
  for step in steps:
    reports[step], cbars[step] = ke.measure(train.load_model(pt_dir, step)[1], ids_NxT)
    print(f"step {step:6d}  H = {reports[step].total:.4f}  H/(L ln W) = {reports[step].normalised:.5f}", flush=True)
  all_steps = [0, *steps]
  decay = {"preset": req.preset, "run": pt_dir.name, "config": pt.to_dict(), "total_steps": pt.train.steps,
           "decay_from": s.decay_from, "num_sequences": int(ids_NxT.shape[0]), "steps": all_steps,
           "entropy": [reports[t].total for t in all_steps], "normalised": [reports[t].normalised for t in all_steps],
           "per_layer": [list(reports[t].per_layer) for t in all_steps],
           "attention": [reports[t].attention for t in all_steps],
           "next_token": [reports[t].next_token for t in all_steps],
           "max_entropy": pt.model.layers * math.log(pt.model.mlp_ratio * pt.model.hidden),
           "pretrain_s": train.train_seconds(pt_dir)}

  # 2. Continual learning from the chosen checkpoints.
  sources = sorted({min(steps, key=lambda t: abs(t - f * pt.train.steps)) for f in s.cl_from})
  acq_rows, refs = [], {}
  for step in sources:
    refs[step] = knowledge_scores(train.load_model(pt_dir, step)[1], pt.facts)
    row = {"step": step, "frac": step / pt.train.steps, "entropy": reports[step].total,
           "normalised": reports[step].normalised, "pt": refs[step],
           **_continue(pt, s, pt_dir, step, runs_dir, refs[step])}
    acq_rows.append(row)
    print(f"from step {step:6d}: A = {row['A']:+.4f}  F = {row['F']:+.4f}", flush=True)
  acquisition = {"preset": req.preset, "run": pt_dir.name, "total_steps": pt.train.steps, "cl_steps": s.cl_steps,
                 "cl_lr": s.cl_lr, "inject_every": s.inject_every, "sources": acq_rows,
                 "continual_config": continual_config(pt, s, pt_dir, sources[0]).to_dict()}

  # 3. Resuscitation of the final checkpoint.
  final = steps[-1]
  base = next(r for r in acq_rows if r["step"] == final) if final in sources else None
  _, final_model = train.load_model(pt_dir, final)
  ref_final = refs[final] if final in refs else knowledge_scores(final_model, pt.facts)
  resus_rows = []
  for q in s.resus_q:
    new = ke.resuscitate(final_model, cbars[final], s.resus_p, q)
    folder = write_checkpoint_folder(runs_dir / f"{pt_dir.name}-resus-s{final}-p{s.resus_p:g}-q{q:g}", pt, new, final)
    after, _ = ke.measure(new, ids_NxT)
    row = {"q": q, "p": s.resus_p, "entropy_before": reports[final].total, "entropy_after": after.total,
           "normalised_after": after.normalised,
           "units_changed": int((ke.resuscitation_scales(cbars[final], s.resus_p, q) != 1.0).sum()),
           "edited": knowledge_scores(new, pt.facts), **_continue(pt, s, folder, final, runs_dir, ref_final)}
    resus_rows.append(row)
    print(f"resuscitated p = {s.resus_p:g}, q = {q:g}: H {row['entropy_before']:.4f} -> {row['entropy_after']:.4f}, "
          f"A = {row['A']:+.4f}  F = {row['F']:+.4f}", flush=True)
  resuscitation = {"preset": req.preset, "run": pt_dir.name, "step": final, "p": s.resus_p,
                   "base": None if base is None else {"A": base["A"], "F": base["F"], "entropy": base["entropy"]},
                   "settings": resus_rows}

  wall = time.perf_counter() - t0
  seeds = Seeds((pt.train.seed,), (pt.train.data_seed, pt.train.data_seed + 1), pt.train.data_seed,
                (("world_seed", pt.facts.world_seed),))
  common = dict(preset=req.preset, seeds=seeds, wall_s=wall, run=pt_dir.name)
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


def criteria_decay(r: dict) -> list[Criterion]:
  steps, h = np.asarray(r["steps"]), np.asarray(r["entropy"])
  late = steps >= r["decay_from"] * r["total_steps"]
  rho = ke.spearman(steps[late], h[late]) if late.sum() >= 3 else None
  per_layer = np.asarray(r["per_layer"])[late]
  lower = int((per_layer[-1] < per_layer[0]).sum()) if late.sum() >= 2 else 0
  layers = per_layer.shape[1]
  frac = f"{r['decay_from']:.0%}"
  return [Criterion(f"Spearman ρ(step, H) over checkpoints from {frac} of pretraining on", rho, "≤ −0.9",
                    rho is not None and rho <= -0.9),
          Criterion(f"layers whose Hˡ at the end is below its value at {frac}", lower, f"all {layers}",
                    lower == layers)]


def _ratio(num: float, den: float) -> float | None:
  return num / den if den > 0 else None


def criteria_acquisition(r: dict) -> list[Criterion]:
  rows = sorted(r["sources"], key=lambda x: x["step"])
  first, last = rows[0], rows[-1]
  a_ratio, f_ratio = _ratio(last["A"], first["A"]), _ratio(last["F"], first["F"])
  h = [x["entropy"] for x in rows]
  enough = len(rows) >= 2
  pa = ke.pearson(h, [x["A"] for x in rows]) if enough else None
  pf = ke.pearson(h, [x["F"] for x in rows]) if enough else None
  note = " (±1 with two checkpoints)" if len(rows) == 2 else ""
  f_met = last["F"] > 0 and last["F"] >= 1.3 * first["F"]
  return [Criterion(f"A(step {last['step']}) / A(step {first['step']})", a_ratio, "≤ 0.85 (A(first) > 0)",
                    a_ratio is not None and a_ratio <= 0.85),
          Criterion(f"F(step {last['step']}) / F(step {first['step']})", f_ratio,
                    "≥ 1.3 (or F(first) ≤ 0 < F(last))", bool(f_met)),
          Criterion("Pearson(H, A) over the continued checkpoints", pa, f"≥ 0.8{note}", pa is not None and pa >= 0.8),
          Criterion("Pearson(H, F) over the continued checkpoints", pf, f"≤ −0.8{note}",
                    pf is not None and pf <= -0.8)]


def criteria_resuscitation(r: dict) -> list[Criterion]:
  by_q = {row["q"]: row for row in r["settings"]}
  base = r["base"]
  out = []
  for q in (1.0, 2.0):
    row = by_q.get(q)
    ok = row is not None and base is not None and row["A"] > base["A"] and row["F"] < base["F"]
    value = None if row is None or base is None else [row["A"] - base["A"], row["F"] - base["F"]]
    out.append(Criterion(f"p = {r['p']:g}, q = {q:g}: [ΔA, ΔF] against the unedited final checkpoint", value,
                         "ΔA > 0 and ΔF < 0", bool(ok)))
  row = by_q.get(0.5)
  value = None if row is None or base is None else row["A"] - base["A"]
  out.append(Criterion(f"p = {r['p']:g}, q = 0.5: ΔA", value, "< 0", value is not None and value < 0))
  rises = [row["entropy_after"] > row["entropy_before"] for row in r["settings"]]
  out.append(Criterion("settings whose knowledge entropy rises after the edit", sum(rises),
                       f"all {len(rises)}", bool(rises) and all(rises)))
  return out


# ---------------------------------------------------------------------------
# Figures


def plot_decay(json_path: str | Path) -> list[Path]:
  """H/(L ln W) against step, each layer's Hˡ, and the attention and next-token entropies."""
  json_path = Path(json_path)
  r = read_json(json_path)
  steps = r["steps"]
  fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
  axes[0].plot(steps, r["normalised"], "k-o", ms=3)
  axes[0].axvline(r["decay_from"] * r["total_steps"], color="0.6", ls=":", lw=1)
  axes[0].set_ylabel("knowledge entropy H / (L ln W)")
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
  fig.suptitle(f"Knowledge entropy over pretraining (preset {r['preset']})")
  return save_figure(fig, json_path)


def plot_acquisition(json_path: str | Path) -> list[Path]:
  """A and F of continual learning against the checkpoint it started from, with that checkpoint's H."""
  json_path = Path(json_path)
  r = read_json(json_path)
  rows = sorted(r["sources"], key=lambda x: x["step"])
  steps = [x["step"] for x in rows]
  fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
  ax.plot(steps, [x["A"] for x in rows], "-o", color="tab:blue", label="acquisition A")
  ax.plot(steps, [x["F"] for x in rows], "-s", color="tab:red", label="forgetting F")
  ax.axhline(0, color="0.6", lw=0.8)
  ax.set_xlabel("pretraining step of the starting checkpoint")
  ax.set_ylabel("A, F")
  twin = ax.twinx()
  twin.plot(steps, [x["entropy"] for x in rows], "--", color="0.4", label="knowledge entropy H")
  twin.set_ylabel("H (nats)")
  ax.legend(loc="upper left", fontsize=8)
  twin.legend(loc="upper right", fontsize=8)
  ax.set_title(f"Continual learning from each checkpoint (preset {r['preset']})")
  return save_figure(fig, json_path)


def plot_resuscitation(json_path: str | Path) -> list[Path]:
  """A and F of the final checkpoint, unedited and after each resuscitation setting."""
  json_path = Path(json_path)
  r = read_json(json_path)
  labels = (["unedited"] if r["base"] else []) + [f"q = {row['q']:g}" for row in r["settings"]]
  a = ([r["base"]["A"]] if r["base"] else []) + [row["A"] for row in r["settings"]]
  f = ([r["base"]["F"]] if r["base"] else []) + [row["F"] for row in r["settings"]]
  x = np.arange(len(labels))
  fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
  ax.bar(x - 0.2, a, 0.4, color="tab:blue", label="acquisition A")
  ax.bar(x + 0.2, f, 0.4, color="tab:red", label="forgetting F")
  ax.axhline(0, color="0.6", lw=0.8)
  ax.set_xticks(x, labels)
  ax.legend(fontsize=8)
  ax.set_title(f"Resuscitation of step {r['step']}, p = {r['p']:g} (preset {r['preset']})")
  return save_figure(fig, json_path)


# ---------------------------------------------------------------------------
# README tables


def readme_decay(r: dict) -> str:
  lines = ["| step | H | H / (L ln W) | attention | next token |", "|---|---|---|---|---|"]
  for i, step in enumerate(r["steps"]):
    lines.append(f"| {step} | {r['entropy'][i]:.4f} | {r['normalised'][i]:.5f} | {fmt(r['attention'][i])} | "
                 f"{fmt(r['next_token'][i])} |")
  return "\n".join(lines)


def readme_acquisition(r: dict) -> str:
  lines = ["| from step | H | A | F |", "|---|---|---|---|"]
  for x in sorted(r["sources"], key=lambda x: x["step"]):
    lines.append(f"| {x['step']} | {x['entropy']:.4f} | {x['A']:+.4f} | {x['F']:+.4f} |")
  return "\n".join(lines)


def readme_resuscitation(r: dict) -> str:
  lines = ["| setting | H after edit | A | F |", "|---|---|---|---|"]
  if r["base"]:
    lines.append(f"| unedited | {r['base']['entropy']:.4f} | {r['base']['A']:+.4f} | {r['base']['F']:+.4f} |")
  for row in r["settings"]:
    lines.append(f"| p = {row['p']:g}, q = {row['q']:g} | {row['entropy_after']:.4f} | {row['A']:+.4f} | "
                 f"{row['F']:+.4f} |")
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
