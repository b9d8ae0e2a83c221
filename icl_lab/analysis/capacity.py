"""Knowledge capacity (Allen-Zhu and Li, Physics of Language Models 3.3, arXiv 2404.05405): the bits
of a fact world a model stores, and the parameters it stores them in.

Stored bits (the simplified bound). A fact whose value is one of V equally likely values carries
log₂V bits; a model whose cross-entropy on the true value is CE bits stores at least
max(0, log₂V − CE) of them. The sum over the world's facts is the model's stored bits.
- CE is taken over the whole vocabulary, as `fact_world.score` reads it: probability the model puts
  on tokens that are no value of the relation counts against it, so the bound stays conservative
  (CE over the relation's candidates alone would be lower, and the bits higher).
- A fact is stated in every template; its CE is the mean over the templates.
- This is the simplified form: the paper's bound also charges the model for learning the names
  and for the diversity of the value set, which this one does not, and it is floored at 0 per
  fact, so a confidently wrong fact costs nothing here.

Parameters are counted without embeddings, as the paper does: the blocks and the final LayerNorm,
not the token embedding, the position embedding or the vocabulary read-out.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from icl_lab.config import FactConfig
from icl_lab.tasks import fact_world


def non_embedding_params(model: nnx.Module) -> int:
  """Parameters of a transformer's blocks and final LayerNorm (no embeddings, no read-out)."""
  leaves = jax.tree.leaves([nnx.state(model.blocks, nnx.Param), nnx.state(model.ln_f, nnx.Param)])
  return int(sum(leaf.size for leaf in leaves))


def fact_ce_bits(model, fc: FactConfig, world: int = 0) -> np.ndarray:
  """ce_PxR: the model's cross-entropy (bits, over the whole vocabulary) on every normal fact's
  true value, averaged over the templates."""
  pr = fact_world.known_probe(fc, world)  # persons × relations × templates, in that order
  logp_N = fact_world.score(model, pr, items=True)["logprob_N"]
  return -logp_N.reshape(fc.persons, fc.relations, fc.templates).mean(-1) / np.log(2)


def stored_bits_per_fact(ce_bits, values: int) -> np.ndarray:
  """max(0, log₂V − CE) for each fact (V equally likely values)."""
  return np.maximum(0.0, np.log2(values) - np.asarray(ce_bits, np.float64))


def measure(model, fc: FactConfig, world: int = 0) -> dict:
  """The world's facts, their total log₂V, the bits the model stores of them, and how many of the
  facts it stores completely to within 1% (stored ≥ 0.99·log₂V)."""
  bits_PxR = stored_bits_per_fact(fact_ce_bits(model, fc, world), fc.values)
  facts = fc.persons * fc.relations
  return {"facts": facts, "log2v_total": facts * float(np.log2(fc.values)), "stored_bits": float(bits_PxR.sum()),
          "facts_stored": int((bits_PxR >= 0.99 * np.log2(fc.values)).sum())}
