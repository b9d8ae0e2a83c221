"""Stitching (Baek, Li and Tegmark 2024, arXiv 2410.08255): a donor's entity embeddings, through an
affine map, read by a frozen receiver's relation layers and tied read-out.

The models are `kg_universality`'s (one forest, one query split; per width and seed a generaliser at
the Goldilocks weight decay and a memoriser without it). For each generalising receiver and each
donor, the affine map donor -> receiver embeddings is fitted on a seeded share of the entities
(`icl_lab.analysis.representations.stitch_map`); the stitched model answers the receiver's test
queries whose head is outside that share (so neither the map nor any model has seen them), scored
against the receiver's own accuracy on the same queries. Donors:

- generalising: another generaliser, of different width and seed;
- memorising (control): a model without weight decay, of different width and seed;
- random (control): an untrained model (fresh init seed);
- self (sanity): the receiver itself through its fitted self-map, which must answer as it does.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from icl_lab import results
from icl_lab.analysis import representations as rep
from icl_lab.io import read_json
from icl_lab.results import Criterion, Seeds
from icl_lab.studies import kg_universality as ku
from icl_lab.studies.base import Output, RunRequest, Study, settings_for, settings_record
from icl_lab.studies.plotting import save_figure
from icl_lab.tasks import family_graph as fg
from icl_lab.training.link import build

NAME = "kg_stitching"
HEADLINE_PRESET = "quick"
KEEP, CONTROL_DROP = 0.9, 0.20  # the issue's: stitched ≥ 0.9 × own; controls ≥ 20 points lower
DONORS = ("self", "generalising", "memorising", "random")
RANDOM_SEED_OFFSET = 1000  # untrained donors' init seeds, away from the trained ones


@dataclasses.dataclass(frozen=True)
class Settings:
  # The fields kg_universality's training and entity split read (same meaning and defaults).
  founders: int = 8
  generations: int = 3
  forest_seed: int = 0
  phi: float = 0.8
  split_seed: int = 0
  dim: int = 8
  widths: tuple[int, ...] = (32, 64, 128)
  seeds: tuple[int, ...] = (0, 1, 2)
  gen_wd: float = 1.0
  memo_wd: float = 0.0
  lr: float = 3e-3
  steps: int = 5000
  eval_every: int = 500
  fit_fraction: float = 2 / 3
  map_seed: int = 0
  cpu_s: float | None = None


SETTINGS = {
    "tiny": Settings(founders=3, generations=2, widths=(16, 32), seeds=(0, 1), dim=4, steps=200, eval_every=100,
                     cpu_s=20),
    # kg_universality's quick models (retrained: about 3 minutes on 2 shared cores) and their stitches.
    "quick": Settings(cpu_s=240),
}


def check(s: Settings) -> None:
  ku.check(ku.Settings(**{f.name: getattr(s, f.name) for f in dataclasses.fields(s)}, ei_dim=0))


def configs(preset: str, overrides=()) -> list:
  return []  # no run folders: the ensembles train in memory


def donors_for(receiver: ku.Model, models: list[ku.Model]) -> list[tuple[str, ku.Model | None]]:
  """(kind, donor) for one receiver; a random donor is None here and built at its slot's width."""
  out: list[tuple[str, ku.Model | None]] = [("self", receiver)]
  for m in models:
    if m.width != receiver.width and m.seed != receiver.seed:
      out.append((m.kind, m))
      if m.kind == "generalising":
        out.append(("random", m))  # an untrained model of the same width, fresh seed
  return out


def stitch(g: fg.Graph, models: list[ku.Model], s: Settings) -> list[dict]:
  """One row per (receiver, donor): stitched and own accuracy on the receiver's held-out queries."""
  fit_idx, held_idx = ku.entity_split(g.num_entities, s)
  rows = []
  for receiver in [m for m in models if m.kind == "generalising"]:
    model = receiver.ens.model(receiver.k)
    # The receiver's test queries whose head the map was not fitted on.
    eval_Q = receiver.ens.test_KxQ[receiver.k] & np.isin(g.heads_Q, held_idx)
    own = float(receiver.ens.correct_KxQ[receiver.k][eval_Q].mean())
    for kind, donor in donors_for(receiver, models):
      if kind == "random":
        seed = RANDOM_SEED_OFFSET + donor.seed
        donor_ExD = rep.entity_embeddings(build(g, ku.spec(s, donor.width), seed))
        donor_row = {"width": donor.width, "seed": seed, "untrained": True}
      else:
        donor_ExD, donor_row = donor.embeddings(), donor.row()
      w_DxD, b_D = rep.stitch_map(donor_ExD, receiver.embeddings(), fit_idx)
      correct_Q = rep.stitched_correct(model, donor_ExD, w_DxD, b_D, g)
      rows.append({"kind": kind, "receiver": receiver.row(), "donor": donor_row, "queries": int(eval_Q.sum()),
                   "own": own, "stitched": float(correct_Q[eval_Q].mean())})
  return rows


def summary(rows: list[dict]) -> dict:
  """Per donor kind: mean stitched and own accuracy over its pairs (every pair has as many queries)."""
  out = {}
  for kind in DONORS:
    sel = [r for r in rows if r["kind"] == kind]
    if sel:
      stitched, own = float(np.mean([r["stitched"] for r in sel])), float(np.mean([r["own"] for r in sel]))
      out[kind] = {"pairs": len(sel), "stitched": stitched, "own": own, "ratio": stitched / own if own else None}
  return out


def run(req: RunRequest, dest: results.Destination) -> list[Path]:
  s = settings_for(NAME, SETTINGS, req)
  check(s)
  t0 = time.perf_counter()
  g = ku.forest_graph(s)
  fit_idx = ku.check_forest(g, s)
  models = ku.train_models(g, s)
  rows = stitch(g, models, s)
  kinds = summary(rows)
  for kind, v in kinds.items():
    print(f"{kind:13s} donors ({v['pairs']} pairs): stitched {v['stitched']:.3f}, receiver's own {v['own']:.3f}")
  wall = time.perf_counter() - t0
  payload = {"preset": req.preset, "graph": f"forest({s.founders}, {s.generations}, seed {s.forest_seed})",
             "entities": g.num_entities, "queries": g.num_queries, "fit_entities": len(fit_idx),
             "settings": settings_record(s),
             "models": [m.row() for m in models], "stitches": rows, "donors": kinds, "wall_s": wall}
  seeds = Seeds(tuple(s.seeds), (s.split_seed,), s.map_seed, (("random_donor_offset", RANDOM_SEED_OFFSET),))
  return results.write_and_print(dest, NAME, payload, preset=req.preset, seeds=seeds, wall_s=wall,
                                 criteria=criteria, plot=plot)


# ---------------------------------------------------------------------------
# Criteria, figure, table


def criteria(r: dict) -> list[Criterion]:
  d = r["donors"]
  gen = d.get("generalising")
  out = [Criterion(f"generalising donors ({gen['pairs'] if gen else 0} pairs): stitched / receiver's own accuracy",
                   gen and gen["ratio"], f"≥ {KEEP:g}", bool(gen and gen["ratio"] is not None
                                                             and gen["ratio"] >= KEEP))]
  for kind in ("random", "memorising"):
    c = d.get(kind)
    drop = None if c is None else c["own"] - c["stitched"]
    out.append(Criterion(f"{kind} donors ({c['pairs'] if c else 0} pairs): receiver's own minus stitched accuracy",
                         drop, f"≥ {CONTROL_DROP:g}", drop is not None and drop >= CONTROL_DROP))
  return out


COLORS = {"self": "tab:blue", "generalising": "tab:green", "memorising": "tab:red", "random": "tab:gray"}


def plot(json_path: str | Path) -> list[Path]:
  """Stitched against own accuracy per pair, and the means per donor kind."""
  json_path = Path(json_path)
  r = read_json(json_path)
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
  ax = axes[0]
  for kind in DONORS:
    sel = [p for p in r["stitches"] if p["kind"] == kind]
    ax.scatter([p["own"] for p in sel], [p["stitched"] for p in sel], s=16, alpha=0.7, color=COLORS[kind], label=kind)
  ax.plot([0, 1], [0, 1], "k-", lw=0.6)
  ax.plot([0, 1], [0, KEEP], "k:", lw=0.6)
  ax.set_xlabel("receiver's own test accuracy")
  ax.set_ylabel("stitched test accuracy")
  ax.set_xlim(0, 1.02)
  ax.set_ylim(0, 1.02)
  ax.legend(fontsize=8, title="donor")
  ax.set_title("per (receiver, donor) pair")
  ax = axes[1]
  kinds = [k for k in DONORS if k in r["donors"]]
  x = np.arange(len(kinds))
  ax.bar(x - 0.2, [r["donors"][k]["own"] for k in kinds], 0.4, color="lightgray", label="receiver's own")
  ax.bar(x + 0.2, [r["donors"][k]["stitched"] for k in kinds], 0.4, color=[COLORS[k] for k in kinds],
         label="stitched")
  ax.set_xticks(x, kinds)
  ax.set_ylim(0, 1.05)
  ax.set_ylabel("test accuracy (held-out heads)")
  ax.legend(fontsize=8)
  ax.set_title("mean per donor kind")
  fig.suptitle(f"Stitching through an affine map on {r['graph']} ({r['entities']} people, preset {r['preset']})")
  return save_figure(fig, json_path)


def readme(r: dict) -> str:
  lines = [f"{r['graph']}: {r['entities']} people; maps fitted on {r['fit_entities']} entities; accuracy on each "
           "receiver's test queries whose head is among the other entities.", "",
           "| donor | pairs | receiver's own | stitched | stitched / own |", "|---|---|---|---|---|"]
  for kind in DONORS:
    d = r["donors"].get(kind)
    if d:
      ratio = "n/a" if d["ratio"] is None else f"{d['ratio']:.2f}"
      lines.append(f"| {kind} | {d['pairs']} | {d['own']:.3f} | {d['stitched']:.3f} | {ratio} |")
  return "\n".join(lines)


STUDY = Study(
    name=NAME,
    description="Knowledge graphs (Baek, Li & Tegmark 2024): stitching a donor's entity embeddings through an affine "
                "map into a frozen receiver, against random and memorising donors",
    presets={p: s.cpu_s for p, s in SETTINGS.items()},
    headline_preset=HEADLINE_PRESET,
    run=run,
    outputs=(Output(NAME, NAME, criteria, plot, readme),),
)
