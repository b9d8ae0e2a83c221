"""Knowledge capacity (Allen-Zhu and Li, Physics of Language Models 3.3): how many bits of a fact world
a model stores per non-embedding parameter, reproduced as a phenomenon on small GPT-2-style (GeLU
MLP) decoders pretrained on the synthetic fact world with multi-token names, not on the paper's
biographies.

Models of several widths each train on worlds of a growing number of persons (facts = persons ×
relations), every fact seen about `exposures` times: the steps follow from the world's size
(`run_config`). Each trained model's stored bits (`analysis.capacity`, the simplified bound) should
grow with the world while the world is small, then saturate at a level that grows in proportion to
the model's non-embedding parameters: about 1 bit per parameter at 100 exposures in the paper.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from icl_lab import config as config_lib
from icl_lab import results
from icl_lab.analysis import capacity
from icl_lab.config import Config, ConfigError, FactConfig, ModelConfig, TaskConfig, TrainConfig
from icl_lab.io import read_json
from icl_lab.results import Criterion, Seeds
from icl_lab.studies.base import Output, RunRequest, Study, fmt, settings_for
from icl_lab.studies.plotting import save_figure
from icl_lab.training import train

NAME = "knowledge_capacity"
HEADLINE_PRESET = "quick"
# The paper's capacity at about 100 and about 1000 exposures per fact (bits per non-embedding parameter).
PUBLISHED_BITS_PER_PARAM = {100: 1.0, 1000: 2.0}
SATURATION_RATIO = 1.25  # stored bits at the largest world over the next one, at most, to count as saturated
SLOPE_RANGE = (0.7, 1.3)  # log-log slope of the saturation level against non-embedding parameters


@dataclasses.dataclass(frozen=True)
class Settings:
  config_overrides: tuple[str, ...] = ()  # applied to every run's config
  widths: tuple[int, ...] = (8, 16, 32)  # model.hidden of each size
  layers: int = 1
  heads: int = 2
  persons: tuple[int, ...] = (128, 512, 2048)  # the worlds, smallest first
  relations: int = 4
  values: int = 32  # log₂ 32 = 5 bits per fact
  templates: int = 2
  name_tokens: int = 2
  name_pool: int = 64  # 64² names: both worlds of 2048 persons (raise it for larger worlds)
  sentences: int = 4  # per sequence; every sentence is a fact (no filler), so exposures are exact
  exposures: int = 100  # times each fact is seen, in expectation
  # One batch for every world, as in the paper: a larger world trains for proportionally more steps.
  # (Shrinking the batch of the small worlds to give them more steps made the stored bits depend on
  # the batch: L1/H16 stored 2404 bits of 2048 facts at batch 32 and 4707 of 8192 at batch 128.)
  batch: int = 32
  steps_per_call: int = 50
  # Small models need a high rate: L1/H8 on 512 facts (1600 steps of batch 8) stored 186 bits at
  # 5e-3 and 707 at 2e-2; at 5e-2 L1/H32 failed (361 bits of 2048 facts against 8589 at 2e-2).
  lr: float = 2e-2
  seed: int = 0  # train.seed and train.data_seed of every run
  cpu_s: float | None = None  # expected wall clock on 2 idle CPU cores


SETTINGS = {
    # Seconds: the tests run it. Two sizes 14x apart on one world.
    "tiny": Settings(widths=(4, 32), persons=(32,), values=16, steps_per_call=25, lr=1e-2, cpu_s=45),
    # Three sizes 14x apart in non-embedding parameters (L1/H8, H16, H32: 0.9k, 3.3k, 12.8k) on three
    # worlds of 512 to 8192 facts (2.6k to 41k bits), 100 exposures each (400 to 6400 steps).
    # Measured: 285 s of training in all on 2 cores shared with other jobs, about 7 minutes end to end.
    "quick": Settings(cpu_s=600),
}


def run_config(preset: str, s: Settings, width: int, persons: int, overrides=()) -> Config:
  """One model on one world: facts only, persons and relations uniform, so each fact is seen
  `exposures` times in expectation after steps · batch · sentences / facts sentences."""
  facts = persons * s.relations
  sentences_needed = s.exposures * facts
  steps = math.ceil(sentences_needed / (s.batch * s.sentences) / s.steps_per_call) * s.steps_per_call
  cfg = Config(
      preset=f"kc_{preset}", task=TaskConfig(kind="fact_lm"),
      model=ModelConfig(layers=s.layers, hidden=width, heads=s.heads, mlp="gelu"),
      facts=FactConfig(persons=persons, relations=s.relations, templates=s.templates, values=s.values,
                       sentences=s.sentences, fact_frac=1.0, zipf=0.0, paraphrase_facts=0, once_facts=0,
                       name_tokens=s.name_tokens, name_pool=s.name_pool),
      train=TrainConfig(steps=steps, batch_size=s.batch, lr=s.lr, warmup_frac=0.05, weight_decay=0.0, grad_clip=1.0,
                        b2=0.98, steps_per_call=s.steps_per_call, checkpoint_every=steps, keep_checkpoints=1,
                        seed=s.seed, data_seed=s.seed))
  return config_lib.apply_overrides(cfg, [*s.config_overrides, *overrides])


def exposures_of(cfg: Config) -> float:
  """Times each fact is seen in expectation over the run (every sentence a fact, facts uniform)."""
  f = cfg.facts
  return cfg.train.steps * cfg.train.batch_size * f.sentences * f.fact_frac / (f.persons * f.relations)


def grid(preset: str, s: Settings, overrides=()) -> list[list[Config]]:
  """cfgs[size][world]."""
  if not s.widths or not s.persons:
    raise ConfigError("study.widths and study.persons must each name at least one value")
  return [[run_config(preset, s, w, p, overrides) for p in s.persons] for w in s.widths]


def configs(preset: str, overrides=()) -> list[Config]:
  if preset not in SETTINGS:
    raise ConfigError(f"study {NAME} has no preset {preset!r}; accepted: {', '.join(SETTINGS)}")
  return [c for row in grid(preset, SETTINGS[preset], overrides) for c in row]


def run(req: RunRequest, dest: results.Destination) -> list[Path]:
  s = settings_for(NAME, SETTINGS, req)
  cfgs = grid(req.preset, s, req.config_overrides)
  t0 = time.perf_counter()
  sizes = []
  for row in cfgs:
    m = row[0].model
    size = {"layers": m.layers, "hidden": m.hidden, "heads": m.heads, "mlp": m.mlp, "worlds": []}
    for cfg in row:
      print(f"icl-lab {NAME}: {train.config_summary(cfg)}", flush=True)
      run_dir, model = train.train_and_load(cfg, req.runs_dir)
      size["params_non_embedding"] = capacity.non_embedding_params(model)
      got = capacity.measure(model, cfg.facts)
      world = {"persons": cfg.facts.persons, **got, "bits_per_param": got["stored_bits"] / size["params_non_embedding"],
               "exposures": exposures_of(cfg), "steps": cfg.train.steps, "batch": cfg.train.batch_size,
               "final_loss": (train.read_metrics(run_dir) or [{}])[-1].get("loss"), "run": run_dir.name,
               "train_s": train.train_seconds(run_dir)}
      size["worlds"].append(world)
      print(f"  L{m.layers}/H{m.hidden} ({size['params_non_embedding']} non-embedding params), {world['facts']} "
            f"facts: {world['stored_bits']:.0f} of {world['log2v_total']:.0f} bits stored "
            f"({world['bits_per_param']:.3f} bits/param, {world['exposures']:.0f} exposures)", flush=True)
    sizes.append(size)
  f = cfgs[0][0].facts
  payload = {"preset": req.preset, "exposures": s.exposures, "relations": f.relations, "values": f.values,
             "templates": f.templates, "name_tokens": f.name_tokens, "name_pool": f.name_pool,
             "ce_over": "whole vocabulary", "sizes": sizes, "config": cfgs[0][0].to_dict(),
             "published_bits_per_param": {str(k): v for k, v in PUBLISHED_BITS_PER_PARAM.items()}}
  wall = time.perf_counter() - t0
  seeds = Seeds((s.seed,), (s.seed,), s.seed, (("world_seed", f.world_seed),))
  paths = results.write(dest, NAME, payload, preset=req.preset, seeds=seeds, wall_s=wall, criteria=criteria,
                        plot=plot, run=cfgs[0][0].run_name())
  print(f"\n{paths[0].name}:\n{results.format_criteria(read_json(paths[0])['criteria'])}")
  print(f"\nresults and figures written to {dest.folder.resolve()} ({wall:.0f} s)")
  return paths


# ---------------------------------------------------------------------------
# Criteria, from the results alone


def saturation_level(size: dict) -> float:
  """A size's saturation level: the most bits it stores on any world."""
  return max(w["stored_bits"] for w in size["worlds"])


def loglog_slope(x, y) -> float | None:
  """Least-squares slope of log y against log x (None with fewer than 2 points or y ≤ 0)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if len(x) < 2 or (y <= 0).any():
    return None
  return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def published_reference(exposures: float) -> tuple[int, float]:
  """The published capacity nearest (on a log scale) to the run's exposures: (exposures, bits/param)."""
  near = min(PUBLISHED_BITS_PER_PARAM, key=lambda e: abs(math.log(e) - math.log(max(exposures, 1e-9))))
  return near, PUBLISHED_BITS_PER_PARAM[near]


def criteria(r: dict) -> list[Criterion]:
  sizes = r["sizes"]
  ratios = []
  for size in sizes:
    w = size["worlds"]
    ok = len(w) >= 2 and w[-2]["stored_bits"] > 0
    ratios.append(w[-1]["stored_bits"] / w[-2]["stored_bits"] if ok else None)
  grew = [f"{w['facts']}" for w in sizes[0]["worlds"][-2:]]
  sat = Criterion(f"stored bits at {' vs '.join(reversed(grew))} facts (largest world over the next), per size",
                  ratios, f"≤ {SATURATION_RATIO} for every size",
                  bool(ratios) and all(x is not None and x <= SATURATION_RATIO for x in ratios))
  params = [size["params_non_embedding"] for size in sizes]
  levels = [saturation_level(size) for size in sizes]
  slope = loglog_slope(params, levels)
  lo, hi = SLOPE_RANGE
  slope_c = Criterion("log-log slope of the saturation level (most bits stored) against non-embedding parameters",
                      slope, f"in [{lo}, {hi}]", slope is not None and lo <= slope <= hi)
  exposures = float(np.mean([w["exposures"] for size in sizes for w in size["worlds"]]))
  near, ref = published_reference(exposures)
  bpp = [lvl / p for lvl, p in zip(levels, params)]
  bpp_c = Criterion(f"saturation bits per non-embedding parameter, per size ({exposures:.0f} exposures; published: "
                    f"{ref:g} at {near})", bpp, f"in [{ref / 2:g}, {2 * ref:g}] for every size",
                    all(ref / 2 <= x <= 2 * ref for x in bpp))
  return [sat, slope_c, bpp_c]


# ---------------------------------------------------------------------------
# Figure and table


def plot(json_path: str | Path) -> list[Path]:
  """Stored bits against facts per size (all facts' log₂V dotted, each size's published capacity
  dashed), and the saturation level against non-embedding parameters."""
  json_path = Path(json_path)
  r = read_json(json_path)
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
  ax = axes[0]
  worlds = r["sizes"][0]["worlds"]
  facts = [w["facts"] for w in worlds]
  ax.plot(facts, [w["log2v_total"] for w in worlds], ":", color="0.4", label="every fact stored (Σ log₂V)")
  exposures = float(np.mean([w["exposures"] for size in r["sizes"] for w in size["worlds"]]))
  near, ref = published_reference(exposures)
  for i, size in enumerate(r["sizes"]):
    color = f"C{i}"
    ax.plot([w["facts"] for w in size["worlds"]], [max(w["stored_bits"], 1e-1) for w in size["worlds"]], "-o",
            color=color, ms=4, label=f"L{size['layers']}/H{size['hidden']} ({size['params_non_embedding']:,} params)")
    ax.axhline(ref * size["params_non_embedding"], color=color, ls="--", lw=0.8)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xticks(facts, [f"{f:,}" for f in facts])
  ax.set_xticks([], minor=True)
  ax.set_xlabel("facts in the world")
  ax.set_ylabel("stored bits (Σ max(0, log₂V − CE))")
  ax.set_title(f"dashed: {ref:g} bit/param (published, {near} exposures)", fontsize=9)
  ax.legend(fontsize=7)
  ax = axes[1]
  params = np.asarray([size["params_non_embedding"] for size in r["sizes"]], np.float64)
  levels = np.asarray([saturation_level(size) for size in r["sizes"]])
  ax.plot(params, levels, "ko", label="most bits stored")
  ax.plot(params, ref * params, "--", color="0.5", label=f"{ref:g} bit/param")
  slope = loglog_slope(params, levels)
  if slope is not None:
    fit = np.polyfit(np.log(params), np.log(levels), 1)
    ax.plot(params, np.exp(np.polyval(fit, np.log(params))), "-", color="tab:red", lw=1,
            label=f"fit: slope {slope:.2f}")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("non-embedding parameters")
  ax.set_ylabel("saturation level (bits)")
  ax.legend(fontsize=7)
  for ax in axes:
    ax.grid(alpha=0.3, which="both", lw=0.4)
  fig.suptitle(f"Knowledge capacity: {r['name_tokens']}-token names, {r['values']} values per relation, "
               f"about {exposures:.0f} exposures per fact (preset {r['preset']})")
  return save_figure(fig, json_path)


def readme(r: dict) -> str:
  worlds = r["sizes"][0]["worlds"]
  head = " | ".join(f"{w['facts']} facts ({w['log2v_total']:.0f} bits)" for w in worlds)
  lines = [f"| size | non-embedding params | {head} | bits / param |", "|---|---|" + "---|" * len(worlds) + "---|"]
  for size in r["sizes"]:
    cells = " | ".join(f"{w['stored_bits']:.0f}" for w in size["worlds"])
    bpp = saturation_level(size) / size["params_non_embedding"]
    lines.append(f"| L{size['layers']}/H{size['hidden']} | {size['params_non_embedding']:,} | {cells} | {fmt(bpp)} |")
  runs = [w for size in r["sizes"] for w in size["worlds"]]
  lo, hi = (f"{f(w['exposures'] for w in runs):.0f}" for f in (min, max))
  lines.append("")
  lines.append(f"Stored bits per world; bits / param is the most bits stored over the non-embedding "
               f"parameters. Exposures per fact: {lo if lo == hi else f'{lo}–{hi}'}; "
               f"{len(runs)} runs, {sum(w['train_s'] for w in runs):.0f} s of training in all.")
  return "\n".join(lines)


STUDY = Study(
    name=NAME,
    description="Knowledge capacity (Allen-Zhu and Li 2024): bits stored per non-embedding parameter, on "
                "fact worlds with multi-token names",
    presets={p: s.cpu_s for p, s in SETTINGS.items()},
    headline_preset=HEADLINE_PRESET,
    run=run,
    outputs=(Output(NAME, NAME, criteria, plot, readme),),
)
