"""Shared fixtures: tiny random models and tokenizers built in-process (no Hub downloads)."""

from __future__ import annotations

import contextlib

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


# ---------------------------------------------------------------- word scoring / VarTrainer (tiny GPT-2 and Llama)

TINY_CORPUS = [
    "There are now rumblings that Apple might soon invade the smart watch space, though the company is maintaining its customary silence.",
    "The cat sat on the mat. The dog slept on the floor, and the bird sang in the tree.",
    "With schools still closed, cars still buried and streets still blocked, the city decided to act.",
    "Doesn't it rain there? These birds fly north while those stay; there is nothing they can do.",
    "Human next-word predictions vary: some people say is, others say are, was, were, the, a.",
]


def make_tiny_word_tokenizer(kind: str, vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<s>", "</s>", "<unk>"]
    if kind == "bytelevel":  # GPT-2 style: "Ġword", no BOS of its own (BOS = EOS = <|endoftext|>)
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials[:1],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(TINY_CORPUS * 3, trainer)
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                       unk_token="<|endoftext|>")
    # SentencePiece style: "▁word" pieces, <s> BOS, </s> EOS, byte-less BPE with an unk token
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials[1:])
    tok.train_from_iterator(TINY_CORPUS * 3, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>")


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """Tiny byte-level BPE tokenizer (GPT-2 conventions)."""
    return make_tiny_word_tokenizer("bytelevel")


@pytest.fixture(scope="session")
def sp_tokenizer():
    """Tiny Metaspace BPE tokenizer (SentencePiece/Llama conventions, BOS <s>)."""
    return make_tiny_word_tokenizer("metaspace")


def tiny_gpt2(vocab_size: int, seed: int = 0, attn: str = "sdpa", init: float = 0.2):
    """A 2-layer GPT-2 with hidden size 32 and random weights (eval mode).

    ``init`` (weight std) is larger than GPT-2's 0.02 so that next-token distributions are far
    from uniform and a wrong attention mask changes log-probabilities visibly.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size, n_layer=2, n_embd=32, n_head=2, n_positions=128,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=init,
                     bos_token_id=0, eos_token_id=0)
    cfg._attn_implementation = attn
    return GPT2LMHeadModel(cfg).eval()


def tiny_word_llama(vocab_size: int, seed: int = 0, attn: str = "sdpa", init: float = 0.2):
    """A 2-layer Llama (hidden size 32, GQA, 128 positions) and random weights (eval mode)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      initializer_range=init, bos_token_id=0, eos_token_id=1)
    cfg._attn_implementation = attn
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="session")
def gpt2_pair(bpe_tokenizer):
    """(tiny GPT-2, byte-level tokenizer)."""
    return tiny_gpt2(len(bpe_tokenizer)), bpe_tokenizer


@pytest.fixture(scope="session")
def llama_pair(sp_tokenizer):
    """(tiny Llama, SentencePiece-style tokenizer)."""
    return tiny_word_llama(len(sp_tokenizer)), sp_tokenizer


# ---------------------------------------------------------------- word-level vocabulary (evaluation tests)

#: Words of the word-level vocabulary: each "▁word" is one token, so a first word's probability can be
#: computed exactly by hand; "s"/"ing" continue a word (multi-token words); no punctuation.
WORDLEVEL_WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "and", "is", "The", "A", "Cat"]
WORDLEVEL_SUFFIXES = ["s", "ing"]


def make_wordlevel_tokenizer():
    """A word-level tokenizer: ``"▁w"`` tokens for :data:`WORDLEVEL_WORDS`, suffixes, ``<eos>``, ``<unk>``.

    Metaspace pre-tokenisation and decoding (like SentencePiece): ``"the cat"`` -> ``["▁the", "▁cat"]``,
    and ``["▁cat", "s", "▁the"]`` decodes to ``"cats the"``. No BOS; ``<eos>`` doubles as padding.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<eos>": 0, "<unk>": 1}
    for w in WORDLEVEL_WORDS:
        vocab["\u2581" + w] = len(vocab)
    for s in WORDLEVEL_SUFFIXES:
        vocab[s] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>", unk_token="<unk>")


def make_wordlevel_gpt2(tokenizer, seed: int = 0, initializer_range: float = 0.2):
    """A 2-layer GPT-2 (n_embd 32) with random weights; a larger ``initializer_range`` is peakier."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=2, n_head=2,
        initializer_range=initializer_range, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="session")
def wordlevel_tokenizer():
    """Session-wide tokenizer of :func:`make_wordlevel_tokenizer` (do not mutate it)."""
    return make_wordlevel_tokenizer()


# ---------------------------------------------------------------- example scripts as modules

@contextlib.contextmanager
def example_module(filename: str):
    """``examples/<filename>`` imported as a module (its ``run(argv)`` is what ``__main__`` calls)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / filename
    spec = importlib.util.spec_from_file_location(f"_{path.stem}_script", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture
def gpt2_script():
    """examples/train_gpt2.py as a module."""
    with example_module("train_gpt2.py") as module:
        yield module


@pytest.fixture(scope="module")
def instruct_script():
    """examples/train_instruct.py as a module."""
    with example_module("train_instruct.py") as module:
        yield module
