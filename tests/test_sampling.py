"""varylm_hf.sampling: word cutting, seeding, prompts, and agreement with exact first-word probabilities."""

from collections import Counter

import pytest
import torch

from varylm_hf import metrics as M
from varylm_hf.data.normalize import NO_WORD
from varylm_hf.errors import InputError
from varylm_hf.prompts import instruction_prompt, one_shot_prompt
from varylm_hf.sampling import (
    build_prompts,
    naive_sample_next_words,
    resolve_prompt_style,
    sample_next_words,
    word_from_continuation,
)
from varylm_hf.scoring import context_token_ids

from conftest import WORDLEVEL_SUFFIXES as TINY_SUFFIXES
from conftest import WORDLEVEL_WORDS as TINY_WORDS
from conftest import make_wordlevel_gpt2 as make_tiny_gpt2
from conftest import make_wordlevel_tokenizer as make_wordlevel_tokenizer

CONTEXTS = ["the cat", "a dog ran and", "The", "the cat sat on the mat and the dog"]


def exact_first_word_probs(model, tokenizer, context: str) -> dict[str, float]:
    """Brute force: P(first word = w) for every single-token word of the tiny vocabulary.

    In the tiny vocabulary a first word is complete when the next token starts a new word ("▁...")
    or ends the sequence (<eos>, or <unk>: any special token ends a sample); "s"/"ing" extend it. So P(w) = sum over surface forms s of w of
    P(▁s | c) * P(next token is "▁..." or <eos> | c, ▁s).
    """
    ids = context_token_ids(tokenizer, context)
    starts = [tokenizer.convert_tokens_to_ids("\u2581" + w) for w in TINY_WORDS] + tokenizer.all_special_ids
    out: dict[str, float] = {}
    with torch.no_grad():
        p_first = torch.softmax(model(torch.tensor([ids])).logits[0, -1].double(), -1)
        for w in TINY_WORDS:
            t = tokenizer.convert_tokens_to_ids("\u2581" + w)
            p_next = torch.softmax(model(torch.tensor([ids + [t]])).logits[0, -1].double(), -1)
            out[w.lower()] = out.get(w.lower(), 0.0) + float(p_first[t] * p_next[starts].sum())
    return out


def test_word_from_continuation():
    assert word_from_continuation(" cat, and", ended=False) == "cat"
    assert word_from_continuation(" Cat", ended=True) == "cat"
    assert word_from_continuation(" cat", ended=False) == NO_WORD  # budget ran out inside the word
    assert word_from_continuation(" ,", ended=True) == NO_WORD
    assert word_from_continuation("", ended=True) == NO_WORD
    # one word rule (varylm_hf.data.words): one space opens the word, punctuation first is a failure
    assert word_from_continuation("\n\nThe dog", ended=False) == NO_WORD
    assert word_from_continuation(" \u201cMat.\u201d said", ended=False) == NO_WORD
    assert word_from_continuation("re is", ended=False) == NO_WORD  # continues the context's last word
    assert word_from_continuation(" can't go", ended=False) == "ca"  # Treebank split, as the Provo answers
    assert word_from_continuation(" It\u2019s", ended=True) == "it"
    assert word_from_continuation(" self-esteem.", ended=False) == "self-esteem"
    assert word_from_continuation("Mat<", ended=False, chat=True) == "mat"  # a chat response starts the word
    assert word_from_continuation(" mat", ended=True, chat=True) == NO_WORD


def test_shapes_seeds_and_batching(wordlevel_tokenizer):
    model = make_tiny_gpt2(wordlevel_tokenizer, initializer_range=0.2)
    words = sample_next_words(model, wordlevel_tokenizer, CONTEXTS, num_samples=12, seed=1, batch_size=4)
    assert len(words) == len(CONTEXTS) and all(len(w) == 12 for w in words)
    vocab = {w.lower() for w in TINY_WORDS} | {w.lower() + s for w in TINY_WORDS for s in TINY_SUFFIXES}
    vocab |= set(TINY_SUFFIXES) | {s + t for s in TINY_SUFFIXES for t in TINY_SUFFIXES} | {NO_WORD}
    produced = {w for row in words for w in row}
    assert len(produced) > 3
    assert all(w in vocab or w.startswith(tuple(vocab)) for w in produced)
    # seeded; a context's samples do not depend on its batch nor its neighbours
    assert sample_next_words(model, wordlevel_tokenizer, CONTEXTS, num_samples=12, seed=1, batch_size=4) == words
    assert sample_next_words(model, wordlevel_tokenizer, CONTEXTS, num_samples=12, seed=1, batch_size=1) == words
    assert sample_next_words(model, wordlevel_tokenizer, CONTEXTS[2:3], num_samples=12, seed=1) == words[2:3]
    assert sample_next_words(model, wordlevel_tokenizer, CONTEXTS, num_samples=12, seed=2, batch_size=4) != words


def test_sampler_matches_exact_first_word_probabilities(wordlevel_tokenizer):
    """4000 shared-prefix samples per context agree with brute-force first-word probabilities."""
    model = make_tiny_gpt2(wordlevel_tokenizer, initializer_range=0.2)
    n = 4000
    samples = sample_next_words(model, wordlevel_tokenizer, CONTEXTS[:2], num_samples=n, seed=0, max_new_tokens=10)
    for ctx, row in zip(CONTEXTS[:2], samples):
        exact = exact_first_word_probs(model, wordlevel_tokenizer, ctx)
        freq = Counter(row)
        for w, p in exact.items():
            sd = (p * (1 - p) / n) ** 0.5
            assert abs(freq[w] / n - p) < 5 * sd + 1e-3, (ctx, w, freq[w] / n, p)


def test_naive_generate_agrees_in_distribution(wordlevel_tokenizer):
    """Both samplers match the brute-force first-word probabilities (the long tail of rare words aside)."""
    model = make_tiny_gpt2(wordlevel_tokenizer, initializer_range=0.2)
    n = 2000
    fast = Counter(sample_next_words(model, wordlevel_tokenizer, ["the cat"], num_samples=n, seed=3)[0])
    naive = Counter(naive_sample_next_words(model, wordlevel_tokenizer, ["the cat"], num_samples=n, seed=4)[0])
    exact = exact_first_word_probs(model, wordlevel_tokenizer, "the cat")
    for w, p in exact.items():
        sd = (p * (1 - p) / n) ** 0.5
        assert abs(fast[w] / n - p) < 5 * sd + 1e-3 and abs(naive[w] / n - p) < 5 * sd + 1e-3, (w, p)


def test_eos_first_is_a_failure_and_budget(wordlevel_tokenizer):
    model = make_tiny_gpt2(wordlevel_tokenizer, initializer_range=0.2)
    with torch.no_grad():  # make <eos> overwhelmingly likely: every sample fails
        model.transformer.wte.weight[wordlevel_tokenizer.eos_token_id] *= 0
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.clone())
        model.lm_head.weight[wordlevel_tokenizer.eos_token_id] = 0
        model.lm_head.weight[wordlevel_tokenizer.eos_token_id, 0] = 1e4
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 10.0
    words = sample_next_words(model, wordlevel_tokenizer, ["the cat"], num_samples=10)
    assert words == [[NO_WORD] * 10]
    assert M.failure_rate(words[0]) == 1.0


def test_max_new_tokens_one_means_no_complete_word(wordlevel_tokenizer):
    model = make_tiny_gpt2(wordlevel_tokenizer, initializer_range=0.2)
    words, texts = sample_next_words(
        model, wordlevel_tokenizer, ["the cat"], num_samples=20, max_new_tokens=1, return_texts=True
    )
    # one token can never show the boundary after a word; only an immediate <eos> ends a sample
    assert set(words[0]) == {NO_WORD}
    assert all(len(t.split()) <= 1 for t in texts[0])


def test_prompt_styles(tiny_chat_tokenizer, wordlevel_tokenizer):
    assert resolve_prompt_style(tiny_chat_tokenizer) == "instruction"
    assert resolve_prompt_style(wordlevel_tokenizer) == "plain"
    [plain] = build_prompts(wordlevel_tokenizer, ["The cat sat"])
    assert plain == "The cat sat"
    [chat] = build_prompts(tiny_chat_tokenizer, ["The cat sat"])
    assert instruction_prompt("The cat sat") in chat and chat.endswith("<|im_start|>assistant\n")
    [shot] = build_prompts(tiny_chat_tokenizer, ["The cat sat"], "one_shot", ("The", [{"word": "cat", "count": 2}]))
    assert one_shot_prompt("The cat sat", "The", [{"word": "cat", "count": 2}]) in shot
    with pytest.raises(InputError, match="one_shot"):
        build_prompts(tiny_chat_tokenizer, ["x"], "one_shot")
    with pytest.raises(InputError, match="chat template"):
        build_prompts(wordlevel_tokenizer, ["x"], "instruction")
    with pytest.raises(InputError, match="--prompt"):
        resolve_prompt_style(wordlevel_tokenizer, "fancy")


def test_chat_sampling_on_tiny_llama(tiny_chat_tokenizer, tiny_chat_llama):
    words = sample_next_words(tiny_chat_llama, tiny_chat_tokenizer, ["The cat sat on the", "Paris"],
                              num_samples=8, max_new_tokens=6, seed=0, batch_size=2)
    assert [len(w) for w in words] == [8, 8]
    again = sample_next_words(tiny_chat_llama, tiny_chat_tokenizer, ["Paris"], num_samples=8, max_new_tokens=6,
                              seed=0)
    assert again[0] == words[1]


@pytest.mark.parametrize(
    "kwargs, message",
    [({"num_samples": 0}, "num-samples"), ({"temperature": 0}, "temperature"), ({"top_p": 0}, "top-p"),
     ({"top_k": -1}, "top-k"), ({"batch_size": 0}, "batch-size"), ({"max_new_tokens": 0}, "max-new-tokens")],
)
def test_bad_arguments(wordlevel_tokenizer, kwargs, message):
    model = make_tiny_gpt2(wordlevel_tokenizer)
    with pytest.raises(InputError, match=message):
        sample_next_words(model, wordlevel_tokenizer, ["the"], **kwargs)


def test_top_k_one_is_greedy(wordlevel_tokenizer):
    model = make_tiny_gpt2(wordlevel_tokenizer, initializer_range=0.2)
    words = sample_next_words(model, wordlevel_tokenizer, ["the cat"], num_samples=15, top_k=1)[0]
    assert len(set(words)) == 1
    exact = exact_first_word_probs(model, wordlevel_tokenizer, "the cat")
    # greedy picks the most likely first token; with top_k=1 the word is deterministic
    assert words[0] in exact or words[0] == NO_WORD or words[0].endswith(tuple(TINY_SUFFIXES))


def test_tokenizer_not_modified():
    tok = make_wordlevel_tokenizer()
    before = (tok.padding_side, tok.pad_token, tok.chat_template)
    model = make_tiny_gpt2(tok)
    sample_next_words(model, tok, ["the cat", "a"], num_samples=3)
    assert (tok.padding_side, tok.pad_token, tok.chat_template) == before


def test_long_contexts_are_cut_from_the_left_to_fit_the_model(wordlevel_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(wordlevel_tokenizer), n_positions=24, n_embd=16, n_layer=1, n_head=2)
    model = GPT2LMHeadModel(config).eval()
    long = " ".join(["the cat sat on the mat and"] * 10)  # 70 words, 71 tokens with the first token
    words = sample_next_words(model, wordlevel_tokenizer, [long], num_samples=4, max_new_tokens=8, seed=0)
    assert len(words[0]) == 4
    with pytest.raises(InputError, match="max-new-tokens"):
        sample_next_words(model, wordlevel_tokenizer, [long], num_samples=2, max_new_tokens=23)
