"""The kg_stitching study: stitches against ground truth, criteria on hand-made results, and the tiny
preset end to end."""

import types

import jax.numpy as jnp
import numpy as np
import pytest

from icl_lab import studies
from icl_lab.io import read_json
from icl_lab.studies import kg_stitching as ks
from icl_lab.studies import kg_universality as ku
from icl_lab.studies.base import RunRequest
from icl_lab.tasks import family_graph as fg
from icl_lab.training.link import build, correct


def _trained_like(g, s, width, wd, seed, entity_ExD=None):
  """A Model around one untrained MLPLink (optionally with given embeddings), answering as it does."""
  model = build(g, ku.spec(s, width), seed)
  if entity_ExD is not None:
    model.entity.set_value(jnp.asarray(entity_ExD, jnp.float32))
  correct_Q = np.asarray(correct(model(jnp.asarray(g.heads_Q), jnp.asarray(g.rels_Q)), g.answers_QxE))
  test_Q = ~fg.split(g, s.phi, s.split_seed)
  ens = types.SimpleNamespace(params_K={"entity": np.asarray(model.entity[...])[None]}, model=lambda k: model,
                              test_KxQ=test_Q[None], correct_KxQ=correct_Q[None])
  return ku.Model(width, wd, seed, 1.0, float(correct_Q[test_Q].mean()), ens, 0)


def test_affine_copy_stitches_exactly_and_random_donors_do_not():
  s = ks.SETTINGS["tiny"]
  g = ku.forest_graph(s)
  receiver = _trained_like(g, s, 16, 1.0, 0)
  rng = np.random.default_rng(0)
  # A generalising donor whose embeddings are an exact affine image of the receiver's.
  m_DxD = rng.normal(size=(s.dim, s.dim))
  copy = _trained_like(g, s, 32, 1.0, 1, (receiver.embeddings() - 0.3) @ np.linalg.inv(m_DxD))
  rows = ks.stitch(g, [receiver, copy], s)
  kinds = {r["kind"]: r for r in rows if r["receiver"]["seed"] == 0}
  assert set(kinds) == {"self", "generalising", "random"}
  assert kinds["self"]["stitched"] == kinds["self"]["own"]
  assert kinds["generalising"]["stitched"] == pytest.approx(kinds["generalising"]["own"])
  assert kinds["random"]["donor"]["untrained"] and kinds["random"]["queries"] > 0
  # Query by query, over every query: the map from the study's fitting entities recovers the receiver.
  fit_idx, _ = ku.entity_split(g.num_entities, s)
  w_DxD, b_D = ks.rep.stitch_map(copy.embeddings(), receiver.embeddings(), fit_idx)
  stitched_Q = ks.rep.stitched_correct(receiver.ens.model(0), copy.embeddings(), w_DxD, b_D, g)
  own_Q = np.asarray(correct(receiver.ens.model(0)(jnp.asarray(g.heads_Q), jnp.asarray(g.rels_Q)), g.answers_QxE))
  assert (stitched_Q == own_Q).all()


def _donors(gen=0.9, own=0.9, rand=0.6, memo=0.65):
  row = lambda stitched: {"pairs": 4, "stitched": stitched, "own": own, "ratio": stitched / own}
  return {"donors": {"self": row(own), "generalising": row(gen), "random": row(rand), "memorising": row(memo)}}


def test_criteria_met_and_missed_at_their_thresholds():
  assert [c.met for c in ks.criteria(_donors())] == [True, True, True]
  assert [c.met for c in ks.criteria(_donors(gen=0.81, rand=0.7, memo=0.5))] == [True, True, True]
  crit = ks.criteria(_donors(gen=0.8, rand=0.71, memo=0.75))
  assert [c.met for c in crit] == [False, False, False]
  assert crit[1].value == pytest.approx(0.19)


def test_tiny_preset_end_to_end(tmp_path):
  assert studies.get("kg_stitching").headline_preset == "quick"
  paths = studies.run("kg_stitching", RunRequest("tiny", out=tmp_path))
  assert {p.name for p in paths} == {"kg_stitching_tiny.json", "kg_stitching_tiny.png", "kg_stitching_tiny.pdf"}
  r = read_json(tmp_path / "kg_stitching_tiny.json")
  assert set(r["donors"]) == set(ks.DONORS) and len(r["criteria"]) == 3
  selfs = [p for p in r["stitches"] if p["kind"] == "self"]
  assert len(selfs) == 4 and all(p["stitched"] == pytest.approx(p["own"]) for p in selfs)
  assert "| donor | pairs |" in ks.readme(r)
  assert studies.criteria_of(tmp_path / "kg_stitching_tiny.json") == r["criteria"]


def test_bad_settings_fail_as_one_line_errors(tmp_path, capsys):
  from icl_lab import cli

  assert cli.main(["run", "kg_stitching", "--out", str(tmp_path), "--preset", "tiny", "--set", "study.seeds=3"]) == 2
  err = capsys.readouterr().err
  assert "need two values each" in err and len(err.strip().splitlines()) == 1
