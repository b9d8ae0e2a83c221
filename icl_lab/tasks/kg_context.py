"""In-context kinship reasoning (Baek, Li and Tegmark 2024, design (c)): each sequence lists the
facts of a freshly drawn small family under random name tokens, then asks queries whose answers
must be inferred from those facts.

A sequence is `BOS facts… PAD… ASK queries…`. The facts are triples `x father y`, `x mother y`
(y is x's parent) and `w husband h`, in random order, padded to the pool's largest family so
every query sits at a fixed position. No entity has a fixed meaning: each sequence names its
people by a fresh random draw from a male and a female pool of name tokens (the pools carry sex,
as names do, so a query such as `x son ?` is answerable), and the same structure is never seen
twice under the same names. A query `x r a` asks for one answer a of relation r; the loss counts
on a only, and a prediction is correct when the top-1 token (over the whole vocabulary) is any of
x's r. Query kinds (none is listed as a fact):

- inverse: son, daughter (of a parent fact), wife (of a husband fact);
- sibling: brother, sister (a shared parent: two facts);
- grandparent: grandfather, grandmother (two parent facts);
- uncle: uncle, aunt (a parent's sibling or that sibling's spouse: three or four facts).

Families come from `family_graph.forest`; training and held-out families are drawn from disjoint
forest seeds, and every batch is a pure function of (seed, step).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from icl_lab.config import Config
from icl_lab.tasks import family_graph as fg
from icl_lab.tasks.next_token import NextTokenTask, TokenBatch

PAD, BOS, ASK = 0, 1, 2
RELATIONS = ("father", "mother", "husband", "wife", "son", "daughter", "brother", "sister", "grandfather",
             "grandmother", "uncle", "aunt")
FACT_RELATIONS = ("father", "mother", "husband")
KINDS = {"inverse": ("son", "daughter", "wife"), "sibling": ("brother", "sister"),
         "grandparent": ("grandfather", "grandmother"), "uncle": ("uncle", "aunt")}
KIND_NAMES = tuple(KINDS)
FIRST_REL = 3
_STREAM = 32  # the sequences' draw, disjoint from the other numpy streams
_HELD_OUT_SEED = 1_000_000  # held-out families' forest seeds start here


@dataclasses.dataclass(frozen=True)
class ContextSpec:
  founders: int = 1  # each family: forest(founders, generations, seed, max_children)
  generations: int = 2
  max_children: int = 3
  names_per_sex: int = 24  # the male and the female pool of name tokens
  queries: int = 6  # per sequence
  families: int = 2000  # training pool (forest seeds 0..families-1); held-out seeds are disjoint


def relation_token(name: str) -> int:
  return FIRST_REL + RELATIONS.index(name)


def male_name(i):
  return FIRST_REL + len(RELATIONS) + np.asarray(i)


def female_name(i, names_per_sex: int):
  return FIRST_REL + len(RELATIONS) + names_per_sex + np.asarray(i)


@dataclasses.dataclass(frozen=True)
class Structure:
  """One family with its people as indices: sex, facts (x, relation, y) and queries per kind,
  each query (x, relation, answers)."""

  male: tuple[bool, ...]
  facts: tuple[tuple[int, str, int], ...]
  queries: dict[str, tuple[tuple[int, str, frozenset[int]], ...]]


def structure(f: fg.Family) -> Structure:
  t = fg.tails(f)
  rel = lambda x, name: t.get((x, fg.REL_INDEX[name]), frozenset())
  n = f.size
  male = tuple(s == "m" for s in f.sex)
  facts = [(x, name, y) for x in range(n) for name in FACT_RELATIONS for y in sorted(rel(x, name))
           if not (name == "husband" and male[x])]
  parents = [rel(x, "father") | rel(x, "mother") for x in range(n)]
  grand = [frozenset(g for p in parents[x] for g in parents[p]) for x in range(n)]
  answers = {name: [rel(x, name) for x in range(n)] for name in ("son", "daughter", "wife", "brother", "sister",
                                                                 "uncle", "aunt")}
  answers["grandfather"] = [frozenset(g for g in grand[x] if male[g]) for x in range(n)]
  answers["grandmother"] = [frozenset(g for g in grand[x] if not male[g]) for x in range(n)]
  queries = {kind: tuple((x, name, answers[name][x]) for name in names for x in range(n) if answers[name][x])
             for kind, names in KINDS.items()}
  return Structure(male, tuple(facts), queries)


@functools.lru_cache(maxsize=8)
def pool(spec: ContextSpec, held_out: bool) -> tuple[Structure, ...]:
  """The training families (forest seeds 0..families-1) or as many held-out ones."""
  start = _HELD_OUT_SEED if held_out else 0
  return tuple(structure(fg.forest(spec.founders, spec.generations, start + i, spec.max_children))
               for i in range(spec.families))


@dataclasses.dataclass(frozen=True)
class Batch:
  """Sequences with what evaluation needs: each query's kind and its answers' tokens."""

  ids_BxT: np.ndarray
  mask_BxT: np.ndarray  # 1 at the answer tokens
  answer_pos_Q: np.ndarray  # index in ids of each query's answer token
  kind_BxQ: np.ndarray  # index into KIND_NAMES
  answers_BxQxV: np.ndarray  # bool: the tokens that answer the query correctly

  def tokens(self) -> TokenBatch:
    return TokenBatch(self.ids_BxT, self.mask_BxT)


class ContextTask(NextTokenTask):
  """The in-context family task over a training pool; `sample_host` draws training batches,
  `batch(..., held_out=True)` draws from the held-out families."""

  def __init__(self, spec: ContextSpec):
    self.spec = spec
    biggest = max(len(s.facts) for held in (False, True) for s in pool(spec, held))
    people = max(len(s.male) for held in (False, True) for s in pool(spec, held))
    if people > spec.names_per_sex:
      raise ValueError(f"a family of {people} people needs names_per_sex ≥ {people} (got {spec.names_per_sex})")
    self.max_facts = biggest

  @property
  def vocab_size(self) -> int:
    return FIRST_REL + len(RELATIONS) + 2 * self.spec.names_per_sex

  @property
  def seq_len(self) -> int:
    return 1 + 3 * self.max_facts + 1 + 3 * self.spec.queries

  def stream_shape(self, cfg: Config) -> tuple[int, int]:
    return self.vocab_size, self.seq_len

  def answer_positions(self) -> np.ndarray:
    base = 2 + 3 * self.max_facts
    return base + 3 * np.arange(self.spec.queries) + 2

  def batch(self, seed: int, step: int, batch_size: int, held_out: bool = False) -> Batch:
    """B sequences: a pure function of (seed, step, held_out)."""
    rng = np.random.default_rng((seed, _STREAM, step, int(held_out)))
    fams = pool(self.spec, held_out)
    ids = np.full((batch_size, self.seq_len), PAD, np.int32)
    kind_BxQ = np.zeros((batch_size, self.spec.queries), np.int32)
    answers = np.zeros((batch_size, self.spec.queries, self.vocab_size), bool)
    pos_Q = self.answer_positions()
    for b in range(batch_size):
      s = fams[rng.integers(len(fams))]
      name_P = self.names(s, rng)
      ids[b, 0] = BOS
      for i, j in enumerate(rng.permutation(len(s.facts))):
        x, rel, y = s.facts[j]
        ids[b, 1 + 3 * i:4 + 3 * i] = (name_P[x], relation_token(rel), name_P[y])
      ids[b, pos_Q[0] - 3] = ASK
      kinds = [k for k in KIND_NAMES if s.queries[k]]
      for q in range(self.spec.queries):
        kind = kinds[rng.integers(len(kinds))]
        x, rel, ans = s.queries[kind][rng.integers(len(s.queries[kind]))]
        ans_tokens = name_P[sorted(ans)]
        ids[b, pos_Q[q] - 2:pos_Q[q] + 1] = (name_P[x], relation_token(rel), ans_tokens[rng.integers(len(ans))])
        kind_BxQ[b, q] = KIND_NAMES.index(kind)
        answers[b, q, ans_tokens] = True
    mask = np.zeros(ids.shape, np.float32)
    mask[:, pos_Q] = 1.0
    return Batch(ids, mask, pos_Q, kind_BxQ, answers)

  def names(self, s: Structure, rng: np.random.Generator) -> np.ndarray:
    """name_P: a fresh token per person, drawn without replacement from the pool of its sex."""
    male_P = np.asarray(s.male)
    name_P = np.zeros(len(male_P), np.int64)
    n = self.spec.names_per_sex
    name_P[male_P] = male_name(rng.permutation(n)[:male_P.sum()])
    name_P[~male_P] = female_name(rng.permutation(n)[:(~male_P).sum()], n)
    return name_P

  def sample_host(self, seed: int, step: int, batch_size: int) -> TokenBatch:
    return self.batch(seed, step, batch_size).tokens()

  def guess_rate(self, b: Batch) -> np.ndarray:
    """guess_BxQ: the accuracy of a uniform guess among the sequence's facts' names of the answer's
    sex, the query's subject excluded: what a model that knows the answer's sex and that it is a
    name in the context, but not which, scores."""
    n = self.spec.names_per_sex
    first_male = male_name(0)
    guess = np.zeros(b.kind_BxQ.shape)
    facts_BxF = b.ids_BxT[:, 1:b.answer_pos_Q[0] - 3]
    for i in range(b.ids_BxT.shape[0]):
      present = np.zeros(self.vocab_size, bool)
      present[facts_BxF[i][facts_BxF[i] >= first_male]] = True
      for q, pos in enumerate(b.answer_pos_Q):
        ans = b.answers_BxQxV[i, q]
        lo = first_male if ans[first_male:first_male + n].any() else first_male + n  # the answer's sex
        cand_V = np.zeros(self.vocab_size, bool)
        cand_V[lo:lo + n] = present[lo:lo + n]
        cand_V[b.ids_BxT[i, pos - 2]] = False  # the subject does not answer its own query
        guess[i, q] = (cand_V & ans).sum() / max(cand_V.sum(), 1)
    return guess

  def relation_BxQ(self, b: Batch) -> np.ndarray:
    """Each query's relation name (its token sits one before the answer)."""
    return np.asarray(RELATIONS)[b.ids_BxT[:, b.answer_pos_Q - 1] - FIRST_REL]

  def correct(self, logits_BxTxV: np.ndarray, b: Batch) -> np.ndarray:
    """correct_BxQ: the top-1 token at each answer's position (read one before it) answers it."""
    top_BxQ = np.asarray(logits_BxTxV)[:, b.answer_pos_Q - 1].argmax(-1)
    return np.take_along_axis(b.answers_BxQxV, top_BxQ[..., None], -1)[..., 0]
