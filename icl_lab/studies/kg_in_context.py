"""In-context kinship inference (Baek, Li and Tegmark 2024, arXiv 2410.08255, design (c)): a small
TokenTransformer reads the facts of a freshly drawn family under random name tokens and answers
queries that no fact states (`icl_lab.tasks.kg_context`: inverse, sibling, grandparent, uncle).

Training draws families from a pool of forest seeds and names them afresh in every sequence;
evaluation reads `eval_sequences` sequences of held-out families (disjoint forest seeds, fresh
names), and the same number from the training pool (fresh names) as a reference. A query is
correct when the top-1 token over the whole vocabulary is any of its answers; accuracy is
reported per query kind, pooled over the seeds' models.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from icl_lab import results
from icl_lab.config import ConfigError
from icl_lab.io import read_json
from icl_lab.results import Criterion, Seeds
from icl_lab.studies.base import Output, RunRequest, Study, settings_for, settings_record
from icl_lab.studies.plotting import save_figure
from icl_lab.tasks import kg_context as kc
from icl_lab.training.tokens import TokenTrain, token_run_dir, train_tokens

NAME = "kg_in_context"
HEADLINE_PRESET = "cpu"
# Criterion 4 of issue 21: held-out one-step inferences and compositions.
TARGETS = {"inverse": 0.9, "sibling": 0.9, "grandparent": 0.7, "uncle": 0.7}


@dataclasses.dataclass(frozen=True)
class Settings:
  founders: int = 1  # each family: forest(founders, generations, seed, max_children)
  generations: int = 2
  max_children: int = 3
  names_per_sex: int = 24
  queries: int = 6
  families: int = 2000
  seeds: tuple[int, ...] = (0,)
  layers: int = 4
  hidden: int = 64
  heads: int = 4
  lr: float = 1e-3
  weight_decay: float = 0.1
  batch_size: int = 64
  steps: int = 5000
  eval_every: int = 500
  eval_sequences: int = 512
  data_seed: int = 0
  eval_seed: int = 1
  cpu_s: float | None = None

  def spec(self) -> kc.ContextSpec:
    return kc.ContextSpec(self.founders, self.generations, self.max_children, self.names_per_sex, self.queries,
                          self.families)


SETTINGS = {
    "tiny": Settings(families=40, max_children=2, names_per_sex=12, layers=1, hidden=16, heads=2, batch_size=16,
                     steps=40, eval_every=20, eval_sequences=32, cpu_s=20),
    # One L4/H64 model, 5000 steps of 32 sequences of 104 tokens: 1284 s measured on 2 cores
    # shared with a lighter job. Too short to learn the task (docs/knowledge_graphs.md).
    "quick": Settings(batch_size=32, cpu_s=1300),
    # The quick model six times longer (its loss was still falling at 5000 steps), evaluated every
    # 1000 steps: 5749 s measured on 2 cores (0.19 s a step, the batch split over 2 host devices).
    "cpu": Settings(batch_size=32, steps=30000, eval_every=1000, cpu_s=5750),
    "gpu": Settings(seeds=(0, 1), layers=6, hidden=128, batch_size=256, steps=30000, eval_every=2000,
                    eval_sequences=2048, families=5000, cpu_s=None),
}


def check(s: Settings) -> None:
  if s.steps <= 0 or s.eval_every <= 0 or s.steps % s.eval_every:
    raise ConfigError(f"study.steps={s.steps} must be a positive multiple of study.eval_every={s.eval_every}")
  if min(s.founders, s.generations, s.max_children, s.queries, s.families, s.layers, s.hidden, s.heads,
         s.batch_size, s.eval_sequences) < 1 or s.hidden % s.heads or not s.seeds:
    raise ConfigError("study sizes must be ≥ 1, study.hidden a multiple of study.heads, study.seeds non-empty")
  if s.generations < 2:
    raise ConfigError("study.generations must be ≥ 2: grandparent and uncle queries need grandchildren")


def configs(preset: str, overrides=()) -> list:
  return []  # no Config runs: the models train in a token run folder (`training.tokens`)


def per_kind(correct_BxQ: np.ndarray, kind_BxQ: np.ndarray) -> dict[str, dict]:
  """Per query kind: hits and count (accuracy = hits / count)."""
  return {k: {"hits": int(correct_BxQ[kind_BxQ == i].sum()), "count": int((kind_BxQ == i).sum())}
          for i, k in enumerate(kc.KIND_NAMES)}


def by_relation(task: kc.ContextTask, b: kc.Batch, logits_K: list) -> dict[str, dict]:
  """Held-out accuracy per queried relation, pooled over the members' final models, next to the
  sex-matched guess (`ContextTask.guess_rate`): the floor a model reaches by naming a context
  person of the answer's sex."""
  rel_BxQ, guess_BxQ = task.relation_BxQ(b), task.guess_rate(b)
  correct_KxBxQ = np.stack([task.correct(np.asarray(logits), b) for logits in logits_K])
  out = {}
  for kind in kc.KIND_NAMES:
    for rel in kc.KINDS[kind]:
      sel_BxQ = rel_BxQ == rel
      n = int(sel_BxQ.sum())
      out[rel] = {"kind": kind, "count": n,
                  "accuracy": float(correct_KxBxQ[:, sel_BxQ].mean()) if n else None,
                  "guess": float(guess_BxQ[sel_BxQ].mean()) if n else None}
  return out


def run(req: RunRequest, dest: results.Destination) -> list[Path]:
  s = settings_for(NAME, SETTINGS, req)
  check(s)
  t0 = time.perf_counter()
  try:
    task = kc.ContextTask(s.spec())
  except ValueError as err:
    raise ConfigError(str(err)) from None
  evals = {"held_out": task.batch(s.eval_seed, 0, s.eval_sequences, held_out=True),
           "train_pool": task.batch(s.eval_seed, 0, s.eval_sequences)}
  ids = {name: jnp.asarray(b.ids_BxT[:, :-1]) for name, b in evals.items()}

  def evaluate(forward):
    return {name: per_kind(task.correct(np.asarray(forward(ids[name])), b), b.kind_BxQ) for name, b in evals.items()}

  spec = TokenTrain(layers=s.layers, hidden=s.hidden, heads=s.heads, lr=s.lr, steps=s.steps,
                    batch_size=s.batch_size, eval_every=s.eval_every)
  print(f"{len(kc.pool(s.spec(), False))} training families, sequences of {task.seq_len} tokens, "
        f"vocabulary {task.vocab_size}", flush=True)
  # Every setting shapes the training or the evaluations kept in the run's history.
  key = {"task": "kg_context", **settings_record(s)}
  ens = train_tokens(task, spec, s.seeds, [s.weight_decay] * len(s.seeds),
                     lambda step: task.sample_host(s.data_seed, step, s.batch_size), evaluate,
                     ckpt_dir=token_run_dir(req.runs_dir, NAME, req.preset, key), data_key=key)
  # Pooled over the seeds' models at every evaluation: accuracy per split and kind.
  curves = {split: {k: [sum(e[split][k]["hits"] for e in ev) / max(sum(e[split][k]["count"] for e in ev), 1)
                        for ev in ens.evals] for k in kc.KIND_NAMES} for split in evals}
  final = {split: {k: {"accuracy": curves[split][k][-1],
                       "count": sum(e[split][k]["count"] for e in ens.evals[-1]),
                       "seeds": [e[split][k]["hits"] / max(e[split][k]["count"], 1) for e in ens.evals[-1]]}
                   for k in kc.KIND_NAMES} for split in evals}
  relations = by_relation(task, evals["held_out"], [ens.model(k)(ids["held_out"]) for k in range(len(s.seeds))])
  wall = time.perf_counter() - t0
  payload = {"preset": req.preset, "seq_len": task.seq_len, "vocab_size": task.vocab_size,
             "max_facts": task.max_facts, "settings": settings_record(s),
             "steps": ens.steps_C.tolist(), "loss_curve": ens.loss_KxC.mean(0).tolist(), "curves": curves,
             "final": final, "by_relation": relations, "train_s": ens.wall_s, "wall_s": wall}
  seeds = Seeds(tuple(s.seeds), (s.data_seed,), s.eval_seed)
  return results.write_and_print(dest, NAME, payload, preset=req.preset, seeds=seeds, wall_s=wall,
                                 criteria=criteria, plot=plot)


# ---------------------------------------------------------------------------
# Criteria, figure, table


def criteria(r: dict) -> list[Criterion]:
  out = []
  for kind, thr in TARGETS.items():
    f = r["final"]["held_out"][kind]
    v = f["accuracy"] if f["count"] else None
    names = ", ".join(kc.KINDS[kind])
    out.append(Criterion(f"held-out families, {kind} queries ({names}; {f['count']}): accuracy", v, f"≥ {thr:g}",
                         v is not None and v >= thr))
  return out


def plot(json_path: str | Path) -> list[Path]:
  """Held-out accuracy per query kind over training; final accuracy, held-out and training pool."""
  json_path = Path(json_path)
  r = read_json(json_path)
  s = r["settings"]
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
  colors = dict(zip(kc.KIND_NAMES, ("tab:blue", "tab:orange", "tab:green", "tab:purple")))
  ax = axes[0]
  for kind in kc.KIND_NAMES:
    ax.plot(r["steps"], r["curves"]["held_out"][kind], "-", color=colors[kind], label=kind)
    ax.plot(r["steps"], r["curves"]["train_pool"][kind], ":", color=colors[kind], lw=1)
    ax.axhline(TARGETS[kind], color=colors[kind], ls="--", lw=0.6, alpha=0.6)
  ax.set_xlabel("step")
  ax.set_ylabel("accuracy (held-out solid, training pool dotted)")
  ax.set_ylim(0, 1.05)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3, lw=0.4)
  ax.set_title(f"L{s['layers']}/H{s['hidden']}, {len(s['seeds'])} seed(s), {r['seq_len']}-token sequences")
  ax = axes[1]
  x = np.arange(len(kc.KIND_NAMES))
  for off, split in ((-0.2, "held_out"), (0.2, "train_pool")):
    ax.bar(x + off, [r["final"][split][k]["accuracy"] for k in kc.KIND_NAMES], 0.4, label=split.replace("_", " "))
  ax.scatter(x, [TARGETS[k] for k in kc.KIND_NAMES], marker="_", s=400, color="k", label="criterion")
  ax.set_xticks(x, kc.KIND_NAMES)
  ax.set_ylim(0, 1.05)
  ax.set_ylabel("final accuracy")
  ax.legend(fontsize=8)
  ax.set_title("per query kind")
  fig.suptitle(f"In-context kinship inference over random names (preset {r['preset']})")
  return save_figure(fig, json_path)


def readme(r: dict) -> str:
  s = r["settings"]
  lines = [f"Families forest({s['founders']}, {s['generations']}, max {s['max_children']} children) under "
           f"{s['names_per_sex']} male and {s['names_per_sex']} female name tokens; L{s['layers']}/H{s['hidden']}, "
           f"{s['steps']} steps of {s['batch_size']} sequences ({r['seq_len']} tokens).", "",
           "| kind | relations | held-out queries | held-out accuracy | training-pool accuracy | target |",
           "|---|---|---|---|---|---|"]
  for kind in kc.KIND_NAMES:
    h, t = r["final"]["held_out"][kind], r["final"]["train_pool"][kind]
    lines.append(f"| {kind} | {', '.join(kc.KINDS[kind])} | {h['count']} | {h['accuracy']:.3f} | "
                 f"{t['accuracy']:.3f} | ≥ {TARGETS[kind]:g} |")
  if "by_relation" in r:  # files written before it lack the breakdown
    lines += ["", "Per relation, held-out, against a uniform guess among the context's people of the answer's sex:", "",
              "| relation | kind | queries | accuracy | sex-matched guess |", "|---|---|---|---|---|"]
    for rel, v in r["by_relation"].items():
      if v["count"]:
        lines.append(f"| {rel} | {v['kind']} | {v['count']} | {v['accuracy']:.3f} | {v['guess']:.3f} |")
  return "\n".join(lines)


STUDY = Study(
    name=NAME,
    description="Knowledge graphs (Baek, Li & Tegmark 2024): a small transformer reads a fresh family's facts under "
                "random names and answers inverse, sibling, grandparent and uncle queries in context",
    presets={p: s.cpu_s for p, s in SETTINGS.items()},
    headline_preset=HEADLINE_PRESET,
    run=run,
    outputs=(Output(NAME, NAME, criteria, plot, readme),),
)
