"""Training small ensembles of TokenTransformers on a task whose batches the host draws.

The knowledge-graph token tasks (`icl_lab.tasks.kg_tokens`, `icl_lab.tasks.kg_context`) hold data
that a `Config` does not name (a graph, its split, a pool of families), so they train here rather
than through `training.train`, like the MLP link predictors of `training.link`. K members (one
init seed and one weight decay each) share every batch and train as one vmapped, jitted step; the
loss is the task's own (`NextTokenTask.loss`: masked next-token cross-entropy). With several
devices (the lab's two host CPU devices, `training.host`) each batch is split over them and the
members are replicated, so both cores work on every step; the numbers then differ from a
one-device run to float32 rounding.

Given a folder (`ckpt_dir`, see `token_run_dir`), a run saves its state there with
`training.checkpoints` (Orbax, keep-N, a corrupt newest step falls back to an older one) and its
history (losses and evaluations) in `history.json`, and resumes from the newest readable step,
bit-identical to an uninterrupted run because the batches are a pure function of the step. A
folder whose newest step is the last is a finished run: it is read back and nothing trains. The
folder's `identity.json` names what determines the training; a run of other settings is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from icl_lab.config import Config, ModelConfig, TrainConfig
from icl_lab.io import atomic_write_text
from icl_lab.tasks.next_token import NextTokenTask, TokenBatch
from icl_lab.training import checkpoints, runlock
from icl_lab.training.train import make_mesh, nonfinite_leaves


@dataclasses.dataclass(frozen=True)
class TokenTrain:
  layers: int = 2
  hidden: int = 64
  heads: int = 4
  lr: float = 1e-3
  b2: float = 0.98
  warmup: int = 100
  steps: int = 2000
  batch_size: int = 128
  eval_every: int = 500

  def __post_init__(self):
    if self.steps <= 0 or self.eval_every <= 0 or self.steps % self.eval_every:
      raise ValueError(f"steps={self.steps} must be a positive multiple of eval_every={self.eval_every}")

  def config(self) -> Config:
    """The lab Config that NextTokenTask.build_model reads (model shape and compute dtype only)."""
    return Config(preset="kg", model=ModelConfig(layers=self.layers, hidden=self.hidden, heads=self.heads),
                  train=TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr))


@dataclasses.dataclass(frozen=True)
class TokenEnsemble:
  graphdef: Any
  params_K: Any  # pure dict, every leaf (K, ...)
  loss_KxC: np.ndarray  # training loss at each evaluation (the first at step 0 is not trained)
  steps_C: np.ndarray
  evals: list  # what `evaluate(model, k)` returned per evaluation, [C][K]
  wall_s: float

  def model(self, k: int) -> nnx.Module:
    return nnx.merge(self.graphdef, jax.tree.map(lambda a: a[k], self.params_K))


def token_run_dir(runs_dir: str | os.PathLike, study: str, preset: str, key: Any) -> Path:
  """`runs_dir/STUDY-PRESET-HASH`: the folder of a token run, HASH of the study's `key` (a JSON-able
  description of everything that determines its training and evaluations)."""
  blob = json.dumps(key, sort_keys=True, default=str).encode()
  return Path(runs_dir) / f"{study}-{preset}-{hashlib.sha256(blob).hexdigest()[:10]}"


def train_tokens(task: NextTokenTask, spec: TokenTrain, seeds, weight_decays,
                 batch_fn: Callable[[int], TokenBatch], evaluate: Callable[[Callable], Any],
                 log: Callable[[str], None] | None = print, *, ckpt_dir: str | os.PathLike | None = None,
                 data_key: Any = None, checkpoint_every: int | None = None, keep: int = 2,
                 stop_at_step: int | None = None) -> TokenEnsemble:
  """Trains one member per (seed, weight decay) on batch_fn(step) (numpy, shared by the members);
  `evaluate(forward)` runs on each member every `eval_every` steps and at the end, with
  forward(ids_BxT) -> logits_BxTxV that member's jitted forward pass.

  With `ckpt_dir`, the run saves there every `checkpoint_every` steps (a multiple of eval_every;
  default eval_every) and at the end, and resumes from there; `data_key` (JSON-able) describes the
  task's data and evaluations, which the folder's identity must match. batch_fn must then be a
  pure function of the step, and evaluate's results JSON-able (numpy arrays allowed).
  `stop_at_step` ends the loop early without a final checkpoint, as an interruption would.
  """
  cfg = spec.config()
  seeds = [int(s) for s in seeds]
  wd_K = jnp.asarray(weight_decays, jnp.float32)
  if wd_K.shape != (len(seeds),):
    raise ValueError(f"{len(seeds)} seeds need {len(seeds)} weight decays")
  checkpoint_every = spec.eval_every if checkpoint_every is None else checkpoint_every
  if checkpoint_every <= 0 or checkpoint_every % spec.eval_every:
    raise ValueError(f"checkpoint_every={checkpoint_every} must be a positive multiple of eval_every={spec.eval_every}")
  splits = [nnx.split(task.build_model(cfg, s)) for s in seeds]
  graphdef = splits[0][0]
  params_K = jax.tree.map(lambda *a: jnp.stack(a), *[nnx.to_pure_dict(st) for _, st in splits])
  sched = optax.warmup_cosine_decay_schedule(0.0, spec.lr, max(spec.warmup, 1), max(spec.steps, spec.warmup + 1))

  def tx(wd):
    return optax.adamw(sched, b1=0.9, b2=spec.b2, weight_decay=wd)

  opt_K = jax.vmap(lambda p: tx(0.0).init(p))(params_K)  # the state's structure does not depend on wd
  # The small token models are overhead-bound on CPU: one device leaves the other core idle.
  mesh = make_mesh()
  if mesh is not None and spec.batch_size % mesh.size:
    mesh = None  # a batch the devices cannot split evenly trains on one
  # With no mesh, device_put(x, None) is the default device's placement, as before.
  replicated, batch_sharding = ((None, None) if mesh is None
                                else (NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))))
  params_K, opt_K = jax.device_put((params_K, opt_K), replicated)

  def member_step(params, opt, wd, batch):
    loss, grads = jax.value_and_grad(lambda p: task.loss(nnx.merge(graphdef, p), batch, cfg, None, 0))(params)
    updates, opt = tx(wd).update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  @jax.jit
  def step_fn(params_K, opt_K, batch):
    return jax.vmap(member_step, in_axes=(0, 0, 0, None))(params_K, opt_K, wd_K, batch)

  @jax.jit
  def loss_fn(params_K, batch):
    return jax.vmap(lambda p: task.loss(nnx.merge(graphdef, p), batch, cfg, None, 0))(params_K)

  @jax.jit
  def forward(params, ids_BxT):
    return nnx.merge(graphdef, params)(ids_BxT)

  def evaluate_all(params_K):
    out = []
    for k in range(len(seeds)):
      params = jax.tree.map(lambda a, k=k: a[k], params_K)
      out.append(evaluate(lambda ids, p=params: forward(p, ids)))
    return out

  with contextlib.ExitStack() as stack:
    mngr, start, hist = None, 0, None
    if ckpt_dir is not None:
      ckpt_dir = Path(ckpt_dir)
      stack.enter_context(runlock.RunLock(ckpt_dir))
      identity = {"spec": dataclasses.asdict(spec), "seeds": seeds,
                  "weight_decays": [float(w) for w in weight_decays], "data": data_key}
      _check_identity(ckpt_dir, identity)
      mngr = checkpoints.manager(ckpt_dir, keep)
      stack.callback(mngr.close)
      if mngr.latest_step() is not None:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, {"params": params_K, "opt": opt_K})
        start, state = checkpoints.restore_latest(mngr, ckpt_dir, abstract, log=log or (lambda msg: None))
        params_K, opt_K = jax.device_put((state["params"], state["opt"]), replicated)
        hist = _read_history(ckpt_dir, start)
        if log:
          log(f"reusing finished run {ckpt_dir}" if start == spec.steps
              else f"resuming {ckpt_dir.name} from step {start}")

    t0 = time.perf_counter()
    if hist is None:
      first = jax.device_put(batch_fn(0), batch_sharding)
      # train_s: training seconds at each evaluation, over every invocation (a resumed run spans several)
      hist = {"steps": [0], "loss": [np.asarray(loss_fn(params_K, first))], "evals": [evaluate_all(params_K)],
              "train_s": [time.perf_counter() - t0]}
    prior_s = hist["train_s"][-1] if start else 0.0
    end = spec.steps if stop_at_step is None else min(stop_at_step, spec.steps)
    for step in range(start, end):
      batch = jax.device_put(batch_fn(step), batch_sharding)
      params_K, opt_K, loss_K = step_fn(params_K, opt_K, batch)
      if (step + 1) % spec.eval_every == 0:
        loss_K = np.asarray(loss_K)
        if not np.isfinite(loss_K).all():
          raise FloatingPointError(f"token-transformer loss is {loss_K} at step {step + 1}: lower the learning rate")
        hist["loss"].append(loss_K)
        hist["evals"].append(evaluate_all(params_K))
        hist["steps"].append(step + 1)
        hist["train_s"].append(prior_s + time.perf_counter() - t0)
        if log:
          log(f"  step {step + 1}: loss " + " ".join(f"{x:.3f}" for x in loss_K)
              + f" ({time.perf_counter() - t0:.0f} s)")
      if mngr is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == spec.steps):
        _save(mngr, ckpt_dir, step + 1, {"params": params_K, "opt": opt_K}, hist)
  return TokenEnsemble(graphdef, params_K, np.stack(hist["loss"], axis=1), np.asarray(hist["steps"]),
                       hist["evals"], hist["train_s"][-1])


# ---------------------------------------------------------------------------
# The run folder

IDENTITY, HISTORY = "identity.json", "history.json"


def _check_identity(ckpt_dir: Path, identity: dict) -> None:
  """Writes the folder's identity if it has none; refuses a folder of other settings in one line
  naming what differs."""
  path = ckpt_dir / IDENTITY
  identity = json.loads(json.dumps(identity, default=str))  # as it reads back: tuples become lists
  if not path.exists():
    if (ckpt_dir / "checkpoints").exists() and any((ckpt_dir / "checkpoints").iterdir()):
      raise checkpoints.CheckpointError(f"{ckpt_dir} holds checkpoints but no {IDENTITY}; delete it to start over")
    atomic_write_text(path, json.dumps(identity, indent=1) + "\n")
    return
  saved = json.loads(path.read_text())
  diff = _differences(saved, identity)
  if diff:
    raise checkpoints.CheckpointError(
        f"{ckpt_dir} holds a token run of other settings ({'; '.join(diff[:3])}{'; ...' if len(diff) > 3 else ''}); "
        f"delete it to start over, or use another runs dir")


def _differences(saved: Any, now: Any, where: str = "") -> list[str]:
  """`key: saved → now` for each leaf that differs."""
  if isinstance(saved, dict) and isinstance(now, dict):
    return [d for k in sorted(set(saved) | set(now), key=str)
            for d in _differences(saved.get(k), now.get(k), f"{where}.{k}" if where else str(k))]
  return [] if saved == now else [f"{where or 'identity'}: {saved} → {now}"]


def _save(mngr, ckpt_dir: Path, step: int, state: dict, hist: dict) -> None:
  """The history first, then the state: a kill between leaves a history that reaches past the
  newest step, which a resume cuts back (`_read_history`), never one that stops short of it."""
  # A finite loss does not make a finite state (Adam's second moment can overflow first), and a
  # checkpoint holding one would diverge again on resume. Never save one.
  bad = nonfinite_leaves(state)
  if bad:
    raise FloatingPointError(
        f"the token-transformer state has non-finite values at step {step} ({', '.join(bad[:3])}); lower the "
        f"learning rate or weight decay. The last good checkpoint in {ckpt_dir} is kept.")
  atomic_write_text(ckpt_dir / HISTORY, json.dumps(_encode(hist)) + "\n")
  mngr.save(step, args=ocp.args.StandardSave(state))
  mngr.wait_until_finished()


def _read_history(ckpt_dir: Path, step: int) -> dict:
  """The history up to `step` (the one restored: a fallback past a corrupt step cuts it back)."""
  try:
    hist = _decode(json.loads((ckpt_dir / HISTORY).read_text()))
  except (OSError, ValueError) as err:
    raise checkpoints.CheckpointError(f"{ckpt_dir / HISTORY} is unreadable ({err}); delete {ckpt_dir} "
                                      f"to start over") from None
  keep = sum(s <= step for s in hist["steps"])
  if not hist["steps"] or hist["steps"][keep - 1] != step:
    raise checkpoints.CheckpointError(f"{ckpt_dir / HISTORY} has no entry for the restored step {step}; "
                                      f"delete {ckpt_dir} to start over")
  return {k: hist[k][:keep] for k in ("steps", "loss", "evals", "train_s")}


def _encode(x: Any) -> Any:
  """JSON-able, numpy arrays included (dtype and shape kept, so they read back bit-identical)."""
  if isinstance(x, (np.ndarray, np.generic, jax.Array)):
    a = np.asarray(x)
    return {"__ndarray__": a.ravel().tolist(), "dtype": a.dtype.str, "shape": list(a.shape)}
  if isinstance(x, dict):
    return {k: _encode(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_encode(v) for v in x]
  return x


def _decode(x: Any) -> Any:
  if isinstance(x, dict):
    if "__ndarray__" in x:
      a = np.asarray(x["__ndarray__"], np.dtype(x["dtype"])).reshape(x["shape"])
      return a[()] if a.ndim == 0 else a
    return {k: _decode(v) for k, v in x.items()}
  if isinstance(x, list):
    return [_decode(v) for v in x]
  return x
