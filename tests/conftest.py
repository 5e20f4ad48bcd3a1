"""Shared fixtures: tiny random models and tokenizers built in-process (no Hub downloads)."""

from __future__ import annotations

import pytest

# ---------------------------------------------------------------- tiny chat model (instruction recipe)

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CHAT_CORPUS = [
    "Instruction: Return one plausible next word for the following context.",
    "Context: The cat sat on the mat and there are dogs, it is was were.",
    "Continuation: the a an of to in that people answers example continuations given by",
    "What is the capital of France? Paris. Water freezes at zero degrees.",
]


def make_tiny_chat_tokenizer(vocab_size: int = 320):
    """A byte-level BPE tokenizer with a ChatML chat template (like SmolLM2's, without the system turn)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CHAT_CORPUS * 3, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|im_start|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_tiny_llama(tokenizer, seed: int = 0):
    """A 2-layer Llama (hidden size 32) with random weights, sized for ``tokenizer``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_chat_tokenizer():
    """Session-wide tiny ChatML tokenizer (do not mutate it)."""
    return make_tiny_chat_tokenizer()


@pytest.fixture
def tiny_chat_llama(tiny_chat_tokenizer):
    """A fresh tiny Llama for :func:`tiny_chat_tokenizer` (seed 0)."""
    return make_tiny_llama(tiny_chat_tokenizer)
