"""icl_lab: a JAX lab for studying which learning algorithm in-context learning implements."""

__version__ = "0.1.0"
