"""The training core beyond regression: ensembles, a token-level task, init_from, bf16."""

import numpy as np
import pytest
from flax import nnx

from icl_lab import tasks, token_lm, train
from icl_lab.config import ConfigError, apply_overrides, expand_overrides, get_preset
from icl_lab.model import predict

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
    b = tasks.sample_batch(cfgs[0].task, 9, 0, 16)
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
  from icl_lab.task_api import ENSEMBLE_KEYS
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
  init = train.task_api.get_task(cfg).build_model(cfg, cfg.train.seed)
  batch = token_lm.sample_bigram(cfg.lm, 0, 0, 64)
  first = token_lm.masked_cross_entropy(init(batch.ids_BxT[:, :-1]), batch.ids_BxT[:, 1:], batch.mask_BxT[:, 1:])
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
  ce = token_lm.masked_cross_entropy(logits, targets, np.array([[1.0, 0.0]], np.float32))
  assert float(ce) == pytest.approx(np.log(2), rel=1e-6)
  ce = token_lm.masked_cross_entropy(logits, targets, np.array([[1.0, 1.0]], np.float32))
  assert float(ce) == pytest.approx((np.log(2) - np.log(0.8)) / 2, rel=1e-6)


def test_init_from_a_chosen_step_resets_the_optimizer(tmp_path):
  src_cfg = apply_overrides(get_preset("tiny"), ENSEMBLE)
  src = train.train(src_cfg, tmp_path, progress=False, quiet=True)
  assert (src / "checkpoints" / "20").exists()
  cont = apply_overrides(src_cfg, [f"train.init_from={src}", "train.init_from_step=20", "train.steps=20",
                                   "train.data_seed=5"])
  assert cont.hash() != src_cfg.hash()
  # Zero learning rate: the continual run must end exactly at its starting weights.
  frozen = apply_overrides(cont, ["train.lr=1e-30"])
  run = train.train(frozen, tmp_path, progress=False, quiet=True)
  for a, b in zip(_params(run), _params(src, 20)):
    np.testing.assert_allclose(a, b, atol=1e-12)
  assert not all(np.array_equal(a, b) for a, b in zip(_params(src, 20), _params(src, 60)))
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
