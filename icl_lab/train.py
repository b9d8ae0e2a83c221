"""Training: a pure jitted multi-step function, run folders, Orbax checkpoints, exact resume.

The step samples its own batch from (data_seed, step) inside jit, and `steps_per_call` steps
are fused with lax.scan, so a small model pays no per-step Python or host-transfer cost.
Metrics of one call are read back while the next call runs (one call behind), except at
checkpoint boundaries, where the state is checked finite before it is saved.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from icl_lab import config as config_lib
from icl_lab import model as model_lib
from icl_lab import tasks
from icl_lab.config import Config
from icl_lab.io import atomic_write_text
from icl_lab.progress import Progress


class TrainingError(RuntimeError):
  """Training cannot go on; the message names the cause and the fix."""


class TrainState(NamedTuple):
  params: Any  # pure dict of arrays (nnx.split of the model)
  opt_state: Any


# ---------------------------------------------------------------------------
# Pure pieces


def make_schedule(tcfg: config_lib.TrainConfig) -> optax.Schedule:
  warmup = int(tcfg.warmup_frac * tcfg.steps)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=tcfg.lr, warmup_steps=warmup,
      decay_steps=max(tcfg.steps, warmup + 1), end_value=0.0)


def make_optimizer(tcfg: config_lib.TrainConfig) -> optax.GradientTransformation:
  adamw = optax.adamw(make_schedule(tcfg), b1=tcfg.b1, b2=tcfg.b2, eps=tcfg.eps,
                      weight_decay=tcfg.weight_decay)
  if tcfg.grad_clip > 0:
    return optax.chain(optax.clip_by_global_norm(tcfg.grad_clip), adamw)
  return adamw


def position_weights_N(task_cfg: config_lib.TaskConfig, step: jax.Array) -> jax.Array:
  """The `excess` loss weights: 1 / max(σ² + τ²·max(d_active − n, 0), τ²) per prefix length n,
  normalised to mean 1. The denominator is the Bayes predictor's error at n for isotropic x."""
  n_N = jnp.arange(task_cfg.num_exemplars)
  d_active = tasks.active_dims(task_cfg, step)
  tau2, sigma2 = task_cfg.weight_std**2, task_cfg.noise_std**2
  irreducible_N = sigma2 + tau2 * jnp.maximum(d_active - n_N, 0)
  weights_N = 1.0 / jnp.maximum(irreducible_N, tau2)
  return weights_N / weights_N.mean()


def loss_fn(params, graphdef, tokens_BxTxF, ys_BxN, weights_N=None) -> jax.Array:
  """Mean squared error over every x̃ position, the zero-context one included (as the paper);
  with weights_N, each prefix length's squared error is weighted (the `excess` ablation)."""
  preds_BxN = nnx.merge(graphdef, params)(tokens_BxTxF)[:, 0::2]
  sq_BxN = (preds_BxN - ys_BxN) ** 2
  if weights_N is not None:
    sq_BxN = sq_BxN * weights_N
  return jnp.mean(sq_BxN)


def make_multi_step(cfg: Config, graphdef, tx: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh | None):
  """Returns jitted multi_step(state, start_step, num_steps) -> (state, metrics_Kx...)."""
  t, tr = cfg.task, cfg.train
  batch_sharding = NamedSharding(mesh, P("data")) if mesh is not None else None

  def one_step(state: TrainState, step: jax.Array):
    batch = tasks.sample_batch(t, tr.data_seed, step, tr.batch_size)
    xs_BxNxD, ys_BxN = batch.xs_BxNxD, batch.ys_BxN
    if batch_sharding is not None:
      xs_BxNxD = jax.lax.with_sharding_constraint(xs_BxNxD, batch_sharding)
      ys_BxN = jax.lax.with_sharding_constraint(ys_BxN, batch_sharding)
    tokens_BxTxF = tasks.encode(xs_BxNxD, ys_BxN, t.token_format)
    weights_N = position_weights_N(t, step) if tr.loss_weighting == "excess" else None
    loss, grads = jax.value_and_grad(loss_fn)(state.params, graphdef, tokens_BxTxF, ys_BxN, weights_N)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(params, opt_state), (loss, optax.tree.norm(grads))

  @functools.partial(jax.jit, static_argnums=2, donate_argnums=0)
  def multi_step(state: TrainState, start_step: jax.Array, num_steps: int):
    steps_K = start_step + jnp.arange(num_steps)
    return jax.lax.scan(one_step, state, steps_K)

  return multi_step


def init_state(cfg: Config, tx: optax.GradientTransformation):
  model = model_lib.build_model(cfg.model, cfg.task, cfg.train.seed)
  graphdef, state = nnx.split(model)
  params = nnx.to_pure_dict(state)
  return graphdef, TrainState(params, tx.init(params))


# ---------------------------------------------------------------------------
# Devices


def make_mesh() -> jax.sharding.Mesh | None:
  """A 1-D data mesh over all devices, or None on one device (nothing changes there)."""
  n = jax.device_count()
  if n == 1:
    return None
  return jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def maybe_init_distributed(cfg: Config) -> None:
  """Multi-host: each host runs the same command; JAX finds the cluster from its environment."""
  if cfg.train.multihost and not getattr(maybe_init_distributed, "_done", False):
    jax.distributed.initialize()
    maybe_init_distributed._done = True


# ---------------------------------------------------------------------------
# Run folders and checkpoints


def run_dir_for(cfg: Config, runs_dir: str | os.PathLike) -> Path:
  return Path(runs_dir) / cfg.run_name()


def _checkpoint_manager(run_dir: Path, cfg: Config) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=cfg.train.keep_checkpoints, create=True,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager((run_dir / "checkpoints").absolute(), options=options)


def _restore(mngr: ocp.CheckpointManager, step: int, abstract: TrainState, run_dir: Path) -> TrainState:
  try:
    restored = mngr.restore(step, args=ocp.args.StandardRestore(abstract))
  except Exception as err:  # Orbax raises many types for unreadable files.
    raise TrainingError(
        f"checkpoint {run_dir / 'checkpoints' / str(step)} is unreadable ({type(err).__name__}: "
        f"{str(err)[:200]}). Delete that step folder to resume from an earlier checkpoint, "
        f"or delete {run_dir} to start over.") from err
  return TrainState(*restored) if not isinstance(restored, TrainState) else restored


def _truncate_metrics(path: Path, last_step: int) -> None:
  """Drops log lines past the restored step: the resumed run rewrites them identically."""
  if not path.exists():
    return
  keep = []
  for line in path.read_text().splitlines():
    try:
      if json.loads(line)["step"] <= last_step:
        keep.append(line)
    except (json.JSONDecodeError, KeyError):
      break  # a torn final line from a kill mid-write
  atomic_write_text(path, "".join(k + "\n" for k in keep))


def _check_config(run_dir: Path, cfg: Config) -> None:
  path = run_dir / "config.json"
  if path.exists():
    saved = config_lib.from_dict(json.loads(path.read_text()))
    if saved.hash() != cfg.hash():
      raise TrainingError(f"{run_dir} holds a run of a different config; delete it or use another runs dir")
  else:
    atomic_write_text(path, json.dumps(cfg.to_dict(), indent=2) + "\n")


def is_done(run_dir: Path) -> bool:
  return (run_dir / "done").exists()


# ---------------------------------------------------------------------------
# The loop


def train(cfg: Config, runs_dir: str | os.PathLike = "runs", *, progress: bool | None = None,
          stop_at_step: int | None = None, quiet: bool = False) -> Path:
  """Trains `cfg` in its run folder, resuming from the last checkpoint; returns the folder.

  A run with a `done` marker is reused as it is. `stop_at_step` ends the loop early without a
  final checkpoint, as an interruption would (used by the resume tests).
  """
  maybe_init_distributed(cfg)
  config_lib.validate(cfg, num_devices=jax.device_count())
  run_dir = run_dir_for(cfg, runs_dir)
  if is_done(run_dir):
    if not quiet:
      print(f"reusing finished run {run_dir}")
    return run_dir
  run_dir.mkdir(parents=True, exist_ok=True)
  _check_config(run_dir, cfg)

  tr = cfg.train
  tx = make_optimizer(tr)
  graphdef, state = init_state(cfg, tx)
  mesh = make_mesh()
  if mesh is not None:
    state = jax.device_put(state, NamedSharding(mesh, P()))
  mngr = _checkpoint_manager(run_dir, cfg)
  metrics_path = run_dir / "metrics.jsonl"
  start = 0
  if mngr.latest_step() is not None:
    start = int(mngr.latest_step())
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    state = _restore(mngr, start, abstract, run_dir)
    if mesh is not None:
      state = jax.device_put(state, NamedSharding(mesh, P()))
    _truncate_metrics(metrics_path, start)
    if not quiet:
      print(f"resuming {run_dir.name} from step {start}")
  else:
    _truncate_metrics(metrics_path, 0)

  multi_step = make_multi_step(cfg, graphdef, tx, mesh)
  schedule = make_schedule(tr)
  end = tr.steps if stop_at_step is None else min(stop_at_step, tr.steps)
  bar = Progress(total=tr.steps, start=start, enabled=progress, quiet=quiet, label=run_dir.name)
  t_start = time.perf_counter()
  last_drain = [t_start]
  pending = None  # (first_step, num_steps, metrics) of the call still in flight

  def drain(item) -> None:
    first, k, (loss_K, gnorm_K) = item
    loss_K, gnorm_K = np.asarray(loss_K), np.asarray(gnorm_K)
    bad = np.flatnonzero(~np.isfinite(loss_K))
    if bad.size:
      raise TrainingError(
          f"loss became {loss_K[bad[0]]} at step {first + int(bad[0])}. Likely cause: the learning "
          f"rate (train.lr={tr.lr}) is too high for this model or clipping is off "
          f"(train.grad_clip={tr.grad_clip}); try --set train.lr={tr.lr / 3:.3g} or "
          f"--set train.grad_clip=1.0. The last good checkpoint in {run_dir / 'checkpoints'} is kept.")
    now = time.perf_counter()
    record = {"step": first + k, "loss": float(loss_K.mean()), "loss_last": float(loss_K[-1]),
              "lr": float(schedule(first + k - 1)), "grad_norm": float(gnorm_K.mean()),
              "steps_per_s": k / max(now - last_drain[0], 1e-9)}
    last_drain[0] = now
    with open(metrics_path, "a") as f:
      f.write(json.dumps(record) + "\n")
    bar.update(first + k, record)

  step = start
  while step < end:
    k = min(tr.steps_per_call, end - step)
    state, metrics = multi_step(state, jnp.asarray(step, jnp.int32), k)
    # Read the previous call's metrics while this one runs, so dispatch never stalls.
    if pending is not None:
      drain(pending)
    pending = (step, k, metrics)
    step += k
    if step % tr.checkpoint_every == 0 or step == tr.steps:
      drain(pending)  # checks this call's losses are finite before its state is saved
      pending = None
      mngr.save(step, args=ocp.args.StandardSave(state))
      mngr.wait_until_finished()
  if pending is not None:
    drain(pending)
  bar.close()
  mngr.close()
  if step == tr.steps:
    wall = time.perf_counter() - t_start
    # Training time over every invocation (a resumed run spans several), from the log.
    records = read_metrics(run_dir)
    steps_prev = [0] + [r["step"] for r in records[:-1]]
    logged = sum((r["step"] - p) / r["steps_per_s"] for r, p in zip(records, steps_prev))
    summary = {"steps": tr.steps, "resumed_from": start, "wall_s": wall, "train_s_all_invocations": logged,
               "steps_per_s": (tr.steps - start) / max(wall, 1e-9),
               "device": jax.devices()[0].device_kind, "num_devices": jax.device_count()}
    atomic_write_text(run_dir / "done", json.dumps(summary) + "\n")
  return run_dir


def read_done(run_dir: str | os.PathLike) -> dict[str, Any]:
  """A finished run's summary, with `train_s`: training wall time over every invocation that
  built it (runs finished before that was logged fall back to their last invocation's)."""
  done = json.loads((Path(run_dir) / "done").read_text())
  done["train_s"] = float(done.get("train_s_all_invocations", done["wall_s"]))
  return done


def train_seconds(run_dir: str | os.PathLike) -> float:
  return read_done(run_dir)["train_s"]


def load_model(run_dir: str | os.PathLike) -> tuple[Config, model_lib.Transformer]:
  """Restores the latest checkpoint of a run folder into a Transformer."""
  run_dir = Path(run_dir)
  cfg_path = run_dir / "config.json"
  if not cfg_path.exists():
    raise TrainingError(f"{run_dir} is not a run folder (no config.json); train it first")
  cfg = config_lib.from_dict(json.loads(cfg_path.read_text()))
  tx = make_optimizer(cfg.train)
  graphdef, state = init_state(cfg, tx)
  mngr = _checkpoint_manager(run_dir, cfg)
  latest = mngr.latest_step()
  if latest is None:
    raise TrainingError(f"{run_dir} has no checkpoint; run `icl-lab train` for its preset first")
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  state = _restore(mngr, latest, abstract, run_dir)
  mngr.close()
  return cfg, nnx.merge(graphdef, state.params)


def train_and_load(cfg: Config, runs_dir: str | os.PathLike = "runs", **kwargs):
  """Trains (or reuses) a run and returns (run_dir, model)."""
  run_dir = train(cfg, runs_dir, **kwargs)
  return run_dir, load_model(run_dir)[1]


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
  path = Path(run_dir) / "metrics.jsonl"
  return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def config_summary(cfg: Config) -> str:
  m, t, tr = cfg.model, cfg.task, cfg.train
  return (f"L{m.layers}/H{m.hidden}/M{m.heads} d={t.dim} N={t.num_exemplars} σ={t.noise_std} "
          f"τ={t.weight_std} steps={tr.steps} batch={tr.batch_size} lr={tr.lr}")
