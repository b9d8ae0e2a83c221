"""Representation universality (Baek, Li and Tegmark 2024, arXiv 2410.08255): are the entity
embeddings of MLP link predictors that generalise affinely equivalent across widths and seeds?

On a generated family forest (a few hundred people, so an affine map between D-dimensional
embeddings is well-determined: at least 3(D + 1) fitting entities), one train/test split of the
queries; per width, one vmapped ensemble trains every seed at a Goldilocks weight decay
(generalisers) and without weight decay (memorisers). For pairs of models (A, B), the affine map
A -> B is fitted on a seeded share of the entities and scored by R² on the others
(`icl_lab.analysis.representations.affine_r2`), beside linear CKA over all entities:

- generalising pairs: both at the Goldilocks weight decay, different width and different seed;
- memorising pairs: both without weight decay, different width and different seed;
- the null: the generalising pairs with B's rows permuted.

The score of a pair is R² − max(null R², 0): a negative null only measures the fit's own
over-fitting, and subtracting it would push an exact affine copy above 1.

English ↔ Italian: per model trained on Hinton's two trees at a small embedding width (12 people a
tree only allow an affine fit from D ≤ 2 dims: 9 fitting people, 3 held out), the map from the
English people's embeddings to their Italian counterparts, scored by held-out R² over 4 folds.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from icl_lab import results
from icl_lab.analysis import representations as rep
from icl_lab.config import ConfigError
from icl_lab.io import read_json
from icl_lab.results import Criterion, Seeds
from icl_lab.studies.base import Output, RunRequest, Study, settings_for, settings_record
from icl_lab.studies.plotting import save_figure
from icl_lab.tasks import family_graph as fg
from icl_lab.training.link import Ensemble, LinkTrain, train_ensemble

NAME = "kg_universality"
HEADLINE_PRESET = "quick"
GEN_R2, OTHER_R2 = 0.9, 0.5  # the thresholds on the median score
GROUPS = ("generalising", "memorising", "null")


@dataclasses.dataclass(frozen=True)
class Settings:
  founders: int = 8  # the forest: `founders` couples, `generations` of descendants
  generations: int = 3
  forest_seed: int = 0
  phi: float = 0.8
  split_seed: int = 0  # one split for every model, so models differ by width and init only
  dim: int = 8
  widths: tuple[int, ...] = (32, 64, 128)
  seeds: tuple[int, ...] = (0, 1, 2)
  gen_wd: float = 1.0  # Goldilocks on this forest (a screen at width 64: test 0.91-0.93)
  memo_wd: float = 0.0
  lr: float = 3e-3
  steps: int = 5000
  eval_every: int = 500
  fit_fraction: float = 2 / 3  # share of entities the affine map is fitted on
  map_seed: int = 0  # which entities fit the map, and the null's permutation
  ei_dim: int = 2  # English ↔ Italian: embedding width of the Hinton models (0: skipped)
  ei_width: int = 64
  ei_wd: float = 1.0
  # The weight-decay sweep: at one width, pairs of seeds at each weight decay (() skips it).
  sweep_width: int = 64
  sweep_wds: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0)
  cpu_s: float | None = None


SETTINGS = {
    "tiny": Settings(founders=3, generations=2, widths=(16, 32), seeds=(0, 1), dim=4, steps=200, eval_every=100,
                     sweep_width=16, sweep_wds=(1.0, 3.0), cpu_s=20),
    # 3 widths × 3 seeds × 2 weight decays on a 132-person forest, 4 × 3 more for the weight-decay
    # sweep, and 3 Hinton models: about 3 minutes on 2 CPU cores shared with another training.
    "quick": Settings(cpu_s=240),
}


def check(s: Settings) -> None:
  """Bad settings fail as one-line config errors before any training."""
  if not 0.0 < s.phi < 1.0:
    raise ConfigError(f"study.phi={s.phi} must be in (0, 1): the test queries are what generalises")
  if not 0.0 < s.fit_fraction < 1.0:
    raise ConfigError(f"study.fit_fraction={s.fit_fraction} must be in (0, 1)")
  if s.steps <= 0 or s.eval_every <= 0 or s.steps % s.eval_every:
    raise ConfigError(f"study.steps={s.steps} must be a positive multiple of study.eval_every={s.eval_every}")
  if len(s.widths) < 2 or len(s.seeds) < 2:
    raise ConfigError("study.widths and study.seeds need two values each (pairs differ in both)")
  if min(*s.widths, s.dim, s.founders, s.generations, s.sweep_width) < 1 or s.ei_dim < 0 or min(
      s.gen_wd, s.memo_wd, s.ei_wd, *s.sweep_wds) < 0:
    raise ConfigError("study.widths, dim, founders and generations must be ≥ 1, weight decays and ei_dim ≥ 0")
  if s.ei_dim > 2:
    raise ConfigError(f"study.ei_dim={s.ei_dim}: 12 people a tree support an affine fit from at most 2 dims")


def configs(preset: str, overrides=()) -> list:
  return []  # no run folders: the ensembles train in memory


def spec(s: Settings, width: int, dim: int | None = None) -> LinkTrain:
  return LinkTrain(dim=dim or s.dim, width=width, tied=True, lr=s.lr, steps=s.steps, eval_every=s.eval_every)


def forest_graph(s: Settings) -> fg.Graph:
  return fg.graph(fg.forest(s.founders, s.generations, s.forest_seed))


@dataclasses.dataclass(frozen=True)
class Model:
  """One trained member: where it sits in the grid, its accuracies and its ensemble."""

  width: int
  weight_decay: float
  seed: int
  train: float
  test: float
  ens: Ensemble
  k: int  # its index in `ens`

  @property
  def kind(self) -> str:
    return "generalising" if self.weight_decay > 0 else "memorising"

  def embeddings(self) -> np.ndarray:
    return np.asarray(self.ens.params_K["entity"][self.k])

  def row(self) -> dict:
    return {"width": self.width, "weight_decay": self.weight_decay, "seed": self.seed, "train": self.train,
            "test": self.test}


def train_models(g: fg.Graph, s: Settings) -> list[Model]:
  """Per width one ensemble: every seed at the Goldilocks weight decay and without weight decay."""
  train_Q = fg.split(g, s.phi, s.split_seed)
  members = [(wd, seed) for wd in (s.gen_wd, s.memo_wd) for seed in s.seeds]
  train_KxQ = np.stack([train_Q] * len(members))
  models = []
  for width in s.widths:
    t0 = time.perf_counter()
    ens = train_ensemble(g, spec(s, width), [seed for _, seed in members], [wd for wd, _ in members], train_KxQ,
                         ~train_KxQ)
    for k, (wd, seed) in enumerate(members):
      models.append(Model(width, wd, seed, float(ens.train_acc_KxC[k, -1]), float(ens.test_acc_KxC[k, -1]), ens, k))
    print(f"width {width:4d}: {len(members)} models in {time.perf_counter() - t0:.1f} s; test "
          + " ".join(f"{m.test:.2f}" for m in models[-len(members):]), flush=True)
  return models


def entity_split(num_entities: int, s: Settings) -> tuple[np.ndarray, np.ndarray]:
  """(fit_idx, held_idx): a seeded share `fit_fraction` of the entities fits the affine maps."""
  perm = np.random.default_rng(s.map_seed).permutation(num_entities)
  n_fit = int(round(s.fit_fraction * num_entities))
  return np.sort(perm[:n_fit]), np.sort(perm[n_fit:])


def check_forest(g: fg.Graph, s) -> np.ndarray:
  """fit_idx, after checking (before any training) that it supports an affine map from `s.dim` dims."""
  fit_idx, _ = entity_split(g.num_entities, s)
  try:
    rep.check_enough(len(fit_idx), s.dim)
  except ValueError as err:
    raise ConfigError(f"study.dim={s.dim} on {g.num_entities} people: {err}") from None
  return fit_idx


def score(r2: float, null_r2: float) -> float:
  """R² minus the null where the null is positive (module docstring)."""
  return r2 - max(null_r2, 0.0)


def pairs(models: list[Model], kind: str) -> list[tuple[Model, Model]]:
  """Ordered pairs of one kind that differ in width and in seed."""
  same = [m for m in models if m.kind == kind]
  return [(a, b) for a, b in itertools.permutations(same, 2) if a.width != b.width and a.seed != b.seed]


def compare(models: list[Model], s: Settings) -> list[dict]:
  """One row per pair: the held-out affine R², its null, the score and linear CKA."""
  fit_idx, held_idx = entity_split(len(models[0].embeddings()), s)
  rows = []
  for kind in ("generalising", "memorising"):
    for a, b in pairs(models, kind):
      x_ExD, y_ExD = a.embeddings(), b.embeddings()
      fit = rep.affine_r2(x_ExD, y_ExD, fit_idx, held_idx, seed=s.map_seed)
      rows.append({"kind": kind, "a": a.row(), "b": b.row(), "r2": fit["r2"], "null_r2": fit["null_r2"],
                   "score": score(fit["r2"], fit["null_r2"]), "cka": rep.linear_cka(x_ExD, y_ExD)})
  return rows


def wd_sweep(g: fg.Graph, s: Settings) -> list[dict]:
  """At `sweep_width`, per weight decay: the ordered pairs of seeds' scores and CKA, and accuracies."""
  if not s.sweep_wds:
    return []
  train_Q = fg.split(g, s.phi, s.split_seed)
  members = [(wd, seed) for wd in s.sweep_wds for seed in s.seeds]
  train_KxQ = np.stack([train_Q] * len(members))
  ens = train_ensemble(g, spec(s, s.sweep_width), [seed for _, seed in members], [wd for wd, _ in members],
                       train_KxQ, ~train_KxQ)
  fit_idx, held_idx = entity_split(g.num_entities, s)
  rows = []
  for wd in s.sweep_wds:
    ks = [k for k, (w, _) in enumerate(members) if w == wd]
    emb = {k: np.asarray(ens.params_K["entity"][k]) for k in ks}
    fits = [rep.affine_r2(emb[a], emb[b], fit_idx, held_idx, seed=s.map_seed) for a, b in itertools.permutations(ks, 2)]
    ckas = [rep.linear_cka(emb[a], emb[b]) for a, b in itertools.permutations(ks, 2)]
    rows.append({"weight_decay": wd, "pairs": len(fits), "median_score": median_or_none([score(f["r2"], f["null_r2"])
                                                                                  for f in fits]),
                 "median_cka": median_or_none(ckas), "train": float(ens.train_acc_KxC[ks, -1].mean()),
                 "test": float(ens.test_acc_KxC[ks, -1].mean())})
    print(f"sweep, weight decay {wd:g}: median score {rows[-1]['median_score']:.2f}, test {rows[-1]['test']:.2f}",
          flush=True)
  return rows


def null_cka(x_ExD, y_ExD, seed: int) -> float:
  return rep.linear_cka(x_ExD, np.asarray(y_ExD)[np.random.default_rng(seed).permutation(len(y_ExD))])


def english_italian(s: Settings) -> dict | None:
  """Per Hinton model at `ei_dim`: held-out R² of the map English person -> Italian counterpart,
  pooled over 4 folds of 3 held-out people (9 fit each: 3× the 3 parameters per output)."""
  if s.ei_dim == 0:
    return None
  g = fg.graph(fg.hinton())
  train_Q = fg.split(g, s.phi, s.split_seed)
  train_KxQ = np.stack([train_Q] * len(s.seeds))
  ens = train_ensemble(g, spec(s, s.ei_width, s.ei_dim), s.seeds, [s.ei_wd] * len(s.seeds), train_KxQ, ~train_KxQ)
  n = len(fg.ITALIAN)
  folds = np.array_split(np.random.default_rng(s.map_seed).permutation(n), 4)
  per_model = []
  for k, seed in enumerate(s.seeds):
    emb_ExD = np.asarray(ens.params_K["entity"][k])
    eng_NxD, ita_NxD = emb_ExD[:n], emb_ExD[n:]
    pred, pred0 = np.zeros_like(ita_NxD, dtype=np.float64), np.zeros_like(ita_NxD, dtype=np.float64)
    perm = np.random.default_rng(s.map_seed + 1).permutation(n)
    for held in folds:
      fit = np.setdiff1d(np.arange(n), held)
      rep.check_enough(len(fit), s.ei_dim)
      w, b = rep.fit_affine(eng_NxD[fit], ita_NxD[fit])
      pred[held] = eng_NxD[held] @ w + b
      w0, b0 = rep.fit_affine(eng_NxD[fit], ita_NxD[perm][fit])
      pred0[held] = eng_NxD[held] @ w0 + b0
    r2, null = rep.r2(ita_NxD, pred), rep.r2(ita_NxD[perm], pred0)
    per_model.append({"seed": seed, "train": float(ens.train_acc_KxC[k, -1]), "test": float(ens.test_acc_KxC[k, -1]),
                      "r2": r2, "null_r2": null, "score": score(r2, null), "cka": rep.linear_cka(eng_NxD, ita_NxD)})
  return {"dim": s.ei_dim, "width": s.ei_width, "weight_decay": s.ei_wd, "models": per_model,
          "median_score": statistics.median(m["score"] for m in per_model)}


def summary(rows: list[dict], models: list[Model], s: Settings) -> dict:
  """Medians per group; the null is the generalising pairs' permuted fit (and permuted CKA)."""
  out = {}
  for kind in ("generalising", "memorising"):
    sel = [r for r in rows if r["kind"] == kind]
    out[kind] = {"pairs": len(sel), "median_r2": median_or_none([r["r2"] for r in sel]),
                 "median_null_r2": median_or_none([r["null_r2"] for r in sel]),
                 "median_score": median_or_none([r["score"] for r in sel]),
                 "median_cka": median_or_none([r["cka"] for r in sel])}
  by_key = {(m.width, m.weight_decay, m.seed): m for m in models}
  gen = [r for r in rows if r["kind"] == "generalising"]
  ckas = [null_cka(by_key[_key(r["a"])].embeddings(), by_key[_key(r["b"])].embeddings(), s.map_seed) for r in gen]
  out["null"] = {"pairs": len(gen), "median_r2": median_or_none([r["null_r2"] for r in gen]), "median_null_r2": None,
                 "median_score": median_or_none([r["null_r2"] for r in gen]), "median_cka": median_or_none(ckas)}
  return out


def _key(row: dict) -> tuple:
  return row["width"], row["weight_decay"], row["seed"]


def median_or_none(xs: list[float]) -> float | None:
  return float(statistics.median(xs)) if xs else None


def run(req: RunRequest, dest: results.Destination) -> list[Path]:
  s = settings_for(NAME, SETTINGS, req)
  check(s)
  t0 = time.perf_counter()
  g = forest_graph(s)
  fit_idx = check_forest(g, s)
  models = train_models(g, s)
  rows = compare(models, s)
  groups = summary(rows, models, s)
  sweep = wd_sweep(g, s)
  ei = english_italian(s)
  wall = time.perf_counter() - t0
  payload = {"preset": req.preset, "graph": f"forest({s.founders}, {s.generations}, seed {s.forest_seed})",
             "entities": g.num_entities, "queries": g.num_queries, "fit_entities": len(fit_idx),
             "settings": settings_record(s),
             "models": [m.row() for m in models], "pairs": rows, "groups": groups, "wd_sweep": sweep,
             "english_italian": ei,
             "wall_s": wall}
  seeds = Seeds(tuple(s.seeds), (s.split_seed,), s.map_seed)
  return results.write_and_print(dest, NAME, payload, preset=req.preset, seeds=seeds, wall_s=wall,
                                 criteria=criteria, plot=plot)


# ---------------------------------------------------------------------------
# Criteria, figure, table


def criteria(r: dict) -> list[Criterion]:
  g = r["groups"]
  out = []
  for kind, cmp, thr in (("generalising", "≥", GEN_R2), ("memorising", "≤", OTHER_R2), ("null", "≤", OTHER_R2)):
    v = g[kind]["median_score"]
    met = v is not None and (v >= thr if cmp == "≥" else v <= thr)
    what = "R² − max(null, 0)" if kind != "null" else "R² of the row-permuted null"
    out.append(Criterion(f"{kind} pairs ({g[kind]['pairs']}): median held-out affine {what}", v, f"{cmp} {thr:g}",
                         met))
  return out


COLORS = {"generalising": "tab:green", "memorising": "tab:red", "null": "tab:gray"}


def draw_pair_scores(ax, pairs: list[dict]) -> None:
  """Each pair group's scores (the null: the generalising pairs' permuted R²), their medians and
  the criteria's thresholds."""
  gen = [p for p in pairs if p["kind"] == "generalising"]
  values = {"generalising": [p["score"] for p in gen],
            "memorising": [p["score"] for p in pairs if p["kind"] == "memorising"],
            "null": [p["null_r2"] for p in gen]}
  for i, kind in enumerate(GROUPS):
    ys = values[kind]
    ax.scatter(i + np.linspace(-0.15, 0.15, max(len(ys), 1))[:len(ys)], ys, s=14, color=COLORS[kind], alpha=0.7)
    if ys:
      ax.hlines(np.median(ys), i - 0.3, i + 0.3, color="k")
  ax.axhline(GEN_R2, color="tab:green", ls=":", lw=1)
  ax.axhline(OTHER_R2, color="tab:red", ls=":", lw=1)
  ax.set_xticks(range(3), GROUPS)
  ax.set_ylabel("held-out affine R² (− max(null, 0))")


def plot(json_path: str | Path) -> list[Path]:
  """Held-out affine R² and linear CKA per pair group; the models' accuracies; English ↔ Italian."""
  json_path = Path(json_path)
  r = read_json(json_path)
  fig, axes = plt.subplots(1, 4, figsize=(19, 4.5), layout="constrained")
  ax = axes[0]
  draw_pair_scores(ax, r["pairs"])
  ax.set_title(f"entity embeddings (D = {r['settings']['dim']}), {r['entities']} people")
  ax.grid(alpha=0.3, lw=0.4)
  ax = axes[1]
  ckas = [r["groups"][k]["median_cka"] for k in GROUPS]
  ax.bar(range(3), [c if c is not None else np.nan for c in ckas], color=[COLORS[k] for k in GROUPS])
  ax.set_xticks(range(3), GROUPS)
  ax.set_ylim(0, 1)
  ax.set_ylabel("median linear CKA")
  ax.set_title("linear CKA over all entities")
  ax = axes[2]
  for kind, marker in (("generalising", "o"), ("memorising", "x")):
    ms = [m for m in r["models"] if (m["weight_decay"] > 0) == (kind == "generalising")]
    ax.scatter([m["width"] for m in ms], [m["test"] for m in ms], marker=marker, color=COLORS[kind],
               label=f"{kind} (test)")
  ei = r.get("english_italian")
  if ei:
    ax.set_title(f"test accuracy; English→Italian R² (D = {ei['dim']}): median {ei['median_score']:.2f}")
  else:
    ax.set_title("test accuracy by width")
  ax.set_xscale("log", base=2)
  ax.set_xlabel("width")
  ax.set_ylim(0, 1.05)
  ax.legend(fontsize=8)
  ax = axes[3]
  sweep = r.get("wd_sweep") or []
  if sweep:
    wds = [w["weight_decay"] for w in sweep]
    ax.plot(wds, [w["median_score"] for w in sweep], "o-", color="tab:green", label="median R² − max(null, 0)")
    ax.plot(wds, [w["median_cka"] for w in sweep], "s--", color="tab:green", alpha=0.6, label="median CKA")
    ax.plot(wds, [w["test"] for w in sweep], "o-", color="k", label="test accuracy")
    ax.plot(wds, [w["train"] for w in sweep], ":", color="k", label="train accuracy")
    ax.legend(fontsize=8)
  ax.set_xlabel("weight decay")
  ax.set_ylim(-0.2, 1.05)
  ax.grid(alpha=0.3, lw=0.4)
  ax.set_title(f"width {r['settings'].get('sweep_width')}: pairs of seeds by weight decay")
  fig.suptitle(f"Representation universality on a family forest (preset {r['preset']})")
  return save_figure(fig, json_path)


def fmt_or_na(v) -> str:
  return "n/a" if v is None else f"{v:.2f}"


def readme(r: dict) -> str:
  s = r["settings"]
  lines = [f"{r['graph']}: {r['entities']} people, {r['queries']} queries; D = {s['dim']}; affine maps fitted on "
           f"{r['fit_entities']} entities, scored on the other {r['entities'] - r['fit_entities']}.", "",
           "| pairs | count | median R² | median null R² | median R² − max(null, 0) | median linear CKA |",
           "|---|---|---|---|---|---|"]
  for kind in GROUPS:
    g = r["groups"][kind]
    lines.append(f"| {kind} | {g['pairs']} | {fmt_or_na(g['median_r2'])} | {fmt_or_na(g['median_null_r2'])} | "
                 f"{fmt_or_na(g['median_score'])} | {fmt_or_na(g['median_cka'])} |")
  lines += ["", "| width | weight decay | train (seeds) | test (seeds) |", "|---|---|---|---|"]
  for (w, wd), ms in itertools.groupby(sorted(r["models"], key=lambda m: (m["width"], -m["weight_decay"])),
                                      key=lambda m: (m["width"], m["weight_decay"])):
    ms = list(ms)
    train, test = (" ".join(f"{m[key]:.2f}" for m in ms) for key in ("train", "test"))
    lines.append(f"| {w} | {wd:g} | {train} | {test} |")
  if r.get("wd_sweep"):
    lines += ["", f"Weight-decay sweep (width {s['sweep_width']}, pairs of seeds; train / test are seed means):", "",
              "| weight decay | pairs | median R² − max(null, 0) | median linear CKA | train | test |",
              "|---|---|---|---|---|---|"]
    for w in r["wd_sweep"]:
      lines.append(f"| {w['weight_decay']:g} | {w['pairs']} | {fmt_or_na(w['median_score'])} | "
                   f"{fmt_or_na(w['median_cka'])} | {w['train']:.2f} | {w['test']:.2f} |")
  ei = r.get("english_italian")
  if ei:
    lines += ["", f"English → Italian within each Hinton model (D = {ei['dim']}, width {ei['width']}, weight decay "
              f"{ei['weight_decay']:g}; 4 folds of 3 held-out people):", "",
              "| seed | train | test | R² | null R² | R² − max(null, 0) | linear CKA |",
              "|---|---|---|---|---|---|---|"]
    for m in ei["models"]:
      lines.append(f"| {m['seed']} | {m['train']:.2f} | {m['test']:.2f} | {m['r2']:.2f} | {m['null_r2']:.2f} | "
                   f"{m['score']:.2f} | {m['cka']:.2f} |")
  return "\n".join(lines)


STUDY = Study(
    name=NAME,
    description="Knowledge graphs (Baek, Li & Tegmark 2024): affine equivalence (held-out R², linear CKA) of the "
                "entity embeddings of generalising and memorising MLP link predictors on a family forest",
    presets={p: s.cpu_s for p, s in SETTINGS.items()},
    headline_preset=HEADLINE_PRESET,
    run=run,
    outputs=(Output(NAME, NAME, criteria, plot, readme),),
)
