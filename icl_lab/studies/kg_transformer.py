"""A token transformer on a family forest's triples, and MLP ↔ transformer universality (Baek, Li
and Tegmark 2024, arXiv 2410.08255, design (b)).

On kg_universality's forest and split (a seeded, per-relation share φ of the queries trains), a
TokenTransformer reads `BOS h r t` sequences (`icl_lab.tasks.kg_tokens`) and learns the tail;
a test query `BOS h r` is correct when its top-1 entity token is one of the answers. One ensemble
trains every seed at a Goldilocks weight decay (generalisers) and without (memorisers); MLP link
predictors (`training.link`, tied read-out) train on the same split the same two ways.

A transformer's entity representation is its residual stream at the entity's position of
`BOS e` after layer `rep_layer` (0: the token embedding plus a constant position), which in a
causal model depends on the entity alone. Both sides are reduced to their top `dim` principal
components (over all entities), so an affine map either way has dim + 1 parameters per output
and is fitted on a share `fit_fraction` of the entities, scored by R² on the others. Pairs are
(MLP, transformer) of one kind and different seeds, both directions; the score is
R² − max(null R², 0), the null being the generalising pairs with the target's rows permuted
(as in kg_universality). Every layer's median is kept; the criterion reads `rep_layer`.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from icl_lab import results
from icl_lab.analysis import representations as rep
from icl_lab.config import ConfigError
from icl_lab.io import read_json
from icl_lab.results import Criterion, Seeds
from icl_lab.studies import kg_universality as ku
from icl_lab.studies.base import Output, RunRequest, Study, settings_for, settings_record
from icl_lab.studies.plotting import save_figure
from icl_lab.tasks import family_graph as fg
from icl_lab.tasks import kg_tokens
from icl_lab.training.link import LinkTrain, train_ensemble
from icl_lab.training.tokens import TokenTrain, token_run_dir, train_tokens

NAME = "kg_transformer"
HEADLINE_PRESET = "quick"
GEN_TEST = 0.8  # kg_phase's `gen` label
GEN_R2, OTHER_R2, GROUPS = ku.GEN_R2, ku.OTHER_R2, ku.GROUPS  # the universality thresholds and groups


@dataclasses.dataclass(frozen=True)
class Settings:
  founders: int = 8  # kg_universality's forest
  generations: int = 3
  forest_seed: int = 0
  phi: float = 0.8
  split_seed: int = 0
  seeds: tuple[int, ...] = (0, 1, 2)
  # The transformer
  layers: int = 2
  hidden: int = 64
  heads: int = 4
  per_seq: int = 1  # triples per sequence
  tied: bool = True  # logits score the token embeddings (the link predictors generalise only so)
  lr: float = 3e-3
  batch_size: int = 256
  steps: int = 4000
  eval_every: int = 500
  gen_wd: float = 2.0  # screens at lr 3e-3: held-out 0.81 at 4000 steps (wd 1: 0.76); wd 3, 10 underfit
  memo_wd: float = 0.0
  rep_layer: int = 0  # residual stream after this many blocks at the entity's position
  # The MLP link predictors (kg_universality's generalisers and memorisers)
  dim: int = 8
  mlp_width: int = 64
  mlp_gen_wd: float = 1.0
  mlp_steps: int = 5000
  fit_fraction: float = 2 / 3
  map_seed: int = 0
  cpu_s: float | None = None


SETTINGS = {
    "tiny": Settings(founders=3, generations=2, seeds=(0, 1), layers=1, hidden=16, heads=2, batch_size=32,
                     steps=60, eval_every=30, dim=4, mlp_width=16, mlp_steps=100, cpu_s=20),
    # 3 seeds × 2 weight decays of an L2/H64 transformer for 4000 steps of 256 triples, and 6 MLPs,
    # on kg_universality's 132-person forest: 418 s measured on 2 cores shared with lighter jobs.
    "quick": Settings(cpu_s=600),
    "gpu": Settings(seeds=(0, 1, 2, 3), steps=20000, hidden=128, cpu_s=None),
}


def check(s: Settings) -> None:
  if not 0.0 < s.phi < 1.0:
    raise ConfigError(f"study.phi={s.phi} must be in (0, 1): the test queries are what generalises")
  if not 0.0 < s.fit_fraction < 1.0:
    raise ConfigError(f"study.fit_fraction={s.fit_fraction} must be in (0, 1)")
  if s.steps <= 0 or s.eval_every <= 0 or s.steps % s.eval_every:
    raise ConfigError(f"study.steps={s.steps} must be a positive multiple of study.eval_every={s.eval_every}")
  if len(s.seeds) < 2:
    raise ConfigError("study.seeds needs two values (pairs differ in seed)")
  if min(s.layers, s.hidden, s.heads, s.dim, s.per_seq, s.mlp_width, s.mlp_steps) < 1 or s.hidden % s.heads:
    raise ConfigError("study.layers, hidden, heads, dim, per_seq, mlp_width, mlp_steps must be ≥ 1, "
                      "hidden a multiple of heads")
  if not 0 <= s.rep_layer <= s.layers:
    raise ConfigError(f"study.rep_layer={s.rep_layer} must be in [0, study.layers={s.layers}]")
  if s.dim > s.hidden:
    raise ConfigError(f"study.dim={s.dim} must be ≤ study.hidden={s.hidden} (both sides keep dim components)")


def configs(preset: str, overrides=()) -> list:
  return []  # no Config runs: the transformers train in a token run folder (`training.tokens`), the MLPs in memory


# The settings that shape the transformers' training and evaluations: their run folder's key (the
# MLP and comparison settings are left out, so changing those reuses the trained transformers).
TRANSFORMER_KEYS = ("founders", "generations", "forest_seed", "phi", "split_seed", "seeds", "layers", "hidden", "heads",
                    "per_seq", "tied", "lr", "batch_size", "steps", "eval_every", "gen_wd", "memo_wd")


def transformer_key(s: Settings) -> dict:
  return {"task": "kg_tokens", **{k: getattr(s, k) for k in TRANSFORMER_KEYS}}


def top_components(x_NxA, k: int) -> tuple[np.ndarray, float]:
  """The rows projected on their top-k principal components, and the variance share kept."""
  x_NxA = np.asarray(x_NxA, np.float64)
  x_NxA = x_NxA - x_NxA.mean(0)
  _, sv, vt_AxA = np.linalg.svd(x_NxA, full_matrices=False)
  return x_NxA @ vt_AxA[:k].T, float((sv[:k] ** 2).sum() / max((sv ** 2).sum(), 1e-30))


def entity_states(model, num_entities: int) -> np.ndarray:
  """states_Lp1xExH: the residual stream at the entity of `BOS e`, after each block (0: embedding)."""
  ids_Ex2 = np.stack([np.full(num_entities, kg_tokens.BOS), kg_tokens.entity_token(np.arange(num_entities))], 1)
  _, hidden_Lp1xExTxH = model(jnp.asarray(ids_Ex2, jnp.int32), return_hidden=True)
  return np.asarray(hidden_Lp1xExTxH[:, :, 1])


def train_transformers(g: fg.Graph, s: Settings, train_Q: np.ndarray, run_dir: Path | None = None,
                       key=None) -> tuple[list[dict], list[np.ndarray], list]:
  """Per member (gen_wd then memo_wd, each seed): its row (accuracies, curves) and states_Lp1xExH;
  and the evaluation steps. With `run_dir` the ensemble resumes from, or reuses, its run there."""
  task = kg_tokens.TripleTask(g, train_Q, s.per_seq, s.tied)
  members = [(wd, seed) for wd in (s.gen_wd, s.memo_wd) for seed in s.seeds]
  spec = TokenTrain(layers=s.layers, hidden=s.hidden, heads=s.heads, lr=s.lr, steps=s.steps,
                    batch_size=s.batch_size, eval_every=s.eval_every)
  query_ids = jnp.asarray(task.query_ids())
  evaluate = lambda forward: task.correct(np.asarray(forward(query_ids)[:, -1]))
  ens = train_tokens(task, spec, [seed for _, seed in members], [wd for wd, _ in members],
                     lambda step: task.sample_host(s.split_seed, step, s.batch_size), evaluate,
                     ckpt_dir=run_dir, data_key=key)
  rows, states = [], []
  for k, (wd, seed) in enumerate(members):
    correct_CxQ = np.stack([e[k] for e in ens.evals])
    train_C, test_C = correct_CxQ[:, train_Q].mean(1), correct_CxQ[:, ~train_Q].mean(1)
    rows.append({"model": "transformer", "weight_decay": wd, "seed": seed, "train": float(train_C[-1]),
                 "test": float(test_C[-1]), "train_curve": train_C.tolist(), "test_curve": test_C.tolist(),
                 "loss_curve": ens.loss_KxC[k].tolist()})
    states.append(entity_states(ens.model(k), g.num_entities))
  print(f"transformers ({ens.wall_s:.0f} s): test " + " ".join(f"{r['test']:.2f}" for r in rows), flush=True)
  return rows, states, ens.steps_C.tolist()


def train_mlps(g: fg.Graph, s: Settings, train_Q: np.ndarray) -> tuple[list[dict], list[np.ndarray]]:
  members = [(wd, seed) for wd in (s.mlp_gen_wd, 0.0) for seed in s.seeds]
  train_KxQ = np.stack([train_Q] * len(members))
  spec = LinkTrain(dim=s.dim, width=s.mlp_width, tied=True, steps=s.mlp_steps, eval_every=s.mlp_steps // 10 or 1)
  ens = train_ensemble(g, spec, [seed for _, seed in members], [wd for wd, _ in members], train_KxQ, ~train_KxQ)
  rows = [{"model": "mlp", "weight_decay": wd, "seed": seed, "train": float(ens.train_acc_KxC[k, -1]),
           "test": float(ens.test_acc_KxC[k, -1])} for k, (wd, seed) in enumerate(members)]
  embs = [np.asarray(ens.params_K["entity"][k]) for k in range(len(members))]
  print("MLPs: test " + " ".join(f"{r['test']:.2f}" for r in rows), flush=True)
  return rows, embs


def compare(mlps, mlp_embs, tfs, tf_states, s: Settings, layer: int) -> list[dict]:
  """One row per ordered (source, target) pair of an MLP and a transformer of one kind and
  different seeds, at the transformer's `layer`."""
  fit_idx, held_idx = ku.entity_split(len(mlp_embs[0]), s)
  rows = []
  for kind, m_kind, t_kind in (("generalising", s.mlp_gen_wd, s.gen_wd), ("memorising", 0.0, s.memo_wd)):
    for (i, m), (j, t) in itertools.product(enumerate(mlps), enumerate(tfs)):
      if m["weight_decay"] != m_kind or t["weight_decay"] != t_kind or m["seed"] == t["seed"]:
        continue
      a, _ = top_components(mlp_embs[i], s.dim)
      b, share = top_components(tf_states[j][layer], s.dim)
      for direction, (x, y) in (("mlp→transformer", (a, b)), ("transformer→mlp", (b, a))):
        fit = rep.affine_r2(x, y, fit_idx, held_idx, seed=s.map_seed)
        rows.append({"kind": kind, "direction": direction, "mlp_seed": m["seed"], "transformer_seed": t["seed"],
                     "r2": fit["r2"], "null_r2": fit["null_r2"], "score": ku.score(fit["r2"], fit["null_r2"]),
                     "cka": rep.linear_cka(a, b), "variance_kept": share})
  return rows


def summary(rows: list[dict]) -> dict:
  out = {}
  for kind in ("generalising", "memorising"):
    sel = [r for r in rows if r["kind"] == kind]
    out[kind] = {"pairs": len(sel), "median_r2": ku.median_or_none([r["r2"] for r in sel]),
                 "median_score": ku.median_or_none([r["score"] for r in sel]),
                 "median_cka": ku.median_or_none([r["cka"] for r in sel])}
  gen = [r for r in rows if r["kind"] == "generalising"]
  out["null"] = {"pairs": len(gen), "median_r2": ku.median_or_none([r["null_r2"] for r in gen]),
                 "median_score": ku.median_or_none([r["null_r2"] for r in gen]), "median_cka": None}
  return out


def run(req: RunRequest, dest: results.Destination) -> list[Path]:
  s = settings_for(NAME, SETTINGS, req)
  check(s)
  t0 = time.perf_counter()
  g = fg.graph(fg.forest(s.founders, s.generations, s.forest_seed))
  fit_idx = ku.check_forest(g, s)
  train_Q = fg.split(g, s.phi, s.split_seed)
  key = transformer_key(s)
  tfs, tf_states, steps = train_transformers(g, s, train_Q, token_run_dir(req.runs_dir, NAME, req.preset, key), key)
  mlps, mlp_embs = train_mlps(g, s, train_Q)
  by_layer = []
  for layer in range(s.layers + 1):
    rows = compare(mlps, mlp_embs, tfs, tf_states, s, layer)
    by_layer.append({"layer": layer, "groups": summary(rows), "pairs": rows})
    g_ = by_layer[-1]["groups"]
    print(f"layer {layer}: median score generalising {g_['generalising']['median_score']:.2f}, memorising "
          f"{g_['memorising']['median_score']:.2f}, null {g_['null']['median_score']:.2f}", flush=True)
  wall = time.perf_counter() - t0
  payload = {"preset": req.preset, "graph": f"forest({s.founders}, {s.generations}, seed {s.forest_seed})",
             "entities": g.num_entities, "queries": g.num_queries, "train_queries": int(train_Q.sum()),
             "fit_entities": len(fit_idx), "settings": settings_record(s),
             "steps": steps, "transformers": tfs, "mlps": mlps, "layers": by_layer,
             "groups": by_layer[s.rep_layer]["groups"], "wall_s": wall}
  seeds = Seeds(tuple(s.seeds), (s.split_seed,), s.map_seed)
  return results.write_and_print(dest, NAME, payload, preset=req.preset, seeds=seeds, wall_s=wall,
                                 criteria=criteria, plot=plot)


# ---------------------------------------------------------------------------
# Criteria, figure, table


def _mean(xs) -> float | None:
  return float(np.mean(xs)) if xs else None


def criteria(r: dict) -> list[Criterion]:
  s = r["settings"]
  gen = [t["test"] for t in r["transformers"] if t["weight_decay"] == s["gen_wd"]]
  v = _mean(gen)
  out = [Criterion(f"transformers at weight decay {s['gen_wd']:g} ({len(gen)} seeds): mean held-out tail accuracy",
                   v, f"≥ {GEN_TEST:g}", v is not None and v >= GEN_TEST)]
  g = r["groups"]
  for kind, cmp, thr in (("generalising", "≥", GEN_R2), ("memorising", "≤", OTHER_R2), ("null", "≤", OTHER_R2)):
    v = g[kind]["median_score"]
    met = v is not None and (v >= thr if cmp == "≥" else v <= thr)
    what = "R² − max(null, 0)" if kind != "null" else "R² of the row-permuted null"
    out.append(Criterion(f"MLP ↔ transformer {kind} pairs ({g[kind]['pairs']}, layer {s['rep_layer']}): median "
                         f"held-out affine {what}", v, f"{cmp} {thr:g}", met))
  return out


COLORS = ku.COLORS


def plot(json_path: str | Path) -> list[Path]:
  """Transformer accuracy curves; pair scores at rep_layer; median scores by layer."""
  json_path = Path(json_path)
  r = read_json(json_path)
  s = r["settings"]
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), layout="constrained")
  ax = axes[0]
  for t in r["transformers"]:
    color = COLORS["generalising" if t["weight_decay"] == s["gen_wd"] else "memorising"]
    ax.plot(r["steps"], t["train_curve"], ":", color=color, lw=1)
    ax.plot(r["steps"], t["test_curve"], "-", color=color, lw=1.3,
            label=f"wd {t['weight_decay']:g}, seed {t['seed']}")
  ax.set_xlabel("step")
  ax.set_ylabel("tail accuracy (test solid, train dotted)")
  ax.set_ylim(0, 1.05)
  ax.legend(fontsize=7)
  ax.set_title(f"transformer L{s['layers']}/H{s['hidden']} on {r['entities']} people, φ = {s['phi']:g}")
  ax.grid(alpha=0.3, lw=0.4)
  ax = axes[1]
  ku.draw_pair_scores(ax, r["layers"][s["rep_layer"]]["pairs"])
  ax.set_title(f"MLP ↔ transformer (layer {s['rep_layer']}, top {s['dim']} components)")
  ax.grid(alpha=0.3, lw=0.4)
  ax = axes[2]
  layers = [lay["layer"] for lay in r["layers"]]
  for kind in GROUPS:
    ax.plot(layers, [lay["groups"][kind]["median_score"] for lay in r["layers"]], "o-", color=COLORS[kind],
            label=kind)
  ax.set_xticks(layers)
  ax.set_xlabel("transformer layer (0: embedding)")
  ax.set_ylabel("median score")
  ax.set_ylim(-0.2, 1.05)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3, lw=0.4)
  ax.set_title("by layer")
  fig.suptitle(f"A token transformer on a family forest's triples (preset {r['preset']})")
  return save_figure(fig, json_path)


def readme(r: dict) -> str:
  s = r["settings"]
  lines = [f"{r['graph']}: {r['entities']} people, {r['queries']} queries ({r['train_queries']} train, φ = "
           f"{s['phi']:g}); transformer L{s['layers']}/H{s['hidden']}, {s['steps']} steps; MLP D = {s['dim']}, width "
           f"{s['mlp_width']}.", "", "| model | weight decay | train (seeds) | test (seeds) |", "|---|---|---|---|"]
  key = lambda m: (m["model"], m["weight_decay"])
  for (model, wd), ms in itertools.groupby(r["transformers"] + r["mlps"], key=key):
    ms = list(ms)
    train, test = (" ".join(f"{m[key]:.2f}" for m in ms) for key in ("train", "test"))
    lines.append(f"| {model} | {wd:g} | {train} | {test} |")
  lines += ["", f"Median held-out affine R² − max(null, 0) between MLP and transformer entity representations (top "
            f"{s['dim']} components, fitted on {r['fit_entities']} entities; criterion at layer {s['rep_layer']}):", "",
            "| layer | generalising | memorising | null R² | generalising linear CKA |", "|---|---|---|---|---|"]
  for lay in r["layers"]:
    g = lay["groups"]
    cells = [g["generalising"]["median_score"], g["memorising"]["median_score"], g["null"]["median_score"],
             g["generalising"]["median_cka"]]
    lines.append(f"| {lay['layer']} | " + " | ".join(ku.fmt_or_na(v) for v in cells) + " |")
  return "\n".join(lines)


STUDY = Study(
    name=NAME,
    description="Knowledge graphs (Baek, Li & Tegmark 2024): a token transformer on a family forest's triples, its "
                "held-out tail accuracy and the affine equivalence of its entity representations with MLP link "
                "predictors'",
    presets={p: s.cpu_s for p, s in SETTINGS.items()},
    headline_preset=HEADLINE_PRESET,
    run=run,
    outputs=(Output(NAME, NAME, criteria, plot, readme),),
)
