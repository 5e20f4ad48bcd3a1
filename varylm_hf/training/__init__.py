"""Training: the word-level trainer and the instruction-tuned recipes, one responsibility per module.

* :mod:`~varylm_hf.training.var`: :class:`~varylm_hf.training.var.VarTrainer` (L_Var over whole words, the
  paper's GPT-2 recipe), its arguments, the passage-grouped sampler and the saved run;
* :mod:`~varylm_hf.training.collator`: cloze records -> word-scoring batches for ``VarTrainer``;
* :mod:`~varylm_hf.training.rows`: the instruct recipes' data (augmented rows, ``var`` units, the batch unit);
* :mod:`~varylm_hf.training.adapters`: LoRA / QLoRA configuration, 4-bit loading, bitsandbytes workarounds;
* :mod:`~varylm_hf.training.var_sft`: the ``var`` instruct recipe's loss and trainer;
* :mod:`~varylm_hf.training.sft_config`: ``VarSFTConfig``, TRL's ``SFTConfig`` plus the recipes' options;
* :mod:`~varylm_hf.training.instruct`: the instruct recipes end to end (``train_instruct``, the saved adapter).

Nothing is imported here: ``import varylm_hf.training.rows`` stays free of torch.
"""
