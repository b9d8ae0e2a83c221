"""The kg_in_context study: accuracy per query kind, criteria on hand-made results, and the tiny
preset end to end."""

import numpy as np

from icl_lab import cli, studies
from icl_lab.io import read_json
from icl_lab.studies import kg_in_context as kic
from icl_lab.studies.base import RunRequest
from icl_lab.tasks import kg_context as kc


def test_per_kind_counts_hits_of_each_kind():
  correct = np.array([[True, False, True], [True, True, False]])
  kinds = np.array([[0, 0, 3], [2, 0, 3]])
  out = kic.per_kind(correct, kinds)
  assert out == {"inverse": {"hits": 2, "count": 3}, "sibling": {"hits": 0, "count": 0},
                 "grandparent": {"hits": 1, "count": 1}, "uncle": {"hits": 1, "count": 2}}


def _hand_batch(task: kc.ContextTask) -> kc.Batch:
  """One sequence: facts `m0 father m1`, `f0 father m1`, `f1 husband m1`; queries `m1 son ?` (m0),
  `m1 daughter ?` (f0), `m1 wife ?` (f1), then three more `m1 son ?`."""
  n = task.spec.names_per_sex
  m0, m1, f0, f1 = (int(kc.male_name(0)), int(kc.male_name(1)), int(kc.female_name(0, n)),
                    int(kc.female_name(1, n)))
  ids = np.full((1, task.seq_len), kc.PAD, np.int32)
  ids[0, 0] = kc.BOS
  for i, (x, rel, y) in enumerate([(m0, "father", m1), (f0, "father", m1), (f1, "husband", m1)]):
    ids[0, 1 + 3 * i:4 + 3 * i] = (x, kc.relation_token(rel), y)
  pos_Q = task.answer_positions()
  ids[0, pos_Q[0] - 3] = kc.ASK
  queries = [("son", m0), ("daughter", f0), ("wife", f1)] + [("son", m0)] * (task.spec.queries - 3)
  answers = np.zeros((1, task.spec.queries, task.vocab_size), bool)
  for q, (rel, a) in enumerate(queries):
    ids[0, pos_Q[q] - 2:pos_Q[q] + 1] = (m1, kc.relation_token(rel), a)
    answers[0, q, a] = True
  mask = np.zeros(ids.shape, np.float32)
  mask[:, pos_Q] = 1.0
  return kc.Batch(ids, mask, pos_Q, np.zeros((1, task.spec.queries), np.int32), answers)


def test_per_relation_accuracy_and_the_sex_matched_guess_on_a_hand_made_sequence():
  task = kc.ContextTask(kic.SETTINGS["tiny"].spec())
  b = _hand_batch(task)
  assert task.relation_BxQ(b)[0, :3].tolist() == ["son", "daughter", "wife"]
  # m1's son: the only other man named (1); his daughter and wife: one of the two women (1/2).
  np.testing.assert_allclose(task.guess_rate(b)[0, :3], [1.0, 0.5, 0.5])
  # A model that names m0 everywhere: right on every son query, wrong on the daughter and the wife.
  logits_BxTxV = np.zeros((1, task.seq_len - 1, task.vocab_size))
  logits_BxTxV[..., int(kc.male_name(0))] = 1.0
  out = kic.by_relation(task, b, [logits_BxTxV])
  assert out["son"] == {"kind": "inverse", "count": task.spec.queries - 2, "accuracy": 1.0, "guess": 1.0}
  assert out["daughter"]["accuracy"] == 0.0 and out["wife"]["guess"] == 0.5
  assert out["uncle"] == {"kind": "uncle", "count": 0, "accuracy": None, "guess": None}


def _result(inverse=0.95, sibling=0.9, grand=0.7, uncle=0.69):
  acc = {"inverse": inverse, "sibling": sibling, "grandparent": grand, "uncle": uncle}
  return {"final": {"held_out": {k: {"accuracy": v, "count": 100} for k, v in acc.items()}}}


def test_criteria_are_the_issues_thresholds():
  assert [c.met for c in kic.criteria(_result())] == [True, True, True, False]
  assert [c.met for c in kic.criteria(_result(inverse=0.89, uncle=0.7))] == [False, True, True, True]


def test_tiny_preset_end_to_end(tmp_path, capsys):
  assert studies.get("kg_in_context").headline_preset == "cpu"
  paths = studies.run("kg_in_context", RunRequest("tiny", out=tmp_path, runs_dir=tmp_path / "runs"))
  assert {p.name for p in paths} == {"kg_in_context_tiny.json", "kg_in_context_tiny.png", "kg_in_context_tiny.pdf"}
  r = read_json(tmp_path / "kg_in_context_tiny.json")
  s = kic.SETTINGS["tiny"]
  assert len(r["criteria"]) == 4 and r["steps"] == [0, 20, 40]
  counts = sum(r["final"]["held_out"][k]["count"] for k in r["final"]["held_out"])
  assert counts == s.eval_sequences * s.queries and "| kind | relations |" in kic.readme(r)
  assert sum(v["count"] for v in r["by_relation"].values()) == counts and "| relation | kind |" in kic.readme(r)
  assert studies.criteria_of(tmp_path / "kg_in_context_tiny.json") == r["criteria"]
  # The model trained in a run folder under the runs dir; a rerun reuses it and trains nothing.
  (run_dir,) = (tmp_path / "runs").iterdir()
  assert run_dir.name.startswith("kg_in_context-tiny-") and (run_dir / "checkpoints" / "40").is_dir()
  capsys.readouterr()
  studies.run("kg_in_context", RunRequest("tiny", out=tmp_path / "again", runs_dir=tmp_path / "runs"))
  out = capsys.readouterr().out
  assert f"reusing finished run {run_dir}" in out and "step 20:" not in out
  again = read_json(tmp_path / "again" / "kg_in_context_tiny.json")
  assert again["final"] == r["final"] and again["loss_curve"] == r["loss_curve"]


def test_a_diverging_run_stops_with_one_line_naming_the_fix(tmp_path, capsys):
  argv = ["run", "kg_in_context", "--preset", "tiny", "--set", "study.lr=1e30", "--out", str(tmp_path / "out"),
          "--runs-dir", str(tmp_path / "runs")]
  assert cli.main(argv) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert err == ["icl-lab: token-transformer loss is [nan] at step 20: lower the learning rate"]
  assert not (tmp_path / "out").exists()
