"""Trainer callbacks: learning curves in exact TVD (no sampling noise) after every epoch."""

from __future__ import annotations

import time

from transformers import TrainerCallback

from .evaluation import exact_word_probs
from .metrics import exact_tvd, mean_sd

__all__ = ["ExactTVDCallback"]


class ExactTVDCallback(TrainerCallback):
    """Log the exact TVD of the model on named record sets at the end of every epoch.

    Adds ``exact_tvd/<name>`` (mean over the contexts) and ``exact_tvd_sd/<name>`` (SD over contexts)
    to ``trainer.state.log_history`` and to ``self.curve`` (one dict per epoch), so a learning
    curve can be read on the validation split -- where epochs and learning rates are chosen -- and
    reported on the test split. The model is put in eval mode for the measurement and back after.

    Args:
        splits: ``{"validation": records, "test": records}`` (cloze records).
        tokenizer: the model's tokenizer.
        prompt, bos: conditioning, as in :func:`varylm_hf.evaluation.evaluate_model`.
        at_start: splits also measured before the first step (epoch 0); default all. A caller that
            already has the starting model's numbers (the Base row) passes fewer.
        skip_final: splits not measured after the last epoch, because the caller evaluates the final
            model on them anyway (its number then completes the curve).
    """

    def __init__(self, splits: dict, tokenizer, *, prompt: str = "plain", bos: str | None = "auto",
                 at_start=None, skip_final=()):
        self.splits = {k: list(v) for k, v in splits.items() if v}
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.bos = bos
        self.at_start = set(self.splits if at_start is None else at_start)
        self.skip_final = set(skip_final)
        self.curve: list[dict] = []

    def measure(self, model, epoch: float, names=None) -> dict:
        """Exact TVD of ``model`` on the splits ``names`` (default all): one row of the curve."""
        was_training = model.training
        model.eval()
        row: dict = {"epoch": round(float(epoch), 4)}
        t0 = time.perf_counter()
        try:
            for name, records in self.splits.items():
                if names is not None and name not in names:
                    continue
                qs = exact_word_probs(model, self.tokenizer, records, prompt=self.prompt, bos=self.bos)
                values = [exact_tvd(r["answers"], q, tolerance=1e-4) for r, q in zip(records, qs)]
                row[f"exact_tvd/{name}"], row[f"exact_tvd_sd/{name}"] = mean_sd(values)
        finally:
            model.train(was_training)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        self.curve.append(row)
        return row

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        """Epoch 0: the starting point of the curve."""
        if self.at_start and model is not None and not self.curve:
            state.log_history.append(self.measure(model, 0.0, self.at_start))

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        """One point per epoch, logged with the trainer's own history."""
        if model is None:
            return
        last = (state.epoch or 0.0) >= float(args.num_train_epochs) - 1e-6
        names = set(self.splits) - (self.skip_final if last else set())
        state.log_history.append(self.measure(model, state.epoch or 0.0, names))
