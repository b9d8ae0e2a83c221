"""Bad configs are rejected before any work, with a one-line error naming the key."""

import dataclasses
import subprocess
import sys

import pytest

from icl_lab import config
from icl_lab.config import ConfigError, FactConfig, apply_overrides, get_preset


def test_presets_are_valid_and_paper_matches_the_study():
  for name in ("tiny", "quick", "paper"):
    config.validate(get_preset(name))
  paper = get_preset("paper")
  assert (paper.model.layers, paper.model.hidden, paper.model.heads) == (16, 512, 4)
  assert (paper.task.dim, paper.task.num_exemplars) == (8, 40)
  assert (paper.train.batch_size, paper.train.steps, paper.train.lr) == (64, 500_000, 1e-4)
  assert paper.train.warmup_frac == 0.2


def test_overrides_parse_by_type_and_change_the_hash():
  base = get_preset("tiny")
  cfg = apply_overrides(base, ["model.layers=3", "task.noise_std=0.25", "task.token_format=garg"])
  assert cfg.model.layers == 3 and cfg.task.noise_std == 0.25 and cfg.task.token_format == "garg"
  assert cfg.hash() != base.hash()
  # Bookkeeping does not change the run's identity.
  assert apply_overrides(base, ["train.checkpoint_every=200"]).hash() == base.hash()


@pytest.mark.parametrize("override, match", [
    ("model.layrs=2", r"unknown key 'model.layrs'.*accepted keys in model: layers"),
    ("modle.layers=2", r"unknown key 'modle.layers'"),
    ("model.layers=two", r"model.layers='two' is not an int"),
    ("task.noise_std=abc", r"task.noise_std='abc' is not a float"),
    ("task.dim=0", r"task.dim=0 must be a positive int"),
    ("task.dim=-3", r"task.dim=-3 must be a positive int"),
    ("model.heads=3", r"model.hidden=32 must be divisible by model.heads=3"),
    ("task.noise_std=-0.1", r"task.noise_std=-0.1 must be >= 0"),
    ("task.token_format=bert", r"task.token_format='bert' is not accepted; accepted values: paper, garg"),
    ("train.lr=0", r"train.lr=0.0 must be > 0"),
    ("layers", r"must look like section.key=value"),
])
def test_bad_overrides_name_the_key(override, match):
  with pytest.raises(ConfigError, match=match):
    apply_overrides(get_preset("tiny"), [override])


def test_curriculum_must_end_inside_the_run():
  quick = get_preset("quick")  # a 2 -> 8 dims curriculum
  c = quick.task.curriculum_steps
  assert quick.task.curriculum_start_dim > 0 and 0 < c < quick.train.steps
  with pytest.raises(ConfigError, match=rf"task.curriculum_steps={c} must be below train.steps={c}"):
    apply_overrides(quick, [f"train.steps={c}"])
  assert apply_overrides(quick, [f"train.steps={c}", f"task.curriculum_steps={c // 2}"]).train.steps == c
  assert apply_overrides(quick, [f"train.steps={c}", "task.curriculum_start_dim=0"]).train.steps == c


def test_unknown_preset_lists_the_accepted_ones():
  with pytest.raises(ConfigError, match=r"unknown preset 'huge'; accepted: cpu, gpu, paper, quick, tiny"):
    get_preset("huge")


def test_batch_must_divide_over_devices():
  with pytest.raises(ConfigError, match=r"train.batch_size=128 is not divisible by the 3 visible devices"):
    config.validate(get_preset("tiny"), num_devices=3)


def test_cli_rejects_bad_config_in_one_line_before_work(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "icl_lab.cli", "train", "--preset", "tiny", "--set", "model.heads=5",
       "--runs-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "icl-lab: config error: model.hidden=32 must be divisible by model.heads=5"]
  assert not any(tmp_path.iterdir())  # nothing was started


def test_config_round_trips_through_json():
  cfg = apply_overrides(get_preset("quick"), ["task.noise_std=0.5"])
  assert config.from_dict(cfg.to_dict()) == cfg


def test_person_draw_keeps_old_run_hashes_at_its_default():
  from icl_lab.studies import knowledge_entropy

  ke_quick = knowledge_entropy.PRETRAIN["quick"]
  # The knowledge-entropy quick preset's pretraining run folder
  # (experiments/knowledge_entropy_onetoken/knowledge_entropy_decay.json), hashed before
  # facts.person_draw existed. Its facts section differs from the default, so the new field would
  # enter its hash unless it is dropped at its default.
  assert ke_quick.facts != FactConfig() and ke_quick.hash() == "c03f1f9ed3"
  assert get_preset("quick").hash() == "c803089acf"  # default facts: the whole section is dropped
  inverse = apply_overrides(ke_quick, ["facts.person_draw=inverse_cdf"])
  assert inverse.facts.person_draw == "inverse_cdf" and inverse.hash() != ke_quick.hash()
  assert apply_overrides(inverse, ["facts.person_draw=categorical"]).hash() == ke_quick.hash()
  with pytest.raises(ConfigError, match=r"facts.person_draw='gumbel' is not accepted; accepted values: categorical, "
                                        r"inverse_cdf"):
    apply_overrides(ke_quick, ["facts.person_draw=gumbel"])
  bad = dataclasses.replace(ke_quick, facts=dataclasses.replace(ke_quick.facts, person_draw="gumbel"))
  with pytest.raises(ValueError, match=r"^facts.person_draw='gumbel' must be 'categorical' or 'inverse_cdf'$"):
    config.validate(bad)


def test_new_train_fields_keep_old_run_hashes_at_their_defaults():
  quick = get_preset("quick")
  # The quick preset's run folder name, as committed before train.eps and train.loss_weighting.
  assert quick.hash() == "c803089acf"
  assert apply_overrides(quick, ["train.eps=1e-9"]).hash() != quick.hash()
  assert apply_overrides(quick, ["train.loss_weighting=excess"]).hash() != quick.hash()
  with pytest.raises(ConfigError, match=r"train.eps=0.0 must be > 0"):
    apply_overrides(quick, ["train.eps=0"])
