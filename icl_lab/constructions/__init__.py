"""Hand-compiled transformers that provably run learning algorithms (Akyürek et al. 2023,
§3 and App. A–C; von Oswald et al. 2023), checked against icl_lab.analysis.learners.

- primitives: the row layout, the primitive ops (Read/mov, Affine/aff, Mul/mul, Recip and
  div) and the GeLU arithmetic they rest on, with its error formulas.
- compiler: Program → CompiledTransformer weights; sizes of the compiled network.
- network: CompiledTransformer, the lab's Transformer without LayerNorm.
- gd: Theorem 1 (one-pass SGD, one GD step per example) and batch GD by attention averaging.
- ridge: Theorem 2 (ridge by Sherman–Morrison / recursive least squares).
- linear_attention: von Oswald et al.'s one-layer linear-attention GD step, and training it.
- agreement: agreement with the learners, error vs scale, sizes, markdown tables (the study
  itself, its JSON and figure: icl_lab.studies.constructions).
"""

from __future__ import annotations

from icl_lab.constructions.compiler import DEFAULT_SCALE, Program, ProgramBuilder, compile_program, shape_of, size_of
from icl_lab.constructions.gd import gd_program, sgd_program
from icl_lab.constructions.network import CompiledTransformer, scan_forward
from icl_lab.constructions.ridge import ridge_program

__all__ = ["DEFAULT_SCALE", "CompiledTransformer", "Program", "ProgramBuilder", "compile_program",
           "gd_program", "ridge_program", "scan_forward", "sgd_program", "shape_of", "size_of"]
