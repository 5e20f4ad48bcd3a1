"""The real cells: :class:`ModelRunner` trains (``ft_*`` cells) and evaluates one cell of the grid."""

from __future__ import annotations

import copy
from pathlib import Path

from ..data import load_cloze
from ..errors import InputError
from ..metrics import oracle_tvd, perfect_model_tvd
from ..modeling import load_model_and_tokenizer
from ..prompts import one_shot_example
from ..qa import qa_hit_rate
from ..training.adapters import paper_model_config
from .config import DISPLAY, Cell, ReproduceConfig

__all__ = ["ModelRunner"]


def _stop_after(epoch: int | None):
    """A callback ending training after ``epoch`` epochs, the learning-rate schedule unchanged (``None``: none)."""
    if epoch is None:
        return None
    from transformers import TrainerCallback  # heavy: transformers; the CLI parser imports this module

    class StopAfterEpoch(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            if (state.epoch or 0) >= epoch - 1e-6:
                control.should_training_stop = True

    return StopAfterEpoch()


class ModelRunner:
    """The default ``run_cell``: trains and evaluates real models, loading the base model once.

    Each cell gets a fresh copy of the base model (``copy.deepcopy`` of the one loaded first;
    4-bit models are reloaded instead). Pretrained style trains with :class:`VarTrainer`
    (word-level loss, plain contexts); instruct style with :func:`varylm_hf.training.instruct.train_instruct`
    (LoRA; ``config.recipe`` ``"var"`` or ``"sft"``) and evaluates through the chat template.
    """

    def __init__(self, config: ReproduceConfig, *, records=None, quantization_config=None):
        self.config = config
        self.splits = load_cloze(None if records is not None else config.dataset, records=records)
        self.train = self.splits["train"][: config.limit_train] if config.limit_train else self.splits["train"]
        self.test = self.splits["test"][: config.limit_eval] if config.limit_eval else self.splits["test"]
        self.test_exact = self.splits["test"][: config.limit_exact] if config.limit_exact else self.splits["test"]
        self.quantization_config = quantization_config
        self._base = None

    def fresh_model(self):
        """A trainable copy of the base model and its tokenizer."""
        if self._base is None or self.quantization_config is not None:
            self._base = load_model_and_tokenizer(self.config.model, quantization_config=self.quantization_config)
            if self.quantization_config is not None:
                return self._base
        model, tokenizer = self._base
        return copy.deepcopy(model), tokenizer

    def _train(self, cell: Cell, model, tokenizer, cell_dir: Path):
        import torch  # heavy: torch; the CLI parser imports this module

        cfg = self.config
        common = dict(label_mode=cell.label_mode, word_prob_definition=cfg.word_prob_definition,
                      num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate, seed=cell.seed,
                      report_to=cfg.report_to)  # the settings both styles' trainer arguments take
        if cfg.style == "pretrained":
            from ..training.var import VarTrainingArguments, train_var  # heavy: torch; the CLI parser imports this

            args = VarTrainingArguments(
                output_dir=str(cell_dir / "checkpoints"),
                label_k=cell.k,
                scoring_strategy=cfg.scoring_strategy,
                group_by_passage=cfg.group_by_passage,
                bos=cfg.bos,
                per_device_train_batch_size=cfg.batch_size,
                save_strategy="no",
                logging_steps=0.05,
                use_cpu=not torch.cuda.is_available(),
                bf16=bool(cfg.bf16),
                disable_tqdm=False,
                **common,
            )
            curve = self._curve_callback(tokenizer, "plain")
            stop = cfg.stop_after_epoch.get(cell.condition, cfg.stop_after_epoch.get("*"))
            callbacks = [c for c in (curve, _stop_after(stop)) if c is not None]
            trainer = train_var(model, tokenizer, self.train, None, args, callbacks=callbacks or None)
            model = trainer.model
        else:
            from ..training.instruct import train_instruct  # heavy: trl, peft; the CLI parser imports this module
            from ..training.sft_config import VarSFTConfig  # heavy: trl; the CLI parser imports this module

            if cell.label_mode == "sample_k":
                raise InputError("the label-count ablation (ft_k<k>) is for --style pretrained")
            icfg = VarSFTConfig(output_dir=str(cell_dir / "adapter"), recipe=cfg.recipe, batch_size=cfg.batch_size,
                                group_by_passage=cfg.group_by_passage and cfg.recipe == "var", bf16=cfg.bf16, **common)
            curve = self._curve_callback(tokenizer, "instruction")
            stop = cfg.stop_after_epoch.get(cell.condition, cfg.stop_after_epoch.get("*"))
            callbacks = [c for c in (curve, _stop_after(stop)) if c is not None]
            trainer = train_instruct(model, tokenizer, self.train, None, icfg, callbacks=callbacks or None,
                                     model_config=paper_model_config(load_in_4bit=self.quantization_config is not None))
            model = trainer.model
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        model.eval()
        info = {"train_loss_first": losses[0] if losses else None, "train_loss_last": losses[-1] if losses else None}
        if curve is not None:
            info["curve"] = curve.curve
        return model, info

    def _curve_callback(self, tokenizer, prompt: str):
        """The per-epoch exact-TVD callback on validation and test, when ``config.curves`` asks for it."""
        if not self.config.curves:
            return None
        from ..callbacks import ExactTVDCallback  # heavy: torch, transformers; the CLI parser imports this module

        final_test = ("test",) if self.config.eval_mode in ("exact", "both") else ()
        return ExactTVDCallback({"validation": self.splits["validation"], "test": self.test_exact}, tokenizer,
                                prompt=prompt, bos=self.config.bos, at_start=("validation",), skip_final=final_test)

    def _oracle(self, seed: int) -> dict:
        """Oracle (two halves of the human answers) on both test sets, and the sampled measure's floor."""
        cfg = self.config
        result: dict = {}
        if cfg.eval_mode in ("exact", "both"):
            values = [oracle_tvd(r["answers"], seed=seed) for r in self.test_exact]
            result.update(mean_tvd_exact=sum(values) / len(values), n_contexts_exact=len(values))
        if cfg.eval_mode in ("sampled", "both"):
            values = [oracle_tvd(r["answers"], seed=seed) for r in self.test]
            perfect = [perfect_model_tvd(r["answers"], cfg.num_samples, seed) for r in self.test]
            result.update(mean_tvd_sampled=sum(values) / len(values), n_contexts_sampled=len(values),
                          num_samples=cfg.num_samples, perfect_sampled_tvd=sum(perfect) / len(perfect))
        result["mean_tvd"] = result.get("mean_tvd_sampled", result.get("mean_tvd_exact"))
        return result

    def __call__(self, cell: Cell, config: ReproduceConfig, cell_dir: Path) -> dict:
        """Train (for ``ft_*`` cells) and evaluate one cell; returns its result."""
        from ..evaluation import evaluate_model  # heavy: evaluation imports tqdm; the CLI parser imports this module

        if cell.condition == "oracle":
            return self._oracle(cell.seed)
        model, tokenizer = self.fresh_model()
        result: dict = {}
        if cell.label_mode is not None:
            model, info = self._train(cell, model, tokenizer, cell_dir)
            result.update(info)
        prompt, example = ("plain", None) if config.style == "pretrained" else ("instruction", None)
        if cell.condition == "one_shot":
            prompt, example = "one_shot", one_shot_example(self.train, seed=config.one_shot_seed)
        name = DISPLAY.get(cell.condition, cell.condition)
        common = dict(seeds=[cell.seed], prompt=prompt, one_shot_example=example, name=name, overwrite=True,
                      progress=True, bos=config.bos, config={"model": config.model, "condition": cell.condition,
                                                             "split": "paper/test"})
        if config.eval_mode in ("sampled", "both"):
            s = evaluate_model(model, tokenizer, self.test, mode="sampled", num_samples=config.num_samples,
                               out_dir=cell_dir / "eval", **common)
            result.update(mean_tvd_sampled=s["mean_tvd"], n_contexts_sampled=s["n_contexts"], eval_dir="eval",
                          num_samples=config.num_samples, failure_rate=s.get("failure_rate"),
                          entropy=s["sampled"]["entropy"]["mean"], oracle_tvd=s["oracle_tvd"])
        if config.eval_mode in ("exact", "both"):
            s = evaluate_model(model, tokenizer, self.test_exact, mode="exact", out_dir=cell_dir / "eval_exact",
                               **common)
            result.update(mean_tvd_exact=s["mean_tvd_exact"], n_contexts_exact=s["n_contexts"],
                          eval_exact_dir="eval_exact", human_mass=s["exact"]["human_mass"]["mean"])
            result.setdefault("eval_dir", "eval_exact")
        result["mean_tvd"] = result.get("mean_tvd_sampled", result.get("mean_tvd_exact"))
        result["n_contexts"] = result.get("n_contexts_sampled", result.get("n_contexts_exact"))
        if result.get("curve") and "mean_tvd_exact" in result:  # the final evaluation completes the curve
            result["curve"][-1].setdefault("exact_tvd/test", result["mean_tvd_exact"])
        if config.qa:
            qa = qa_hit_rate(model, tokenizer, n_samples=config.num_samples, seed=cell.seed, chat=config.style == "instruct")
            result["qa_hit_rate"] = qa["hit_rate"]
        return result
