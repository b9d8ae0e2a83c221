"""Knowledge infusion scaling law (Lv et al., EMNLP 2025, arXiv 2509.19371), reproduced as a
phenomenon on small GPT-2-style decoders pretrained on the fact world with multi-token names.

Each model size trains one run per infusion frequency F at one fixed token budget: world 0's
stream (the general world) with a domain of world-1 facts infused so that each is seen exactly F
times (`tasks.infusion`); the F values of one size train together as one vmapped ensemble. Per
run: P = the held-out-template multiple-choice accuracy on the domain facts, above chance; the
retention of the general facts; the stored bits (`analysis.capacity`'s bound) of each world; and
the general LM loss. Per size, P(F) = a·F^b·exp(−c·F) is fitted for two readings of P (infused
accuracy, and total stored knowledge), and F* = b/c and the collapse point are extrapolated from
the smaller sizes to the largest (`analysis.infusion_law`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from icl_lab import config as config_lib
from icl_lab import results
from icl_lab.analysis import capacity
from icl_lab.analysis import infusion_law as law_lib
from icl_lab.config import Config, ConfigError, FactConfig, ModelConfig, TaskConfig, TrainConfig
from icl_lab.io import read_json
from icl_lab.results import Criterion, Seeds
from icl_lab.studies.base import Output, RunRequest, Study, fmt, settings_for
from icl_lab.studies.plotting import save_figure
from icl_lab.tasks import fact_world, infusion
from icl_lab.tasks.next_token import masked_cross_entropy
from icl_lab.training import train

NAME = "infusion"
CURVES, LAW = "infusion_curves", "infusion_law"
HEADLINE_PRESET = "quick"
READINGS = ("infused", "total")  # P: infused-fact accuracy above chance; total stored bits
PRESSURE_MAX = 0.8  # general facts answered at the smallest F, at most (the world exceeds capacity)
COLLAPSE_EDGE = 0.7  # P at the smallest and largest F, at most this fraction of the peak
R2_MIN = 0.85
PREDICTION_FACTOR = 1.5
PREDICTED_P_MIN = 0.9
ACQUIRED = 0.5  # infused P at which a size counts as having acquired the domain (descriptive)
# Bits per non-embedding parameter at about 100 exposures, measured by the knowledge_capacity study
# (figures/knowledge_capacity.json, its largest value over L1/H8..H32): sizes the general world.
CAPACITY_BITS_PER_PARAM = 1.33
EVAL_SEED = 10_000  # the general LM loss is read on world 0 stream batches of this data seed
EVAL_BATCHES = 4


@dataclasses.dataclass(frozen=True)
class Settings:
  config_overrides: tuple[str, ...] = ()  # applied to every run's config
  widths: tuple[int, ...] = (8, 12, 16, 32)  # model.hidden of each size, smallest first
  layers: int = 1
  heads: int = 2
  exposures: tuple[int, ...] = (1, 10, 30, 100, 300, 1000, 3000, 10000, 20000)  # F, smallest first
  persons: int = 1400  # general world (world 0): 5600 facts, 28k bits
  # Domain (world 1): 64 facts, 320 bits, well under the smallest size's capacity, so that every size
  # could hold the domain (512 facts are 2560 bits, more than L1/H8's or L1/H12's whole capacity).
  infuse_persons: int = 16
  relations: int = 4
  values: int = 32
  templates: int = 4  # 0..infuse_templates−1 state the domain; the rest ask held-out questions
  infuse_templates: int = 2
  name_tokens: int = 2
  name_pool: int = 64
  sentences: int = 8
  fact_frac: float = 0.75  # of the general stream; the rest is filler
  steps: int = 6000  # the fixed token budget: steps · batch sequences
  batch: int = 32
  steps_per_call: int = 50
  # Not the capacity study's 2e-2: on this world (4 templates, filler) L1/H32 at 2e-2 sat on a plateau
  # until a large F pulled it off (general accuracy 0.06-0.32 at F ≤ 300, 0.79 at F = 3000), so F
  # decided *whether* general facts were learnt; at 5e-3 it learns them at every F (0.51-0.62).
  lr: float = 5e-3
  n_boot: int = 1000
  seed: int = 0
  cpu_s: float | None = None  # expected wall clock on 2 idle CPU cores (None: needs a GPU)


SETTINGS = {
    # Seconds: the tests run it. Two sizes, four F on a small world; nothing in it is expected to hold.
    "tiny": Settings(widths=(4, 8), exposures=(1, 4, 16, 64), persons=48, infuse_persons=4, relations=2,
                     values=8, templates=3, name_pool=16, sentences=4, steps=50, batch=8, steps_per_call=25,
                     lr=1e-2, n_boot=20, cpu_s=30),
    # Four sizes 14x apart in non-embedding parameters (L1/H8..H32); 9 F values from 1 to 20,000, the
    # domain's share of sentences from 0.004% to 82% (the last F lets the domain dominate, the test the
    # issue asks for when P rises monotonically); the general world holds 1.65x the largest
    # size's capacity at CAPACITY_BITS_PER_PARAM. Trials of 2 sizes × 7 F took 736 s on 2 cores.
    "quick": Settings(cpu_s=1800),
    # A GPU sketch: deeper and wider models on a larger world and budget. Not yet run.
    "gpu": Settings(widths=(32, 64, 128, 256), layers=2, heads=4, persons=16_000, infuse_persons=512,
                    name_pool=256, steps=20_000, batch=128, steps_per_call=100, lr=5e-3, cpu_s=None),
}


def run_config(preset: str, s: Settings, width: int, exposures: int, overrides=()) -> Config:
  cfg = Config(
      preset=f"inf_{preset}", task=TaskConfig(kind="infusion_lm"),
      model=ModelConfig(layers=s.layers, hidden=width, heads=s.heads, mlp="gelu"),
      facts=FactConfig(persons=s.persons, relations=s.relations, templates=s.templates, values=s.values,
                       sentences=s.sentences, fact_frac=s.fact_frac, zipf=0.0, paraphrase_facts=0, once_facts=0,
                       name_tokens=s.name_tokens, name_pool=s.name_pool, infuse_persons=s.infuse_persons,
                       infuse_exposures=exposures, infuse_templates=s.infuse_templates,
                       # Uniform persons by inverse CDF: the categorical draw's Gumbel per person cost
                       # 11.6 ms of each member's batch on the quick world, against 0.3 ms.
                       person_draw="inverse_cdf"),
      train=TrainConfig(steps=s.steps, batch_size=s.batch, lr=s.lr, warmup_frac=0.05, weight_decay=0.0,
                        grad_clip=1.0, b2=0.98, steps_per_call=s.steps_per_call, checkpoint_every=s.steps,
                        keep_checkpoints=1, seed=s.seed, data_seed=s.seed))
  return config_lib.apply_overrides(cfg, [*s.config_overrides, *overrides])


def grid(preset: str, s: Settings, overrides=()) -> list[list[Config]]:
  """cfgs[size][F]: one ensemble per size."""
  if len(s.widths) < 2 or len(s.exposures) < 3:
    raise ConfigError("study.widths needs at least 2 sizes and study.exposures at least 3 values of F")
  if min(s.exposures) < 1 or list(s.exposures) != sorted(set(s.exposures)):
    raise ConfigError(f"study.exposures={s.exposures} must be distinct, ascending and >= 1")
  cfgs = [[run_config(preset, s, w, f, overrides) for f in s.exposures] for w in s.widths]
  for row in cfgs:
    for c in row:
      config_lib.validate(c)
  return cfgs


def configs(preset: str, overrides=()) -> list[Config]:
  if preset not in SETTINGS:
    raise ConfigError(f"study {NAME} has no preset {preset!r}; accepted: {', '.join(SETTINGS)}")
  return [c for row in grid(preset, SETTINGS[preset], overrides) for c in row]


# ---------------------------------------------------------------------------
# Measures


@nnx.jit
def _loss(model, ids_BxT, mask_BxT):
  return masked_cross_entropy(model(ids_BxT[:, :-1]), ids_BxT[:, 1:], mask_BxT[:, 1:])


def general_loss(model, cfg: Config) -> float:
  """Mean next-token loss (nats) on held-out batches of world 0's stream (no domain)."""
  losses = []
  fc = dataclasses.replace(cfg.facts, infuse_exposures=0)  # one compiled sampler for every F
  for step in range(EVAL_BATCHES):
    b = fact_world._sample_jit(fc, EVAL_SEED, step, 64, world=0)
    losses.append(float(_loss(model, b.ids_BxT, b.mask_BxT)))
  return float(np.mean(losses))


def evaluate(model, cfg: Config) -> tuple[dict, np.ndarray, np.ndarray]:
  """One run's measures, the per-fact held-out accuracy (D,) and the per-fact stored bits (D + G,)."""
  f = cfg.facts
  d = infusion.domain_facts(f)
  probes = [infusion.held_out_probe(f), infusion.domain_probe(f), fact_world.known_probe(f, 0)]
  # One scoring pass over the three probes (one compiled forward per chunk shape, not three).
  joint = fact_world.Probe(*(np.concatenate(cols) for cols in zip(*probes)))
  got = fact_world.score(model, joint, items=True)
  ends = np.cumsum([len(p.target_N) for p in probes])[:-1]
  held_hits, dom_logp, gen_logp = (np.split(got[k], ends)[i] for k, i in
                                   (("hits_N", 0), ("logprob_N", 1), ("logprob_N", 2)))
  gen_hits = np.split(got["hits_N"], ends)[2]
  acc_D = held_hits.reshape(d, -1).mean(-1)
  dom_bits_D = capacity.stored_bits_per_fact(-dom_logp.reshape(d, -1).mean(-1) / np.log(2), f.values)
  gen_ce = -gen_logp.reshape(f.persons * f.relations, f.templates).mean(-1) / np.log(2)
  gen_bits_G = capacity.stored_bits_per_fact(gen_ce, f.values)
  gen_acc = float(gen_hits.mean())
  out = {"F": f.infuse_exposures, **infusion.domain_share(cfg),
         "infused_accuracy": float(acc_D.mean()), "infused_p": float(infusion.above_chance(acc_D.mean(), f.values)),
         "general_accuracy": gen_acc, "general_p": float(infusion.above_chance(gen_acc, f.values)),
         "domain_bits": float(dom_bits_D.sum()), "general_bits": float(gen_bits_G.sum()),
         "general_loss": general_loss(model, cfg)}
  out["total_bits"] = out["domain_bits"] + out["general_bits"]
  return out, acc_D, np.concatenate([dom_bits_D, gen_bits_G])


def reading(size: dict, name: str) -> list[float]:
  """P(F) of one size under one reading."""
  key = {"infused": "infused_p", "total": "total_bits"}[name]
  return [r[key] for r in size["runs"]]


def _reducers(values: int) -> dict:
  return {"infused": lambda acc_FxN: infusion.above_chance(acc_FxN.mean(1), values),
          "total": lambda bits_FxN: bits_FxN.sum(1)}


# ---------------------------------------------------------------------------
# The run


def run(req: RunRequest, dest: results.Destination) -> list[Path]:
  s = settings_for(NAME, SETTINGS, req)
  cfgs = grid(req.preset, s, req.config_overrides)
  t0 = time.perf_counter()
  f0 = cfgs[0][0].facts
  sizes, laws = [], []
  for row in cfgs:
    m = row[0].model
    print(f"icl-lab {NAME}: {train.config_summary(row[0])}, F = {list(s.exposures)} as one ensemble", flush=True)
    run_dirs = train.train_many(row, req.runs_dir)
    size = {"layers": m.layers, "hidden": m.hidden, "heads": m.heads, "runs": []}
    per_fact = {"infused": [], "total": []}
    for cfg, run_dir in zip(row, run_dirs):
      _, model = train.load_model(run_dir)
      size["params_non_embedding"] = capacity.non_embedding_params(model)
      got, acc_D, bits_N = evaluate(model, cfg)
      got.update(run=run_dir.name, train_s=train.train_seconds(run_dir),
                 final_loss=(train.read_metrics(run_dir) or [{}])[-1].get("loss"))
      size["runs"].append(got)
      per_fact["infused"].append(acc_D)
      per_fact["total"].append(bits_N)
      print(f"  L{m.layers}/H{m.hidden} F={got['F']}: infused P {got['infused_p']:.3f}, general acc "
            f"{got['general_accuracy']:.3f}, bits {got['domain_bits']:.0f} + {got['general_bits']:.0f}, "
            f"domain share {got['token_share']:.4f}", flush=True)
    sizes.append(size)
    reducers = _reducers(f0.values)
    laws.append({name: law_lib.summary(s.exposures, reading(size, name), np.stack(per_fact[name]),
                                       reducers[name], s.n_boot, s.seed) for name in READINGS})
  capacity_bits = CAPACITY_BITS_PER_PARAM * max(sz["params_non_embedding"] for sz in sizes)
  general_bits = f0.persons * f0.relations * math.log2(f0.values)
  common = {"preset": req.preset, "exposures": list(s.exposures), "relations": f0.relations, "values": f0.values,
            "templates": f0.templates, "infuse_templates": f0.infuse_templates, "name_tokens": f0.name_tokens,
            "general_facts": f0.persons * f0.relations, "domain_facts": infusion.domain_facts(f0),
            "general_log2v_total": general_bits, "capacity_bits_per_param": CAPACITY_BITS_PER_PARAM,
            "general_over_largest_capacity": general_bits / capacity_bits,
            "steps": s.steps, "batch": s.batch, "config": cfgs[0][0].to_dict()}
  wall = time.perf_counter() - t0
  seeds = Seeds((s.seed,), (s.seed,), EVAL_SEED, (("world_seed", f0.world_seed), ("bootstrap", s.seed)))
  curves = {**common, "sizes": sizes}
  law = {**common, "sizes": [{k: v for k, v in sz.items() if k != "runs"}
                             | {"P": {name: reading(sz, name) for name in READINGS}, "law": lw}
                             for sz, lw in zip(sizes, laws)], "n_boot": s.n_boot}
  paths = []
  for base, payload, crit, plot_fn in ((CURVES, curves, criteria_curves, plot_curves),
                                       (LAW, law, criteria_law, plot_law)):
    paths += results.write(dest, base, payload, preset=req.preset, seeds=seeds, wall_s=wall, criteria=crit,
                           plot=plot_fn, run=cfgs[0][0].run_name())
    print(f"\n{dest.path(base).name}:\n{results.format_criteria(read_json(dest.path(base))['criteria'])}")
  print(f"\nresults and figures written to {dest.folder.resolve()} ({wall:.0f} s)")
  return paths


# ---------------------------------------------------------------------------
# Criteria, from the results alone


def _finite(x):
  """x with every non-finite float (also inside lists) as None, for JSON."""
  if isinstance(x, (list, tuple)):
    return [_finite(v) for v in x]
  return None if isinstance(x, float) and not math.isfinite(x) else x


def _label(size: dict) -> str:
  return f"L{size['layers']}/H{size['hidden']}"


def _p_of(size: dict, name: str) -> list[float]:
  return size["P"][name] if "P" in size else reading(size, name)


def collapse_shape(p) -> tuple[bool, float | None, float | None]:
  """(interior maximum, P at the smallest F / peak, P at the largest F / peak)."""
  p = np.asarray(p, np.float64)
  i, peak = int(p.argmax()), float(p.max())
  if peak <= 0:
    return False, None, None
  return 0 < i < len(p) - 1, float(p[0] / peak), float(p[-1] / peak)


def criteria_curves(r: dict) -> list[Criterion]:
  sizes = r["sizes"]
  lo = [sz["runs"][0]["general_accuracy"] for sz in sizes]
  pressure = Criterion(f"general facts answered (multiple choice of {r['values']}) at the smallest F, per size", lo,
                       f"≤ {PRESSURE_MAX} for every size", all(x <= PRESSURE_MAX for x in lo))
  shapes = [collapse_shape(reading(sz, "infused")) for sz in sizes]
  edges = [[e0, e1] for _, e0, e1 in shapes]
  collapse = Criterion("infused P: interior maximum; P at the smallest and largest F over the peak, per size",
                       edges, f"interior maximum and both ≤ {COLLAPSE_EDGE} for every size",
                       all(ok and e0 is not None and e0 <= COLLAPSE_EDGE and e1 <= COLLAPSE_EDGE
                           for ok, e0, e1 in shapes))
  laws = [law_lib.fit(r["exposures"], reading(sz, "infused")) for sz in sizes]
  fits = Criterion("infused P: log-space R², b, c of P = a·F^b·exp(−cF), per size",
                   _finite([[lw.r2, lw.b, lw.c] for lw in laws]), f"R² ≥ {R2_MIN}, b > 0, c > 0 for every size",
                   all(lw.r2 >= R2_MIN and lw.b > 0 and lw.c > 0 for lw in laws))
  return [pressure, collapse, fits]


def scale_fit(r: dict, name: str, key: str = "optimum") -> dict | None:
  """F* (or the collapse point) of each size, the power law on the smaller sizes, and its
  prediction for the largest; None when some size has no finite value."""
  params = [sz["params_non_embedding"] for sz in r["sizes"]]
  laws = [law_lib.fit(r["exposures"], _p_of(sz, name)) for sz in r["sizes"]]
  ys = [lw.optimum if key == "optimum" else law_lib.collapse_point(lw) for lw in laws]
  if not all(np.isfinite(y) and y > 0 for y in ys) or len(ys) < 3:
    return {"values": [y if np.isfinite(y) else None for y in ys], "prediction": None}
  k, gamma = law_lib.power_law(params[:-1], ys[:-1])
  return {"values": ys, "k": k, "gamma": gamma, "prediction": law_lib.extrapolate(params, ys)}


def criteria_law(r: dict) -> list[Criterion]:
  mono_values, mono_ok = {}, True
  for name in READINGS:
    fit = scale_fit(r, name)
    ys = fit["values"]
    d = np.diff([y if y is not None else np.nan for y in ys])
    sign = "+" if (d > 0).all() else "−" if (d < 0).all() else "none"
    mono_values[name] = {"F*": _finite(ys), "sign": sign}
    mono_ok &= sign != "none"
  mono = Criterion("F* = b/c monotone in model size (sign: + grows with size), per reading", mono_values,
                   "monotone over every size for both readings", mono_ok)
  fit = scale_fit(r, "infused")
  big = r["sizes"][-1]
  if fit["prediction"] is None:
    ratio, p_ratio = None, None
  else:
    ratio = fit["prediction"] / fit["values"][-1]
    p = _p_of(big, "infused")
    p_ratio = law_lib.interpolate_log(r["exposures"], p, fit["prediction"]) / max(p) if max(p) > 0 else None
  predict = Criterion(f"infused F* of {_label(big)} predicted from the smaller sizes' power law, over the fitted",
                      _finite(ratio), f"in [1/{PREDICTION_FACTOR}, {PREDICTION_FACTOR}]",
                      ratio is not None and 1 / PREDICTION_FACTOR <= ratio <= PREDICTION_FACTOR)
  at = Criterion(f"{_label(big)}'s measured infused P at the predicted F* (log-F interpolation) over its best",
                 p_ratio, f"≥ {PREDICTED_P_MIN}", p_ratio is not None and p_ratio >= PREDICTED_P_MIN)
  return [mono, predict, at]


# ---------------------------------------------------------------------------
# Figures and tables


def plot_curves(json_path: str | Path) -> list[Path]:
  """Per size against F: infused P with its fitted law, general-fact accuracy, stored bits."""
  json_path = Path(json_path)
  r = read_json(json_path)
  fs = np.asarray(r["exposures"], np.float64)
  dense = np.geomspace(fs[0], fs[-1], 200)
  fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), layout="constrained")
  for i, sz in enumerate(r["sizes"]):
    color, label = f"C{i}", f"{_label(sz)} ({sz['params_non_embedding']:,} params)"
    p = reading(sz, "infused")
    axes[0].plot(fs, p, "o", color=color, label=label)
    axes[0].plot(dense, law_lib.predict(law_lib.fit(fs, p), dense), "-", color=color, lw=1)
    axes[1].plot(fs, [x["general_accuracy"] for x in sz["runs"]], "-o", color=color, ms=4, label=label)
    axes[2].plot(fs, reading(sz, "total"), "-o", color=color, ms=4, label=f"{label}: total")
    axes[2].plot(fs, [x["domain_bits"] for x in sz["runs"]], ":", color=color, lw=1)
  axes[0].set_ylabel("infused P (held-out templates, above chance)")
  axes[1].set_ylabel("general facts answered (multiple choice)")
  axes[1].axhline(1 / r["values"], color="0.5", ls=":", lw=0.8)
  axes[2].set_ylabel("stored bits (dotted: domain only)")
  for ax in axes:
    ax.set_xscale("log")
    ax.set_xlabel("F (exposures per domain fact)")
    ax.grid(alpha=0.3, which="both", lw=0.4)
  axes[0].legend(fontsize=7)
  fig.suptitle(f"Knowledge infusion: {r['domain_facts']} domain facts into {r['general_facts']} general facts, "
               f"{r['steps']} steps × {r['batch']} (preset {r['preset']})")
  return save_figure(fig, json_path)


def plot_law(json_path: str | Path) -> list[Path]:
  """F* and the collapse point against non-embedding parameters, per reading, with the power law of
  the smaller sizes and its prediction for the largest."""
  json_path = Path(json_path)
  r = read_json(json_path)
  params = np.asarray([sz["params_non_embedding"] for sz in r["sizes"]], np.float64)
  fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
  for ax, name in zip(axes, READINGS):
    for key, marker, color in (("optimum", "o", "C0"), ("collapse", "s", "C3")):
      fit = scale_fit(r, name, key)
      ys = np.asarray([np.nan if y is None else y for y in fit["values"]], np.float64)
      ax.plot(params, ys, marker, color=color, label=f"{'F*' if key == 'optimum' else 'collapse point'}")
      if fit["prediction"] is not None:
        ax.plot(params, fit["k"] * params ** fit["gamma"], "--", color=color, lw=1,
                label=f"fit on smaller sizes: γ = {fit['gamma']:.2f}")
        ax.plot(params[-1], fit["prediction"], "*", color=color, ms=12, mfc="none")
    ax.set_xscale("log")
    if ax.has_data() and any(np.isfinite(y) and y > 0 for line in ax.get_lines() for y in line.get_ydata()):
      ax.set_yscale("log")
    else:  # no size has a finite optimum: an empty panel says so
      ax.text(0.5, 0.5, "no finite F* (c ≤ 0 or b ≤ 0)", transform=ax.transAxes, ha="center")
    ax.set_xlabel("non-embedding parameters")
    ax.set_ylabel("F")
    ax.set_title({"infused": "P = infused accuracy (held-out templates)", "total": "P = total stored bits"}[name],
                 fontsize=9)
    ax.grid(alpha=0.3, which="both", lw=0.4)
    ax.legend(fontsize=7)
  fig.suptitle(f"Infusion law: F* = b/c and the collapse point (P = P*/2) against size (preset {r['preset']})")
  return save_figure(fig, json_path)


def readme_curves(r: dict) -> str:
  head = " | ".join(f"F={f}" for f in r["exposures"])
  lines = [f"| size | params | P | {head} |", "|---|---|---|" + "---|" * len(r["exposures"])]
  for sz in r["sizes"]:
    for key, label in (("infused_p", "infused P"), ("general_accuracy", "general acc."), ("total_bits", "total bits")):
      cells = " | ".join(fmt(x[key]) for x in sz["runs"])
      lines.append(f"| {_label(sz)} | {sz['params_non_embedding']:,} | {label} | {cells} |")
  share = [x["token_share"] for x in r["sizes"][0]["runs"]]
  lines += ["", f"Domain token share from {share[0]:.2%} to {share[-1]:.2%}; {r['domain_facts']} domain and "
                f"{r['general_facts']} general facts; the general world is {r['general_over_largest_capacity']:.2f}× "
                f"the largest size's capacity at {r['capacity_bits_per_param']} bits/param."]
  return "\n".join(lines)


def readme_law(r: dict) -> str:
  lines = ["| size | params | P | a | b | c | R² | F* (95% interval) | collapse point |",
           "|---|---|---|---|---|---|---|---|---|"]
  for sz in r["sizes"]:
    for name in READINGS:
      lw = sz["law"][name]
      ci = (lw.get("intervals") or {}).get("optimum")
      interval = f" ({fmt(ci[0])}–{fmt(ci[1])})" if ci else ""
      lines.append(f"| {_label(sz)} | {sz['params_non_embedding']:,} | {name} | {fmt(lw['a'])} | {fmt(lw['b'])} | "
                   f"{fmt(lw['c'])} | {fmt(lw['r2'])} | {fmt(lw['optimum'])}{interval} | {fmt(lw['collapse'])} |")
  half = acquisition(r)
  cells = ", ".join(f"{_label(sz)} {fmt(x) if x is not None else 'never'}" for sz, x in zip(r["sizes"], half["values"]))
  slope = f"; power law over the sizes that reach it: F ∝ N^{half['gamma']:.2f}" if half["gamma"] is not None else ""
  lines += ["", f"F at which infused P first reaches {ACQUIRED} (measured points, log-F interpolation; "
                f"descriptive, not a criterion): {cells}{slope}."]
  return "\n".join(lines)


def acquisition(r: dict) -> dict:
  """Per size, the F at which infused P first reaches ACQUIRED, and the log-log slope γ against
  non-embedding parameters over the sizes that reach it (None with fewer than 3)."""
  values = [law_lib.crossing(r["exposures"], _p_of(sz, "infused"), ACQUIRED) for sz in r["sizes"]]
  reached = [(sz["params_non_embedding"], x) for sz, x in zip(r["sizes"], values) if x is not None]
  gamma = law_lib.power_law(*zip(*reached))[1] if len(reached) >= 3 else None
  return {"values": values, "gamma": gamma}


STUDY = Study(
    name=NAME,
    description="Knowledge infusion scaling law (Lv et al. 2025): P(F) = a·F^b·exp(−cF) per model size, "
                "F* and the collapse point against size",
    presets={p: s.cpu_s for p, s in SETTINGS.items()},
    headline_preset=HEADLINE_PRESET,
    run=run,
    outputs=(Output(CURVES, CURVES, criteria_curves, plot_curves, readme_curves),
             Output(LAW, LAW, criteria_law, plot_law, readme_law)),
)
