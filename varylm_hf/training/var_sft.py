"""The ``var`` instruct recipe's loss and trainer: augmented SFT with one branch per distinct answer.

A batch of :func:`varylm_hf.training.rows.var_units` (one per context) is scored by the word-level engine
(:func:`varylm_hf.scoring.score_token_ids`): the chat prompt once, each distinct answer as a branch of it,
weighted by its count. The loss equals TRL's SFTTrainer loss on all augmented rows of the same contexts in one
batch (:func:`var_sft_loss`); :func:`VarSFTTrainer` is a :class:`transformers.Trainer` around it.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import InputError

__all__ = ["var_sft_loss", "VarSFTTrainer"]


def var_sft_loss(model, batch: Mapping, *, normalize: str = "tokens", strategy: str = "passage"):
    """The augmented-SFT loss of a batch of :func:`~varylm_hf.training.rows.var_units`, with one branch per distinct answer.

    ``sum_u sum_w count(w) * -log q(completion_w | prompt_u)`` divided by the number of
    completion tokens of the equivalent augmented rows (``normalize="tokens"``, TRL's token
    mean over one batch) or by the number of rows (``"rows"``). Equals SFTTrainer's loss on
    all augmented rows of the same contexts in one batch. Returns ``(loss, n_rows)``.

    ``strategy="passage"`` (default) scores the whole batch as one token trie: the chat prompts
    of a batch share the system turn and the instruction, and prompts of one passage share the
    passage text up to the shorter context, so each shared token is computed once; ``"tree"``
    keeps one trie per context (no sharing across contexts), ``"context"`` one KV-cached forward
    per context. All three give the same loss.
    """
    import torch  # heavy: torch; var_sft stays light (VarSFTTrainer is a factory)

    from ..scoring import score_token_ids  # heavy: torch; var_sft stays light (VarSFTTrainer is a factory)

    if normalize not in ("tokens", "rows"):
        raise InputError(f"normalize={normalize!r}: expected 'tokens' or 'rows'")
    logq = score_token_ids(model, batch["context_ids"], batch["word_ids"], definition="paper", strategy=strategy)
    total, denom, rows = None, 0, 0
    for lq, words, counts in zip(logq, batch["word_ids"], batch["counts"]):
        c = torch.as_tensor(counts, dtype=lq.dtype, device=lq.device)
        part = -(c * lq).sum()
        total = part if total is None else total + part
        rows += int(sum(counts))
        denom += sum(n * len(w) for n, w in zip(counts, words)) if normalize == "tokens" else int(sum(counts))
    return total / max(denom, 1), rows


def _collate_units(features: list[dict]) -> dict:
    return {key: [f[key] for f in features] for key in ("context_ids", "word_ids", "counts")}


def _var_trainer_class():
    from transformers import Trainer  # heavy: transformers; var_sft stays light (VarSFTTrainer is a factory)

    class _VarSFTTrainer(Trainer):
        """Trainer whose loss is :func:`var_sft_loss` over batches of :func:`var_units` (one per context)."""

        loss_is_scaled_for_ga = False  # per-batch mean; Trainer divides by the accumulation steps

        def __init__(self, *args, normalize: str = "tokens", strategy: str = "passage", group_by_passage: bool = False,
                     **kwargs):
            kwargs.setdefault("data_collator", _collate_units)
            super().__init__(*args, **kwargs)
            self.var_normalize = normalize
            self.var_strategy = strategy
            self.group_by_passage = group_by_passage

        def _get_train_sampler(self, train_dataset=None):
            if self.group_by_passage:  # contexts of one passage together: their prompts share the passage text
                from .var import PassageGroupedSampler  # heavy: var imports transformers; var_sft stays light

                dataset = train_dataset if train_dataset is not None else self.train_dataset
                return PassageGroupedSampler(list(dataset["passage_id"]), seed=self.args.data_seed or self.args.seed)
            return super()._get_train_sampler(train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, _ = var_sft_loss(model, inputs, normalize=self.var_normalize, strategy=self.var_strategy)
            return (loss, None) if return_outputs else loss

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            import torch  # heavy: torch; var_sft stays light (VarSFTTrainer is a factory)

            with torch.no_grad():
                loss, _ = var_sft_loss(model, inputs, normalize=self.var_normalize, strategy=self.var_strategy)
            return loss.detach(), None, None

    return _VarSFTTrainer


def VarSFTTrainer(*args, **kwargs):  # noqa: N802 - a class factory keeps transformers out of import time
    """Build the ``recipe="var"`` trainer: a :class:`transformers.Trainer` whose loss is :func:`var_sft_loss`.

    Needs ``TrainingArguments(remove_unused_columns=False)`` and a dataset from
    :func:`build_var_dataset`; extra keywords ``normalize`` and ``strategy`` go to the loss, and
    ``group_by_passage=True`` batches contexts of one passage together (passages and the contexts
    within them shuffled per epoch) so that the ``passage`` trie shares their passage text.
    """
    return _var_trainer_class()(*args, **kwargs)
