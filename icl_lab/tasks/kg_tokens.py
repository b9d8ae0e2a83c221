"""A family graph's facts as token sequences: each sequence is BOS then `per_seq` triples `h r t`,
and the next-token loss counts on the tails only (Baek, Li and Tegmark 2024, design (b)).

Tokens: BOS (0), one per relation (1..R), one per entity (R + 1 + e). The
train/test split is `family_graph.split`'s, over queries (h, r): a training sequence draws its
triples uniformly from the training queries' triples, so a query with several answers trains on
each of them in turn (in expectation the uniform target over its answers). By default the
read-out is tied to the token embedding (`models.tied`), as the link predictors'. A test query is read
as `BOS h r` and answered by the top-1 entity token at the relation's position.

Not a `task.kind`: the graph and its split are not part of a `Config`, so the study trains it in
memory (`icl_lab.training.tokens`); the loss and the model are `NextTokenTask`'s.
"""

from __future__ import annotations

import numpy as np

from icl_lab.config import Config
from icl_lab.tasks import family_graph as fg
from icl_lab.tasks.next_token import NextTokenTask, TokenBatch

BOS = 0
_STREAM = 31  # the triples' draw, disjoint from the other numpy streams


def relation_token(r):
  return 1 + np.asarray(r)


def entity_token(e, num_relations: int = len(fg.RELATIONS)):
  return 1 + num_relations + np.asarray(e)


class TripleTask(NextTokenTask):
  """Sequences of training triples of `g` (those of the queries in train_Q)."""

  def __init__(self, g: fg.Graph, train_Q: np.ndarray, per_seq: int = 1, tied: bool = True):
    if per_seq < 1:
      raise ValueError(f"per_seq={per_seq} must be ≥ 1")
    self.g, self.train_Q, self.per_seq, self.tied = g, np.asarray(train_Q, bool), per_seq, tied
    q_N, e_N = np.nonzero(g.answers_QxE & self.train_Q[:, None])
    # The training triples as token ids: (h, r, t) per row.
    self.triples_Nx3 = np.stack([entity_token(g.heads_Q[q_N], g.num_relations),
                                 relation_token(g.rels_Q[q_N]), entity_token(e_N, g.num_relations)], 1)

  @property
  def vocab_size(self) -> int:
    return 1 + self.g.num_relations + self.g.num_entities

  def stream_shape(self, cfg: Config) -> tuple[int, int]:
    return self.vocab_size, 1 + 3 * self.per_seq

  def build_model(self, cfg: Config, seed: int):
    """With `tied`, logits score the embeddings (a TiedTokenTransformer), as the link predictors do."""
    if not self.tied:
      return super().build_model(cfg, seed)
    from flax import nnx

    from icl_lab.models.tied import TiedTokenTransformer
    from icl_lab.tasks.base import compute_dtype

    vocab, length = self.stream_shape(cfg)
    return TiedTokenTransformer(cfg.model, vocab, length - 1, rngs=nnx.Rngs(seed), dtype=compute_dtype(cfg))

  def sample_host(self, seed: int, step: int, batch_size: int) -> TokenBatch:
    """B sequences at `step`: a pure function of (seed, step)."""
    rng = np.random.default_rng((seed, _STREAM, step))
    pick_BxS = rng.integers(len(self.triples_Nx3), size=(batch_size, self.per_seq))
    ids_BxT = np.concatenate([np.full((batch_size, 1), BOS), self.triples_Nx3[pick_BxS].reshape(batch_size, -1)], 1)
    mask_BxT = np.zeros(ids_BxT.shape, np.float32)
    mask_BxT[:, 3::3] = 1.0  # the tails: positions 3, 6, ...
    return TokenBatch(ids_BxT.astype(np.int32), mask_BxT)

  def query_ids(self) -> np.ndarray:
    """ids_Qx3: `BOS h r` for every query of the graph (train and test)."""
    g = self.g
    return np.stack([np.full(g.num_queries, BOS), entity_token(g.heads_Q, g.num_relations),
                     relation_token(g.rels_Q)], 1).astype(np.int32)

  def correct(self, logits_QxV: np.ndarray) -> np.ndarray:
    """correct_Q: the top-1 entity token (entities only) is one of the query's answers."""
    first = 1 + self.g.num_relations
    top_Q = np.asarray(logits_QxV)[:, first:first + self.g.num_entities].argmax(-1)
    return self.g.answers_QxE[np.arange(self.g.num_queries), top_Q]
