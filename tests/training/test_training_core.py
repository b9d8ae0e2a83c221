"""The training core beyond regression: ensembles, a token-level task, init_from, bf16."""

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from icl_lab import tasks
from icl_lab.config import ConfigError, apply_overrides, expand_overrides, get_preset
from icl_lab.tasks import bigram as token_lm
from icl_lab.tasks import next_token, regression
from icl_lab.tasks.regression import predict
from icl_lab.training import train

ENSEMBLE = ["train.steps=60", "train.checkpoint_every=20", "train.steps_per_call=20"]


def _losses(run_dir):
  return [(r["step"], r["loss"], r["loss_last"], r["grad_norm"]) for r in train.read_metrics(run_dir)]


def _params(run_dir, step=None, skip=()):
  _, model = train.load_model(run_dir, step)
  return [np.asarray(v[...]) for path, v in nnx.to_flat_state(nnx.state(model))
          if not any(s in ".".join(map(str, path)) for s in skip)]


@pytest.fixture(scope="module")
def ensemble_runs(tmp_path_factory):
  """Three members differing in seed, σ and lr, trained together, and each trained solo."""
  root = tmp_path_factory.mktemp("ens")
  base = apply_overrides(get_preset("tiny"), ENSEMBLE)
  cfgs = [apply_overrides(base, o) for o in (
      ["train.seed=0"], ["train.seed=1", "train.data_seed=3", "task.noise_std=0.5"],
      ["train.seed=2", "train.lr=3e-3", "task.weight_std=2.0", "train.weight_decay=1e-3"])]
  ens_dirs = train.train_many(cfgs, root / "ens", progress=False, quiet=True)
  solo_dirs = [train.train(c, root / "solo", progress=False, quiet=True) for c in cfgs]
  return cfgs, ens_dirs, solo_dirs


def test_ensemble_member_equals_its_solo_run(ensemble_runs):
  cfgs, ens_dirs, solo_dirs = ensemble_runs
  for e, s in zip(ens_dirs, solo_dirs):
    assert e.name == s.name  # same config, same run folder name
    le, ls = np.asarray(_losses(e)), np.asarray(_losses(s))
    assert le.shape == ls.shape == (3, 4)
    # vmapped kernels may sum in another order than the solo ones: equal to float32 rounding.
    np.testing.assert_allclose(le, ls, rtol=2e-5)
    # Key biases get an exactly-zero gradient (softmax ignores a shift shared by all keys), so
    # Adam turns their rounding noise into O(lr) steps: they are excluded. Elsewhere Adam still amplifies
    # rounding where a gradient is near zero, hence 3e-4 of the largest weight (a wrong step moves ~lr = 1e-2).
    for pe, ps in zip(_params(e, skip=("k.bias",)), _params(s, skip=("k.bias",))):
      np.testing.assert_allclose(pe, ps, rtol=0, atol=3e-4 * np.abs(ps).max())
    _, me = train.load_model(e)
    _, ms = train.load_model(s)
    b = regression.sample_batch(cfgs[0].task, 9, 0, 16)
    np.testing.assert_allclose(predict(me, b.xs_BxNxD, b.ys_BxN), predict(ms, b.xs_BxNxD, b.ys_BxN),
                               rtol=1e-3, atol=1e-4)
  # The members really differ (own seed, data stream, σ, lr).
  first = [_losses(d)[-1][1] for d in ens_dirs]
  assert len(set(first)) == 3


def test_ensemble_resume_is_exact(ensemble_runs, tmp_path):
  cfgs, ens_dirs, _ = ensemble_runs
  train.train_many(cfgs, tmp_path, progress=False, quiet=True, stop_at_step=40)
  assert not any((train.run_dir_for(c, tmp_path) / "done").exists() for c in cfgs)
  dirs = train.train_many(cfgs, tmp_path, progress=False, quiet=True)
  for d, ref in zip(dirs, ens_dirs):
    assert _losses(d) == _losses(ref)  # bit for bit
    assert train.read_done(d)["resumed_from"] == 40 and train.read_done(d)["ensemble_size"] == 3


def test_ensemble_refuses_members_that_differ_in_shape():
  base = apply_overrides(get_preset("tiny"), ENSEMBLE)
  with pytest.raises(ConfigError, match=r"differ in model.layers"):
    train.check_ensemble([base, apply_overrides(base, ["model.layers=1"])])
  with pytest.raises(ConfigError, match=r"same config"):
    train.check_ensemble([base, base])


def test_comma_values_expand_to_an_ensemble_and_other_keys_refuse_them():
  from icl_lab.tasks.base import ENSEMBLE_KEYS
  cfgs = expand_overrides(get_preset("tiny"), ["train.seed=0,1", "train.lr=1e-3,2e-3", "model.layers=1"],
                          ENSEMBLE_KEYS)
  assert [(c.train.seed, c.train.lr) for c in cfgs] == [(0, 1e-3), (0, 2e-3), (1, 1e-3), (1, 2e-3)]
  assert all(c.model.layers == 1 for c in cfgs)
  with pytest.raises(ConfigError, match=r"model.layers takes one value"):
    expand_overrides(get_preset("tiny"), ["model.layers=1,2"], ENSEMBLE_KEYS)


def test_nan_in_one_member_names_it(tmp_path):
  base = apply_overrides(get_preset("tiny"), ENSEMBLE + ["train.grad_clip=0", "train.warmup_frac=0"])
  cfgs = [base, apply_overrides(base, ["train.lr=1e30", "train.seed=1"])]
  with pytest.raises(train.TrainingError, match=r"member tiny-\w+ \(seed=1, .*lr=1e\+30.*loss became"):
    train.train_many(cfgs, tmp_path, progress=False, quiet=True)


def test_token_lm_trains_through_the_same_loop_and_its_loss_falls(tmp_path):
  cfg = get_preset("tiny_lm")
  run_dir = train.train(cfg, tmp_path, progress=False, quiet=True)
  losses = [r["loss"] for r in train.read_metrics(run_dir)]
  # The untrained model knows nothing of the table: it is at least log V − 0.3 nats per token, far above the
  # stream's entropy rate log(branching).
  init = tasks.get_task(cfg).build_model(cfg, cfg.train.seed)
  batch = token_lm.sample_bigram(cfg.lm, 0, 0, 64)
  first = next_token.masked_cross_entropy(init(batch.ids_BxT[:, :-1]), batch.ids_BxT[:, 1:], batch.mask_BxT[:, 1:])
  assert float(first) > np.log(cfg.lm.vocab_size) - 0.3
  # Training ends within 0.25 nats of the stream's entropy rate, log(branching).
  assert losses[-1] < token_lm.best_loss(cfg.lm) + 0.25, losses
  _, model = train.load_model(run_dir)
  batch = token_lm.sample_bigram(cfg.lm, 7, 0, 4)
  assert model(batch.ids_BxT[:, :-1]).shape == (4, cfg.lm.seq_len - 1, cfg.lm.vocab_size)


def test_bigram_stream_is_a_pure_function_of_seed_and_step_and_follows_its_table():
  lm = get_preset("tiny_lm").lm
  a, b = token_lm.sample_bigram(lm, 0, 5, 8), token_lm.sample_bigram(lm, 0, 5, 8)
  np.testing.assert_array_equal(a.ids_BxT, b.ids_BxT)
  assert not np.array_equal(a.ids_BxT, token_lm.sample_bigram(lm, 0, 6, 8).ids_BxT)
  table = np.asarray(token_lm.successors_VxK(lm, 0))
  ids = np.asarray(a.ids_BxT)
  assert all(ids[i, t + 1] in table[ids[i, t]] for i in range(8) for t in range(lm.seq_len - 1))


def test_masked_cross_entropy_matches_a_hand_computation():
  logits = np.log(np.array([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]], np.float32))
  targets = np.array([[0, 1]])
  ce = next_token.masked_cross_entropy(logits, targets, np.array([[1.0, 0.0]], np.float32))
  assert float(ce) == pytest.approx(np.log(2), rel=1e-6)
  ce = next_token.masked_cross_entropy(logits, targets, np.array([[1.0, 1.0]], np.float32))
  assert float(ce) == pytest.approx((np.log(2) - np.log(0.8)) / 2, rel=1e-6)


def _adam(opt_state):
  """(count, mu, nu) of the ScaleByAdamState inside the (clip, adamw) chain, moments as float64."""
  (adam,) = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
             if isinstance(s, optax.ScaleByAdamState)]
  return int(adam.count), _f64(adam.mu), _f64(adam.nu)


def _f64(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


@pytest.fixture(scope="module")
def init_from_source(tmp_path_factory):
  """A 60-step source run with checkpoints at steps 20, 40 and 60."""
  root = tmp_path_factory.mktemp("init_from")
  return root, train.train(apply_overrides(get_preset("tiny"), ENSEMBLE), root, progress=False, quiet=True)


@pytest.mark.parametrize("keep", [False, True])
def test_init_from_a_chosen_step_keeps_or_resets_the_adam_state(init_from_source, keep):
  root, src = init_from_source
  src_cfg = train.read_config(src)
  # One step at a constant lr (no warmup, end_lr_frac = 1), so a kept schedule count (20) and a reset
  # one (0) give the same lr and only the Adam moments tell the two apart.
  cont = apply_overrides(src_cfg, [
      f"train.init_from={src}", "train.init_from_step=20", "train.steps=1", "train.steps_per_call=1",
      "train.checkpoint_every=1", "train.data_seed=5", "train.warmup_frac=0", "train.end_lr_frac=1.0",
      "train.weight_decay=1e-2", f"train.init_keep_optimizer={str(keep).lower()}"])
  assert cont.hash() != src_cfg.hash()
  run = train.train(cont, root, progress=False, quiet=True)
  _, start = train._load_state(src, 20)
  _, end = train._load_state(run, 1)
  # Step 20 is not the latest checkpoint: starting from step 60 would miss every prediction below.
  assert not all(np.array_equal(a, b) for a, b in zip(_params(src, 20), _params(src, 60)))

  # The gradient of the continual run's first batch at the step-20 weights, clipped by hand.
  tr, task, member = cont.train, tasks.get_task(cont), tasks.member_of(cont)
  graphdef, _ = train.init_state(cont, train.make_optimizer(tr))
  batch = task.sample(cont, member, 0, tr.batch_size)
  g = _f64(jax.grad(lambda p: task.loss(nnx.merge(graphdef, p), batch, cont, member, 0))(start.params))
  norm = np.sqrt(sum(np.sum(a**2) for a in jax.tree.leaves(g)))
  g = jax.tree.map(lambda a: a * min(1.0, tr.grad_clip / norm), g)

  # Adam's moments after one step, from fresh ones (count 0, zeros) and from the source's at step 20.
  count0, mu0, nu0 = _adam(start.opt_state)
  assert count0 == 20
  fresh = (0, jax.tree.map(np.zeros_like, mu0), jax.tree.map(np.zeros_like, nu0))

  def one_step(count, mu, nu):
    return (count + 1, jax.tree.map(lambda m, a: tr.b1 * m + (1 - tr.b1) * a, mu, g),
            jax.tree.map(lambda v, a: tr.b2 * v + (1 - tr.b2) * a**2, nu, g))

  kept, reset = one_step(count0, mu0, nu0), one_step(*fresh)
  want, other = (kept, reset) if keep else (reset, kept)
  got = _adam(end.opt_state)
  assert got[0] == want[0]  # 21 when kept, 1 when reset
  for w_tree, a_tree in zip(want[1:], got[1:]):
    scale = max(np.abs(w).max() for w in jax.tree.leaves(w_tree))  # one scale: key biases' moments are ~0
    for w, a in zip(jax.tree.leaves(w_tree), jax.tree.leaves(a_tree)):
      np.testing.assert_allclose(a, w, rtol=1e-4, atol=1e-5 * scale)

  # AdamW moves p by −lr·(m̂ / (√v̂ + ε) + wd·p), m̂ and v̂ bias-corrected at the new count.
  def stepped(count, mu, nu):
    return jax.tree.map(
        lambda p, m, v: p - tr.lr * (m / (1 - tr.b1**count) / (np.sqrt(v / (1 - tr.b2**count)) + tr.eps)
                                     + tr.weight_decay * p), _f64(start.params), mu, nu)

  for w, a in zip(jax.tree.leaves(stepped(*got)), jax.tree.leaves(_f64(end.params))):
    np.testing.assert_allclose(a, w, rtol=0, atol=1e-3 * tr.lr)
  # The other choice predicts a step O(lr) away (a fresh first step is ≈ lr·sign(g), a kept one is not).
  gap = max(np.abs(w - a).max() for w, a in zip(jax.tree.leaves(stepped(*other)), jax.tree.leaves(_f64(end.params))))
  assert gap > 0.1 * tr.lr
  with pytest.raises(train.TrainingError, match=r"step 7.*available"):
    train.load_model(src, 7)


def test_bf16_tracks_float32(tmp_path):
  base = apply_overrides(get_preset("tiny"), ["train.steps=200"])
  f32 = [r["loss"] for r in train.read_metrics(train.train(base, tmp_path, progress=False, quiet=True))]
  bf16_cfg = apply_overrides(base, ["train.compute_dtype=bfloat16"])
  bf16 = [r["loss"] for r in train.read_metrics(train.train(bf16_cfg, tmp_path, progress=False, quiet=True))]
  assert bf16 != f32  # it really computed in another precision
  np.testing.assert_allclose(bf16, f32, rtol=0.1)
  _, model = train.load_model(train.run_dir_for(bf16_cfg, tmp_path))
  assert model.blocks[0].mlp.up.kernel[...].dtype == np.float32  # parameters stay float32
