"""varylm-hf: teach causal LMs to reproduce human variability in next-word prediction.

Light at import: heavy modules (torch, transformers) are imported by the submodules that
need them, so ``import varylm_hf`` and the pure-maths parts stay fast.
"""

__version__ = "0.1.0"
