"""The first token of a plain context, per tokenizer family (issue #11, item 1)."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from varylm_hf.conditioning import first_token_id, first_token_text
from varylm_hf.errors import InputError
from varylm_hf.sampling import encode_prompts
from varylm_hf.scoring import context_token_ids

from conftest import make_tiny_chat_tokenizer

CORPUS = ["The cat sat on the mat and there are dogs.", "There are now rumblings that Apple might invade."] * 3


def _bpe(specials):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def gpt2_style():
    """GPT-2: bos = eos = <|endoftext|>, nothing added by the tokenizer."""
    return PreTrainedTokenizerFast(tokenizer_object=_bpe(["<|endoftext|>"]), bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>")


def smollm2_style():
    """SmolLM2's GGUF tokenizer: bos <|im_start|> (a chat marker), eos <|im_end|>, unk <|endoftext|>."""
    tok = make_tiny_chat_tokenizer()
    tok.unk_token = "<|endoftext|>"
    return tok


def sentencepiece_style():
    """Llama-2 / Mistral: a Metaspace (▁) tokenizer that adds <s> itself."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.mark.parametrize("make, expected", [(gpt2_style, "<|endoftext|>"), (smollm2_style, "<|endoftext|>"),
                                            (sentencepiece_style, "<s>")])
def test_auto_first_token_per_family(make, expected):
    tok = make()
    assert first_token_text(tok) == expected
    ids = context_token_ids(tok, "The cat sat")
    assert ids[0] == tok.convert_tokens_to_ids(expected)
    assert ids[1:] == tok("The cat sat", add_special_tokens=False)["input_ids"]
    # the sampler conditions plain contexts on the same ids
    assert encode_prompts(tok, ["The cat sat"], chat=False) == [ids]


def test_never_a_chat_marker():
    tok = smollm2_style()
    assert tok.bos_token == "<|im_start|>"
    assert first_token_id(tok) != tok.bos_token_id and first_token_id(tok) != tok.eos_token_id


def test_none_and_explicit_token():
    tok = smollm2_style()
    assert context_token_ids(tok, "The cat", bos="none") == tok("The cat", add_special_tokens=False)["input_ids"]
    assert context_token_ids(tok, "The cat", bos="<|im_start|>")[0] == tok.bos_token_id
    with pytest.raises(InputError, match="--bos 'nope'"):
        first_token_id(tok, "nope")


def test_no_separator_falls_back_to_a_non_chat_bos():
    tok = PreTrainedTokenizerFast(tokenizer_object=_bpe(["<doc>"]), bos_token="<doc>")
    assert first_token_text(tok) == "<doc>"
    bare = PreTrainedTokenizerFast(tokenizer_object=_bpe(["<pad>"]), pad_token="<pad>")
    assert first_token_id(bare) is None and first_token_text(bare) == "(none)"


def test_top_level_exports_are_lazy_and_resolve():
    import subprocess
    import sys

    code = ("import sys, varylm_hf; assert 'torch' not in sys.modules; "
            "from varylm_hf import VarTrainer, evaluate_model, WordRule, first_token_id; "
            "from varylm_hf.training.var import VarTrainer as T; assert VarTrainer is T; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-500:]
    import varylm_hf

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        varylm_hf.Nope  # noqa: B018
