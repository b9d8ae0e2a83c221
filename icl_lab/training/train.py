"""Training: a pure jitted multi-step function, run folders, Orbax checkpoints, exact resume.

What is trained comes from a task (`icl_lab.tasks`): it builds the model, samples its batch from
(data_seed, step) inside jit and computes the loss, so regression prompts and token streams
share this loop. The step samples its own batch and `steps_per_call` steps are fused with
lax.scan, so a small model pays no per-step Python or host-transfer cost. Models of one shape
that differ only in seeds, σ, τ, lr or weight decay train together as one vmapped ensemble,
each member in its own run folder. A run folder is locked while a process trains it.
Several processes (`processes.py`) train one run on one global mesh, each device computing its
slice of the batch; process 0 alone prints and writes the run folder, Orbax saves from all.
Metrics of one call are read back while the next call runs (one call behind), except at
checkpoint boundaries, where the state (parameters and optimiser) is checked finite before it is saved.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Sequence
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
from icl_lab import tasks
from icl_lab.config import Config
from icl_lab.io import atomic_write_text
from icl_lab.tasks import fact_world
from icl_lab.training import checkpoints, memory, processes, runlock
from icl_lab.training.progress import Progress, zero_predictor_loss


class TrainingError(RuntimeError):
  """Training cannot go on; the message names the cause and the fix."""


class TrainState(NamedTuple):
  params: Any  # pure dict of arrays (nnx.split of the model)
  opt_state: Any


# ---------------------------------------------------------------------------
# Pure pieces


def make_schedule(tcfg: config_lib.TrainConfig, peak=None) -> optax.Schedule:
  """Linear warmup, then cosine decay (or, for train.schedule = "wsd", a constant stretch and a
  linear decay over the last train.decay_frac) to train.end_lr_frac of the peak. `peak`
  (default train.lr) may be a traced value."""
  warmup = int(tcfg.warmup_frac * tcfg.steps)
  end = tcfg.end_lr_frac
  if tcfg.schedule == "wsd":
    decay_start = tcfg.steps - max(int(tcfg.decay_frac * tcfg.steps), 1)
    unit = optax.join_schedules(
        [optax.linear_schedule(0.0, 1.0, max(warmup, 1)), optax.constant_schedule(1.0),
         optax.linear_schedule(1.0, end, tcfg.steps - decay_start)],
        boundaries=[warmup, decay_start])
  else:
    unit = optax.warmup_cosine_decay_schedule(init_value=0.0, peak_value=1.0, warmup_steps=warmup,
                                              decay_steps=max(tcfg.steps, warmup + 1), end_value=end)
  if peak is None or isinstance(peak, (int, float)):
    peak = tcfg.lr if peak is None else peak
    if tcfg.schedule == "cosine":  # the historical form, bitwise as before
      return optax.warmup_cosine_decay_schedule(init_value=0.0, peak_value=peak, warmup_steps=warmup,
                                                decay_steps=max(tcfg.steps, warmup + 1), end_value=end * peak)
  # optax branches on the peak's value, so a traced peak scales the unit-peak schedule.
  return lambda count: unit(count) * peak


def make_optimizer(tcfg: config_lib.TrainConfig, lr=None, weight_decay=None) -> optax.GradientTransformation:
  """AdamW (+ global-norm clipping). lr and weight_decay default to the config's and may be
  traced per-member values: they only enter the update, never the state's structure."""
  wd = tcfg.weight_decay if weight_decay is None else weight_decay
  adamw = optax.adamw(make_schedule(tcfg, lr), b1=tcfg.b1, b2=tcfg.b2, eps=tcfg.eps, weight_decay=wd)
  if tcfg.grad_clip > 0:
    return optax.chain(optax.clip_by_global_norm(tcfg.grad_clip), adamw)
  return adamw


def make_multi_step(cfg: Config, graphdef, tx: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh | None, members: Sequence[tasks.Member] | None = None):
  """Returns jitted multi_step(state, start_step, num_steps) -> (state, (loss, grad_norm)).

  Solo (members None): the state is one model's and the batch is sharded over `mesh`; metrics
  are (num_steps,). Ensemble: the state is stacked on a leading member axis K and one vmapped
  step trains every member on its own data stream with its own σ, τ, lr and weight decay;
  metrics are (num_steps, K).
  """
  task = tasks.get_task(cfg)
  batch_size = cfg.train.batch_size
  batch_sharding = NamedSharding(mesh, P("data")) if mesh is not None and members is None else None

  def member_step(state: TrainState, member: tasks.Member, member_tx, step: jax.Array):
    batch = task.sample(cfg, member, step, batch_size)
    if batch_sharding is not None:
      batch = jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, batch_sharding), batch)

    def loss_of(params):
      return task.loss(nnx.merge(graphdef, params), batch, cfg, member, step)

    loss, grads = jax.value_and_grad(loss_of)(state.params)
    updates, opt_state = member_tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(params, opt_state), (loss, optax.tree.norm(grads))

  if members is None:
    solo = tasks.member_of(cfg)

    def one_step(state, step):
      return member_step(state, solo, tx, step)
  else:
    members_K = stack_members(members)

    def one_step(state_K, step):
      def body(state, member):
        member_tx = make_optimizer(cfg.train, lr=member.lr, weight_decay=member.weight_decay)
        return member_step(state, member, member_tx, step)
      return jax.vmap(body)(state_K, members_K)

  @functools.partial(jax.jit, static_argnums=2, donate_argnums=0)
  def multi_step(state: TrainState, start_step: jax.Array, num_steps: int):
    steps_K = start_step + jnp.arange(num_steps)
    return jax.lax.scan(one_step, state, steps_K)

  return multi_step


def stack_members(members: Sequence[tasks.Member]) -> tasks.Member:
  """Per-member values as arrays of shape (K,): int32 seeds and counts, float32 hyperparameters."""
  ints = ("seed", "data_seed", "infuse_exposures")
  cols = dict(zip(tasks.Member._fields, zip(*members)))
  return tasks.Member(**{name: jnp.asarray(col, jnp.int32 if name in ints else jnp.float32)
                         for name, col in cols.items()})


def init_state(cfg: Config, tx: optax.GradientTransformation):
  model = tasks.get_task(cfg).build_model(cfg, cfg.train.seed)
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


def ensemble_spec(k: int, mesh: jax.sharding.Mesh | None) -> P:
  """Where K stacked members live: split over the mesh's devices when they divide evenly, so each
  device trains whole members side by side with no collective; else every device holds all."""
  return P("data") if mesh is not None and k % mesh.size == 0 else P()


def maybe_init_distributed(cfg: Config) -> None:
  """train.multihost: each host runs the same command; JAX finds the cluster from its environment
  (a layout given by flags was joined earlier, by the command line)."""
  if cfg.train.multihost:
    processes.initialize(processes.layout_from())


def check_layout(cfg: Config) -> None:
  """Refuses, in one line, a config that cannot run on this process layout's devices (a batch
  they cannot split evenly among them)."""
  config_lib.validate(cfg, num_devices=jax.device_count(), num_processes=jax.process_count())


def _to_global(tree, sharding: NamedSharding):
  """A pytree every process holds in full, as global arrays laid out by `sharding`."""
  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])
  return jax.tree.map(put, tree)


def _host(x) -> np.ndarray:
  """A global array's full value on every process (a collective: all processes call it)."""
  if x.is_fully_addressable or x.is_fully_replicated:
    return np.asarray(x)
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


# ---------------------------------------------------------------------------
# Run folders and checkpoints


def run_dir_for(cfg: Config, runs_dir: str | os.PathLike) -> Path:
  return Path(runs_dir) / cfg.run_name()


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
# Ensembles


def _fixed_fields(cfg: Config) -> dict:
  """The config without its ENSEMBLE_KEYS: what every member of one ensemble shares."""
  d = cfg.to_dict()
  d.pop("preset")
  for key in tasks.ENSEMBLE_KEYS:
    section, name = key.split(".")
    d[section].pop(name)
  return d


def ensemble_key(cfg: Config) -> str:
  """Equal for exactly the configs that can train together in one ensemble."""
  return json.dumps(_fixed_fields(cfg), sort_keys=True)


def check_ensemble(cfgs: Sequence[Config]) -> None:
  """Members of one ensemble may differ only in ENSEMBLE_KEYS, and must all differ."""
  if not cfgs:
    raise config_lib.ConfigError("an ensemble needs at least one config")
  ref = _fixed_fields(cfgs[0])
  for cfg in cfgs[1:]:
    other = _fixed_fields(cfg)
    diff = [f"{sec}.{k}" for sec in ref for k in (ref[sec] if isinstance(ref[sec], dict) else {})
            if ref[sec][k] != other[sec][k]]
    if diff:
      raise config_lib.ConfigError(
          f"ensemble members may differ only in {', '.join(tasks.ENSEMBLE_KEYS)}; they also "
          f"differ in {', '.join(diff)}: train those as separate runs")
  names = [c.run_name() for c in cfgs]
  if len(set(names)) != len(names):
    raise config_lib.ConfigError("two ensemble members have the same config; list each value once")
  if cfgs[0].train.init_from and len(cfgs) > 1:
    raise config_lib.ConfigError("train.init_from is for single runs; train each member on its own")


def _member_label(cfg: Config, run_dir: Path) -> str:
  m = tasks.member_of(cfg)
  return (f"member {run_dir.name} (seed={m.seed}, data_seed={m.data_seed}, σ={m.noise_std}, "
          f"τ={m.weight_std}, lr={m.lr}, weight_decay={m.weight_decay})")


# ---------------------------------------------------------------------------
# The loop


def train(cfg: Config, runs_dir: str | os.PathLike = "runs", *, progress: bool | None = None,
          stop_at_step: int | None = None, quiet: bool = False) -> Path:
  """Trains `cfg` in its run folder, resuming from the last checkpoint; returns the folder.

  A run with a `done` marker is reused as it is. `stop_at_step` ends the loop early without a
  final checkpoint, as an interruption would (used by the resume tests).
  """
  return train_many([cfg], runs_dir, progress=progress, stop_at_step=stop_at_step, quiet=quiet)[0]


def train_many(cfgs: Sequence[Config], runs_dir: str | os.PathLike = "runs", *,
               progress: bool | None = None, stop_at_step: int | None = None,
               quiet: bool = False) -> list[Path]:
  """Trains configs that differ only in ENSEMBLE_KEYS together, as one vmapped ensemble.

  Each member keeps its own run folder (config, metrics, checkpoints, `done`), so
  `load_model` reads it like a solo run's; finished members are reused and the rest train
  together. One config is a plain solo run.
  """
  cfgs = list(cfgs)
  check_ensemble(cfgs)
  maybe_init_distributed(cfgs[0])
  for cfg in cfgs:
    check_layout(cfg)
  run_dirs = [run_dir_for(cfg, runs_dir) for cfg in cfgs]
  todo = [i for i, d in enumerate(run_dirs) if not is_done(d)]
  main = processes.is_main()
  quiet = quiet or not main  # only process 0 prints
  for i in sorted(set(range(len(cfgs))) - set(todo)):
    if not quiet:
      print(f"reusing finished run {run_dirs[i]}")
  if todo:
    try:  # before any folder is made: an impossible config leaves nothing behind
      check_memory(cfgs[todo[0]], len(todo))
    except memory.ConfigTooLarge as err:
      raise config_lib.ConfigError(str(err)) from None
    with contextlib.ExitStack() as stack:
      # Process 0 makes, locks and labels the folders; the others check the label once it exists.
      for i in todo if main else ():
        run_dirs[i].mkdir(parents=True, exist_ok=True)
        stack.enter_context(runlock.RunLock(run_dirs[i]))
        _check_config(run_dirs[i], cfgs[i])
      processes.barrier("icl_lab_run_folders")
      for i in todo if not main else ():
        _check_config(run_dirs[i], cfgs[i])
      _run([cfgs[i] for i in todo], [run_dirs[i] for i in todo], progress=progress,
           stop_at_step=stop_at_step, quiet=quiet)
  return run_dirs


def check_memory(cfg: Config, members: int = 1) -> None:
  """Refuses, in one line naming the keys, a config whose training cannot fit in memory."""
  m, task = cfg.model, tasks.get_task(cfg)
  tx = make_optimizer(cfg.train)
  abstract = jax.eval_shape(lambda: init_state(cfg, tx)[1].params)
  num_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(abstract))
  need = members * memory.estimate_train_bytes(
      num_params, cfg.train.batch_size, task.sequence_len(cfg), m.hidden, m.layers, m.heads,
      m.mlp_ratio * m.hidden, task.output_dim(cfg), mlp=m.mlp)
  memory.check_fits(need, memory.available_bytes(), task.length_hint)


def _run(cfgs: list[Config], run_dirs: list[Path], *, progress, stop_at_step, quiet) -> None:
  tr = cfgs[0].train
  tx = make_optimizer(tr)
  graphdef, states = None, []
  for c in cfgs:
    graphdef, state = init_state(c, tx)
    states.append(state)
  with contextlib.ExitStack() as stack:
    mngrs = [checkpoints.manager(d, tr.keep_checkpoints) for d in run_dirs]
    for mngr in mngrs:
      stack.callback(mngr.close)
    _loop(cfgs, run_dirs, mngrs, tx, graphdef, states, progress=progress, stop_at_step=stop_at_step,
          quiet=quiet)


def _loop(cfgs, run_dirs, mngrs, tx, graphdef, states, *, progress, stop_at_step, quiet) -> None:
  cfg, tr, k = cfgs[0], cfgs[0].train, len(cfgs)
  mesh = make_mesh()
  # Several processes: one global mesh, every array global; process 0 alone writes the files.
  multi, main = jax.process_count() > 1, processes.is_main()
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, states[0])
  if multi:  # restored replicated over all processes: Orbax reads each array once per process
    replicated = NamedSharding(mesh, P())
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), abstract)
  log = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))

  # Resume: a solo run restores its newest readable checkpoint; an ensemble the newest step
  # every member has, so the members stay in lockstep.
  start = 0
  if k == 1:
    if mngrs[0].latest_step() is not None:
      start, states[0] = checkpoints.restore_latest(mngrs[0], run_dirs[0], abstract, log=log)
      states[0] = TrainState(*states[0])
  else:
    common = set.intersection(*(set(m.all_steps()) for m in mngrs))
    if common:
      start = max(common)
      states = [TrainState(*checkpoints.restore_latest(m, d, abstract, step=start, log=log)[1])
                for m, d in zip(mngrs, run_dirs)]
  if start == 0 and tr.init_from:
    states[0] = _init_from(cfg, tx, states[0], log)
  for d in run_dirs if main else ():
    _truncate_metrics(d / "metrics.jsonl", start)
  if start and not quiet:
    print(f"resuming {run_dirs[0].name}{f' and {k - 1} more members' if k > 1 else ''} from step {start}")

  if k == 1:
    state = states[0]
    if multi:
      state = _to_global(state, NamedSharding(mesh, P()))
    elif mesh is not None:
      state = jax.device_put(state, NamedSharding(mesh, P()))
    multi_step = make_multi_step(cfg, graphdef, tx, mesh)
  else:
    spec = ensemble_spec(k, mesh)
    if multi:
      state = _to_global(jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *states),
                         NamedSharding(mesh, spec))
    else:
      state = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
      if spec == P("data"):
        state = jax.device_put(state, NamedSharding(mesh, spec))
    multi_step = make_multi_step(cfg, graphdef, tx, None, [tasks.member_of(c) for c in cfgs])
  schedules = [make_schedule(c.train) for c in cfgs]
  end = tr.steps if stop_at_step is None else min(stop_at_step, tr.steps)
  label = run_dirs[0].name + (f" +{k - 1} members" if k > 1 else "")
  bar = Progress(total=tr.steps, start=start, enabled=progress, quiet=quiet, label=label,
                 reference=functools.partial(zero_predictor_loss, cfgs[0]))
  t_start = time.perf_counter()
  last_drain = [t_start]
  pending = None  # (first_step, num_steps, metrics) of the call still in flight

  def drain(item) -> None:
    first, n, (loss, gnorm) = item
    loss_SxK = _host(loss).reshape(n, k)
    gnorm_SxK = _host(gnorm).reshape(n, k)
    bad_S, bad_K = np.nonzero(~np.isfinite(loss_SxK))
    if bad_S.size:
      s, j = int(bad_S[0]), int(bad_K[0])
      who = f"{_member_label(cfgs[j], run_dirs[j])}: " if k > 1 else ""
      lr = cfgs[j].train.lr
      raise TrainingError(
          f"{who}loss became {loss_SxK[s, j]} at step {first + s}. Likely cause: the learning "
          f"rate (train.lr={lr}) is too high for this model or clipping is off "
          f"(train.grad_clip={tr.grad_clip}); try --set train.lr={lr / 3:.3g} or "
          f"--set train.grad_clip=1.0. The last good checkpoint in {run_dirs[j] / 'checkpoints'} is kept.")
    now = time.perf_counter()
    rate = n / max(now - last_drain[0], 1e-9)
    last_drain[0] = now
    for j, d in enumerate(run_dirs if main else ()):
      record = {"step": first + n, "loss": float(loss_SxK[:, j].mean()), "loss_last": float(loss_SxK[-1, j]),
                "lr": float(schedules[j](first + n - 1)), "grad_norm": float(gnorm_SxK[:, j].mean()),
                "steps_per_s": rate}
      with open(d / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    bar.update(first + n, {"loss": float(loss_SxK[:, 0].mean())})

  step = start
  while step < end:
    n = min(tr.steps_per_call, end - step)
    state, metrics = multi_step(state, np.int32(step), n)
    # Read the previous call's metrics while this one runs, so dispatch never stalls.
    if pending is not None:
      drain(pending)
    pending = (step, n, metrics)
    step += n
    if step % tr.checkpoint_every == 0 or step == tr.steps:
      drain(pending)  # checks this call's losses are finite before its state is saved
      pending = None
      for j, mngr in enumerate(mngrs):
        member_state = state if k == 1 else jax.tree.map(lambda a, j=j: a[j], state)
        # A finite loss does not make a finite state: Adam's second moment can overflow first,
        # and a checkpoint holding it would diverge again on resume. Never save one.
        bad = nonfinite_leaves(member_state)
        if bad:
          who = f"{_member_label(cfgs[j], run_dirs[j])}: " if k > 1 else ""
          raise TrainingError(
              f"{who}the training state has non-finite values at step {step} ({', '.join(bad[:3])}"
              f"{', ...' if len(bad) > 3 else ''}) although the loss is finite; lower train.lr "
              f"(now {cfgs[j].train.lr}) or train.weight_decay. The last good checkpoint in "
              f"{run_dirs[j] / 'checkpoints'} is kept.")
        mngr.save(step, args=ocp.args.StandardSave(member_state))
        mngr.wait_until_finished()
  if pending is not None:
    drain(pending)
  bar.close()
  if step == tr.steps:
    wall = time.perf_counter() - t_start
    for d in run_dirs if main else ():
      # Training time over every invocation (a resumed run spans several), from the log.
      logged = logged_seconds(read_metrics(d), tr.steps)
      summary = {"steps": tr.steps, "resumed_from": start, "wall_s": wall, "train_s_all_invocations": logged,
                 "steps_per_s": (tr.steps - start) / max(wall, 1e-9), "ensemble_size": k,
                 "device": jax.devices()[0].device_kind, "num_devices": jax.device_count(),
                 **({"num_processes": jax.process_count()} if multi else {})}
      atomic_write_text(d / "done", json.dumps(summary) + "\n")


def _init_from(cfg: Config, tx, state: TrainState, log) -> TrainState:
  """The starting state of a continual run: another run's weights at a chosen step."""
  src = Path(cfg.train.init_from)
  if not (src / "config.json").exists():
    raise TrainingError(f"train.init_from={src} is not a run folder (no config.json); train it first")
  src_cfg = config_lib.from_dict(json.loads((src / "config.json").read_text()))
  _, src_state = _load_state(src, cfg.train.init_from_step or None)
  if jax.tree.structure(src_state.params) != jax.tree.structure(state.params) or any(
      a.shape != b.shape for a, b in zip(jax.tree.leaves(src_state.params), jax.tree.leaves(state.params))):
    raise TrainingError(f"train.init_from={src} holds a model of another shape "
                        f"({config_summary(src_cfg)}); the architecture must match")
  if cfg.train.init_keep_optimizer:
    if jax.tree.structure(src_state.opt_state) != jax.tree.structure(state.opt_state):
      raise TrainingError(f"train.init_keep_optimizer=true but {src} used another optimiser; set it to false")
    return src_state
  log(f"initialised from {src.name} (optimiser state reset)")
  return TrainState(src_state.params, tx.init(src_state.params))


def nonfinite_leaves(tree) -> list[str]:
  """Key paths of the floating-point leaves of `tree` that hold a NaN or an infinity."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [jax.tree_util.keystr(path) for path, leaf in flat
          if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating) and not bool(_host(jnp.all(jnp.isfinite(leaf))))]


def logged_seconds(metrics: list[dict[str, Any]], step: int) -> float:
  """Training wall seconds from step 0 to `step`, summed from a run's log (each line's steps over
  its measured rate, so every invocation's compile time is included, as a user pays it)."""
  total, prev = 0.0, 0
  for rec in metrics:
    if rec["step"] > step:
      break
    total += (rec["step"] - prev) / rec["steps_per_s"]
    prev = rec["step"]
  if prev != step:
    raise ValueError(f"the log has no line at step {step} (last logged step {prev})")
  return total


def read_done(run_dir: str | os.PathLike) -> dict[str, Any]:
  """A finished run's summary, with `train_s`: training wall time over every invocation that
  built it (runs finished before that was logged fall back to their last invocation's)."""
  done = json.loads((Path(run_dir) / "done").read_text())
  done["train_s"] = float(done.get("train_s_all_invocations", done["wall_s"]))
  return done


def train_seconds(run_dir: str | os.PathLike) -> float:
  """Wall time of training this run; an ensemble member's share is its ensemble's time over K."""
  done = read_done(run_dir)
  return done["train_s"] / done.get("ensemble_size", 1)


def read_config(run_dir: str | os.PathLike) -> Config:
  """The config a run folder was trained with."""
  cfg_path = Path(run_dir) / "config.json"
  if not cfg_path.exists():
    raise TrainingError(f"{run_dir} is not a run folder (no config.json); train it first")
  try:
    return config_lib.from_dict(json.loads(cfg_path.read_text()))
  except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError) as err:
    raise TrainingError(f"{cfg_path} is unreadable ({type(err).__name__}: {err}); restore it or retrain the run "
                        f"in a fresh folder") from None


def _load_state(run_dir: Path, step: int | None) -> tuple[Config, TrainState]:
  cfg = read_config(run_dir)
  tx = make_optimizer(cfg.train)
  _, state = init_state(cfg, tx)
  mngr = checkpoints.manager(run_dir, cfg.train.keep_checkpoints)
  try:
    if mngr.latest_step() is None:
      raise TrainingError(f"{run_dir} has no checkpoint; run `icl-lab train` for its preset first")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    got, restored = checkpoints.restore_latest(mngr, run_dir, abstract, step=step)
    if step is None and got < cfg.train.steps and is_done(run_dir):
      # A finished run whose final weights are unreadable must not be evaluated at an older step.
      (run_dir / "done").unlink()
      raise TrainingError(
          f"the final checkpoint of {run_dir} is unreadable (moved to {checkpoints.CORRUPT_DIR}/); rerun "
          f"`icl-lab train` with its config to retrain steps {got + 1}-{cfg.train.steps} from step {got}")
  except checkpoints.CheckpointError as err:
    raise TrainingError(str(err)) from None
  finally:
    mngr.close()
  return cfg, TrainState(*restored)


def kept_steps(run_dir: str | os.PathLike) -> list[int]:
  """The steps whose checkpoints a run folder keeps, oldest first."""
  cfg = read_config(run_dir)
  mngr = checkpoints.manager(Path(run_dir), cfg.train.keep_checkpoints)
  try:
    return sorted(int(s) for s in mngr.all_steps())
  finally:
    mngr.close()


def load_model(run_dir: str | os.PathLike, step: int | None = None) -> tuple[Config, nnx.Module]:
  """Restores a run folder's checkpoint at `step` (default: the newest readable one)."""
  run_dir = Path(run_dir)
  cfg, state = _load_state(run_dir, step)
  graphdef, _ = nnx.split(tasks.get_task(cfg).build_model(cfg, cfg.train.seed))
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
  if t.kind in ("fact_lm", "infusion_lm"):
    f = cfg.facts
    infuse = f" F={f.infuse_exposures}×{f.infuse_persons * f.relations}" if t.kind == "infusion_lm" else ""
    return (f"L{m.layers}/H{m.hidden}/M{m.heads} {m.mlp} {t.kind}{infuse} world={f.world} persons={f.persons} "
            f"V={fact_world.vocab_size(f)} T={fact_world.seq_len(f)} steps={tr.steps} batch={tr.batch_size} "
            f"lr={tr.lr}")
  if t.kind == "token_lm":
    return (f"L{m.layers}/H{m.hidden}/M{m.heads} token_lm {cfg.lm.stream} V={cfg.lm.vocab_size} "
            f"T={cfg.lm.seq_len} steps={tr.steps} batch={tr.batch_size} lr={tr.lr}")
  return (f"L{m.layers}/H{m.hidden}/M{m.heads} d={t.dim} N={t.num_exemplars} σ={t.noise_std} "
          f"τ={t.weight_std} steps={tr.steps} batch={tr.batch_size} lr={tr.lr}")
