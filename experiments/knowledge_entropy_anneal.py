"""Why knowledge entropy rises again during the anneal of the 2048-person world: the committed
decay files read side by side with the learning rate of each checkpoint. Trains nothing.

  python experiments/knowledge_entropy_anneal.py

For each run (the 2048-person world, the `quick` world and its WSD control, the over-trained
variant) it prints, per checkpoint, lr/peak (the lab's own schedule, rebuilt from the stored
config), H/(L ln W), each layer's Hˡ/ln W (seed means: the files keep no per-seed layers), each
seed's H and the attention and next-token entropy; then, per interval between checkpoints, Σ lr
(the step budget AdamW spends there), exp(−wd Σ lr) (the most its decoupled decay can shrink a
weight there, with no gradient holding it) and the change of H/(L ln W) per unit of Σ lr.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np

from icl_lab import config
from icl_lab.training.train import make_schedule

ROOT = Path(__file__).resolve().parent.parent
P2048 = ROOT / "experiments/knowledge_entropy_persons2048"
ONETOKEN = ROOT / "experiments/knowledge_entropy_onetoken"
RUNS = {
    "2048 persons, cosine (2 seeds)": P2048 / "knowledge_entropy_decay_quick-custom-a0fa06ea.json",
    "quick, 256 persons, cosine (2 seeds)": ONETOKEN / "knowledge_entropy_decay.json",
    "quick, WSD control (2 seeds)": ONETOKEN / "knowledge_entropy_decay.json",
    "over-trained L2/H32 (1 seed)": ROOT / "experiments/knowledge_entropy_overtrained/"
                                           "knowledge_entropy_decay_quick-custom-814a70d2.json",
}
ACQUISITION = P2048 / "knowledge_acquisition_quick-custom-a0fa06ea.json"


def load(name: str, path: Path) -> tuple[dict, config.TrainConfig]:
  """The curve of one run and the train config that produced it (the WSD control: the stored
  config with the study's schedule override, as `seed_configs` builds it)."""
  d = json.loads(path.read_text())
  tcfg = config.from_dict(d["config"]).train
  if "WSD" in name:
    d = {**d["control"], "config": d["config"]}
    tcfg = dataclasses.replace(tcfg, schedule="wsd", decay_frac=d["decay_frac"])
  return d, tcfg


def report(name: str, d: dict, tcfg: config.TrainConfig, p_by_step: dict[int, float], windows=()) -> None:
  lr_T = np.array([float(make_schedule(tcfg)(t)) for t in range(tcfg.steps + 1)])
  m = d["config"]["model"]
  ln_w = np.log(m["hidden"] * m["mlp_ratio"])
  steps = d["steps"]
  layers_SxL = np.array(d["per_layer"]) / ln_w  # S: checkpoints
  seeds_SxK = np.array(d["entropy_seeds"]).T  # K: seeds
  norm_S = np.array(d["normalised"])
  print(f"\n== {name}: lr {tcfg.lr}, {tcfg.schedule}, warmup {tcfg.warmup_frac}, AdamW ({tcfg.b1}, {tcfg.b2}), "
        f"weight decay {tcfg.weight_decay}, clip {tcfg.grad_clip}")
  print("  step  lr/peak  H/(LlnW)  " + "  ".join(f"H{l}/lnW" for l in range(layers_SxL.shape[1]))
        + "  H per seed           attention  next-token  P")
  for i, t in enumerate(steps):
    seeds = " ".join(f"{h:8.4f}" for h in seeds_SxK[i])
    layers = "  ".join(f"{h:7.4f}" for h in layers_SxL[i])
    p = f"{p_by_step[t]:.4f}" if t in p_by_step else ""
    print(f"{t:6d}  {lr_T[t] / tcfg.lr:7.3f}  {norm_S[i]:8.4f}  {layers}  {seeds:20s} {d['attention'][i]:9.3f}"
          f"  {d['next_token'][i]:10.3f}  {p}")
  print("  interval      Σ lr  exp(-wd Σlr)  ΔH/(LlnW)  per unit Σlr  " + "  ".join(
      f"ΔH{l}/lnW" for l in range(layers_SxL.shape[1])))
  for i in range(1, len(steps)):
    a, b = steps[i - 1], steps[i]
    budget = lr_T[a:b].sum()
    dh = norm_S[i] - norm_S[i - 1]
    dl = "  ".join(f"{x:+8.4f}" for x in layers_SxL[i] - layers_SxL[i - 1])
    print(f"  {a:5d}-{b:<5d} {budget:6.3f}  {np.exp(-tcfg.weight_decay * budget):12.4f}  {dh:+9.4f}"
          f"  {dh / budget:+12.4f}  {dl}")
  lo = int(np.argmin(norm_S[1:])) + 1
  print(f"  H/(L ln W): lowest {norm_S[lo]:.4f} at step {steps[lo]} (lr/peak {lr_T[steps[lo]] / tcfg.lr:.3f}), "
        f"{norm_S[-1]:.4f} at the end ({norm_S[-1] - norm_S[lo]:+.4f})")
  for a, b in [(0, steps[lo]), (steps[lo], steps[-1]), *windows]:
    budget = lr_T[a:b].sum()
    print(f"  steps {a}-{b}: ΔH/(L ln W) {norm_S[steps.index(b)] - norm_S[steps.index(a)]:+.4f}, Σ lr {budget:.3f}, "
          f"decay alone would shrink a weight to {np.exp(-tcfg.weight_decay * budget):.3f} of itself")
  for l in range(layers_SxL.shape[1]):
    j = int(np.argmin(layers_SxL[1:, l])) + 1
    print(f"  layer {l}: lowest {layers_SxL[j, l]:.4f} at step {steps[j]}, {layers_SxL[-1, l]:.4f} at the end "
          f"({layers_SxL[-1, l] - layers_SxL[j, l]:+.4f} of ln W)")
  for k in range(seeds_SxK.shape[1]):
    j = int(np.argmin(seeds_SxK[1:, k])) + 1
    print(f"  seed {d['runs'][k] if 'runs' in d else k}: lowest H {seeds_SxK[j, k]:.4f} at step {steps[j]}, "
          f"{seeds_SxK[-1, k]:.4f} at the end ({seeds_SxK[-1, k] - seeds_SxK[j, k]:+.4f} nats)")


def main() -> None:
  acq = json.loads(ACQUISITION.read_text())
  # P is stored only at the four continued checkpoints of the 2048-person world.
  p2048 = {row["step"]: row["P_pt"] for row in acq["sources"]}
  for name, path in RUNS.items():
    d, tcfg = load(name, path)
    ours = path.parent == P2048
    # 6000-7200: the three intervals that carry most of the 2048-person world's rise.
    report(name, d, tcfg, p2048 if ours else {}, [(6000, 7200)] if ours else [])


if __name__ == "__main__":
  main()
