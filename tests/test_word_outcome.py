"""One word outcome (issue #11, item 2): the sampler's cut and the exact scorer agree on what "the next word" is.

A tiny word-level model whose first-word distribution is enumerable, with apostrophes (``'t``,
``'s``), a hyphen compound (``-known``), digits, a suffix that continues a word (``re``, ``s``) and
punctuation (``,`` ``.`` ``—`` and a space-comma token that opens no word) in the vocabulary: the exact
word probabilities of :func:`varylm_hf.evaluation.exact_word_probs` (end-of-word masks derived from
:class:`varylm_hf.data.words.WordRule`) match the frequencies of 6,000 shared-prefix samples cut by the same
rule, within sampling error.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from varylm_hf.data.normalize import NO_WORD
from varylm_hf.data.words import WordRule
from varylm_hf.evaluation import _countable_forms, exact_word_probs
from varylm_hf.sampling import sample_next_words
from varylm_hf.scoring import word_end_masks

TOKENS = ["\u2581the", "\u2581The", "\u2581can", "\u2581Can", "\u2581ca", "\u2581it", "\u2581It", "\u2581well", "\u2581cat",
          "\u25813", "\u2581,", "re", "s", "5", "'t", "'s", "-known", ",", ".", "\u2014"]
WORDS = ["the", "can", "ca", "it", "well", "well-known", "3", "cat"]


def make_tokenizer():
    vocab = {"<eos>": 0, "<unk>": 1}
    for t in TOKENS:
        vocab[t] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always"),
        pre_tokenizers.Split(Regex("'t|'s|-known|[.,\u2014]"), behavior="isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>", unk_token="<unk>")


@pytest.fixture(scope="module")
def model_tok():
    tok = make_tokenizer()
    torch.manual_seed(1)
    config = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2, initializer_range=0.3,
                        eos_token_id=0, bos_token_id=0, pad_token_id=0)
    return GPT2LMHeadModel(config).eval(), tok


def test_tokenizer_spells_contractions_and_compounds_as_the_sampler_reads_them():
    tok = make_tokenizer()
    # every spelling the model can produce has one tokenisation (no "n't" token beside "'t"): the exact
    # scorer, which scores canonical tokenisations, then covers every sample
    assert tok.convert_ids_to_tokens(tok(" can't", add_special_tokens=False)["input_ids"]) == ["\u2581can", "'t"]
    assert tok.decode(tok(" well-known", add_special_tokens=False)["input_ids"]) == "well-known"
    assert _countable_forms(tok, WordRule().surface_forms("ca"), " ", word_end_masks(tok)) == ["ca", "can't", "Can't"]
    rule = WordRule()
    assert rule.surface_forms("ca") == ["ca", "Ca", "can't", "Can't"]  # "Ca" is unspellable here: left out


@pytest.mark.parametrize("context", ["the cat", "it"])
def test_exact_probabilities_match_sampled_frequencies(model_tok, context):
    model, tok = model_tok
    n = 6000
    record = {"id": "r", "context": context, "answers": [{"word": w, "count": 1} for w in WORDS],
              "num_answers": len(WORDS)}
    [q] = exact_word_probs(model, tok, [record], prompt="plain", strategy="tree")
    [samples] = sample_next_words(model, tok, [context], num_samples=n, seed=7, prompt="plain", max_new_tokens=8)
    freq = Counter(samples)
    assert sum(q.values()) < 1.0 and freq[NO_WORD] > 0  # failures (", and", "re...") exist and are residual mass
    for w in WORDS:
        p = q[w]
        sd = (p * (1 - p) / n) ** 0.5
        assert abs(freq[w] / n - p) < 5 * sd + 2e-3, (context, w, freq[w] / n, p)
    # "can" + "'t" reads "ca", never "can": it is counted in q("ca") through the spelling "can't"
    assert q["ca"] > 0 and q["can"] > 0


def test_a_spelling_inside_another_forms_end_mass_is_not_summed_twice():
    """With an ``n't`` token, " can't" can be spelled "▁ca" + "n't": that is already in q("ca")'s end mass."""
    vocab = {"<eos>": 0, "<unk>": 1, "\u2581ca": 2, "n't": 3, "\u2581the": 4}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(prepend_scheme="always"),
                                                 pre_tokenizers.Split(Regex("n't"), behavior="isolated")])
    tok.decoder = decoders.Metaspace(prepend_scheme="always")
    tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>")
    end = word_end_masks(tok)
    assert bool(end.masks[0, 3])  # "n't" after "ca" leaves the word "ca"
    assert _countable_forms(tok, ["ca", "Ca", "can't", "Can't"], " ", end) == ["ca"]


@pytest.mark.parametrize("text, ended, split, keep", [
    (" can't stop", False, "ca", "can't"),
    (" don't", True, "do", "don't"),
    (" it's", True, "it", "it's"),
    (" can'", False, None, None),          # n't or not: undecided
    (" well-known fact", False, "well-known", "well-known"),
    (" well- known", False, "well", "well"),
    (" well-", False, None, None),         # a hyphen at the end: the next character decides
    (" well-", True, "well", "well"),
    (" 3.5 kg", False, "3", "3"),
    (" U.S.", True, "u", "u"),
    ("\u2014and", True, NO_WORD, NO_WORD),  # punctuation first
    ("  mat ", True, NO_WORD, NO_WORD),     # two spaces
    (" caf\ufffd", False, None, None),      # a partial UTF-8 byte continues the word
])
def test_word_rule_cases(text, ended, split, keep):
    assert WordRule().first_word(text, ended=ended) == split
    assert WordRule(contractions="keep").first_word(text, ended=ended) == keep


def test_word_rule_rejects_unknown_contraction_mode():
    with pytest.raises(ValueError, match="contractions"):
        WordRule(contractions="merge")
