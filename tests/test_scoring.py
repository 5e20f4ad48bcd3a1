"""Word scoring engine: every strategy and definition against a brute force written here."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from varylm_hf import scoring
from varylm_hf.data.words import WordRule
from varylm_hf.errors import InputError
from varylm_hf.scoring import (
    DEFINITIONS,
    STRATEGIES,
    engine,
    score_token_ids,
    score_words,
    word_end_masks,
    word_logprobs,
    word_loss,
    word_start_mask,
    word_token_ids,
)

from conftest import make_tiny_word_tokenizer, tiny_gpt2, tiny_word_llama

CONTEXTS = [
    "There are now",
    "There are now rumblings",
    "There are now rumblings that",  # prefixes of each other: one passage trunk
    "The cat sat on",
    "",  # empty context: BOS (or EOS) only
    "The cat sat on the mat.",
]
WORDS = [
    ["rumblings", "birds", "is", "rumblings", "zq"],  # duplicate word; multi-token words
    ["that", "Apple", ","],
    ["Apple", "apple", "the"],
    ["the", "The", "mat", "there"],
    ["The", "cat"],
    ["Doesn't", "there", "'s"],
]


def _text_after(tokenizer, i: int) -> str:
    """Token ``i``'s text as it reads after a letter (decoded beside an anchor, keeping a leading space)."""
    anchor = tokenizer("x", add_special_tokens=False)["input_ids"][-1:]
    return tokenizer.decode(anchor + [i])[len(tokenizer.decode(anchor)):]


def _end_set(tokenizer, word: str) -> set[int]:
    """Independent end-of-word rule: every token after which the sampler's cut leaves exactly ``word``."""
    out = set(tokenizer.all_special_ids)
    for i in range(len(tokenizer)):
        text = _text_after(tokenizer, i)
        if {WordRule().cut(" " + word + text + tail, ended=True) for tail in (" ", "a")} == {word}:
            out.add(i)
    return out


def brute_force(model, tokenizer, contexts, words, definition):
    """One forward per (context, word), no mask, full logits: the reference (``paper``, ``eow``, ``pm``)."""
    out = []
    for context, ws in zip(contexts, words):
        ctx = scoring.context_token_ids(tokenizer, context)
        vals = []
        for w in ws:
            wid = word_token_ids(tokenizer, context, w)
            seq = torch.tensor([ctx + wid])
            logp = torch.log_softmax(model(input_ids=seq).logits[0].float(), -1)
            lp = sum(logp[len(ctx) - 1 + m, t] for m, t in enumerate(wid))
            if definition == "eow":
                spelled = tokenizer.decode(wid).strip()
                if WordRule().cut(" " + spelled + " ", ended=True) != spelled:  # not a word ("," "'s"): as its last letter
                    spelled = "an" if spelled[-1:] in "nN" else "ab"
                lp = lp + torch.logsumexp(logp[len(ctx) + len(wid) - 1, sorted(_end_set(tokenizer, spelled))], -1)
            elif definition == "pm":  # + log E(after the word) - log S(after the context), wordsprobability's boundary
                end, begin = scoring.pm_boundary(tokenizer, logp.shape[-1])
                cls = begin.classes([wid[0]], [not context.strip()])[0]
                lp = (lp + torch.logsumexp(logp[len(ctx) + len(wid) - 1][end.masks[0]], -1)
                      - torch.log((logp[len(ctx) - 1].exp() * begin.weights[cls]).sum()))
            vals.append(lp)
        out.append(torch.stack(vals))
    return out


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model_tok(request):
    if request.param == "gpt2":
        tok = make_tiny_word_tokenizer("bytelevel")
        return tiny_gpt2(len(tok)), tok
    tok = make_tiny_word_tokenizer("metaspace")
    return tiny_word_llama(len(tok)), tok


@pytest.mark.parametrize("definition", DEFINITIONS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategies_match_brute_force(model_tok, definition, strategy):
    model, tok = model_tok
    with torch.no_grad():
        ref = brute_force(model, tok, CONTEXTS, WORDS, definition)
        got = score_words(model, tok, CONTEXTS, WORDS, definition=definition, strategy=strategy, batch_size=4)
    assert [len(g) for g in got] == [len(w) for w in WORDS]
    for r, g in zip(ref, got):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=0)
    # the test is sensitive: distributions are far from uniform and contexts matter
    assert abs(float(ref[0][0] - ref[3][0])) > 1e-2


def test_eager_attention_matches_too():
    tok = make_tiny_word_tokenizer("bytelevel")
    model = tiny_gpt2(len(tok), attn="eager")
    with torch.no_grad():
        ref = brute_force(model, tok, CONTEXTS, WORDS, "eow")
        got = score_words(model, tok, CONTEXTS, WORDS, definition="eow", strategy="passage")
    for r, g in zip(ref, got):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=0)


@pytest.mark.parametrize("strategy", ["context", "tree", "passage"])
@pytest.mark.parametrize("definition", DEFINITIONS)
def test_gradient_matches_autograd_on_brute_force(strategy, definition):
    tok = make_tiny_word_tokenizer("bytelevel")
    model = tiny_gpt2(len(tok), seed=1).double()
    targets = [torch.softmax(torch.arange(len(w), dtype=torch.float64), 0) for w in WORDS]

    def grads(fn):
        model.zero_grad()
        word_loss(fn(), targets).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    ref = grads(lambda: brute_force(model, tok, CONTEXTS, WORDS, definition))
    got = grads(lambda: score_words(model, tok, CONTEXTS, WORDS, definition=definition, strategy=strategy))
    assert ref.keys() == got.keys() and len(ref) > 5
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], atol=1e-8, rtol=1e-6, msg=name)


@pytest.mark.parametrize("chunk,rows", [(1, 64), (3, 64), (3, 2), (256, 1)])
def test_passage_branch_chunks_match_brute_force(monkeypatch, model_tok, chunk, rows):
    """Without gradients the passage strategy runs the trunk once (KV cache) and the word branches in chunks, each
    chunk attending only to the trunk nodes it needs (non-contiguous here: BOS and the second passage), and
    normalises the logits ``rows`` rows at a time (a word's rows may fall in different blocks)."""
    from varylm_hf.scoring import gather, trie

    model, tok = model_tok
    model = copy.deepcopy(model).double()
    monkeypatch.setattr(engine, "_BRANCH_CHUNK_TOKENS", chunk)  # patched where score_token_ids looks them up
    monkeypatch.setattr(gather, "_REDUCE_ROWS", rows)
    calls, widths = [], []
    trunk = engine._score_trunk
    monkeypatch.setattr(engine, "_score_trunk", lambda *a, **k: calls.append(k.get("chunk_tokens", a[5])) or trunk(*a, **k))
    float_mask = trie._float_mask
    monkeypatch.setattr(trie, "_float_mask", lambda allowed, dtype: widths.append(allowed.shape) or float_mask(allowed, dtype))
    for definition in ("paper", "eow", "pm"):
        with torch.no_grad():
            ref = brute_force(model, tok, CONTEXTS, WORDS, definition)
            got = score_words(model, tok, CONTEXTS, WORDS, definition=definition, strategy="passage")
        for r, g in zip(ref, got):
            torch.testing.assert_close(g, r.to(g.dtype), atol=1e-6, rtol=1e-6)
    assert calls == [chunk, chunk, chunk]  # the cached-trunk path with the patched chunk, not training's one forward
    n_trunk = widths[0][0]  # the first mask of a call is the trunk's (square)
    branch = [(q, k) for q, k in widths if q != k or q != n_trunk]
    assert branch and all(k - q <= n_trunk for q, k in branch)
    if chunk < 256:  # several chunks: some see only part of the trunk (BOS + their passage)
        assert min(k - q for q, k in branch) < n_trunk


def test_sliding_window_models_are_scored_exactly():
    """A sliding-window model: sequences longer than the window fall back to the ``context`` strategy (the model's
    own masks); shorter ones keep the trie, and the cached trunk, longer than the window, falls back to one forward."""
    from transformers import MistralConfig, MistralForCausalLM

    tok = make_tiny_word_tokenizer("metaspace")
    lengths = [len(scoring.context_token_ids(tok, c)) + max(len(word_token_ids(tok, c, w)) for w in ws)
               for c, ws in zip(CONTEXTS, WORDS)]
    for window in (3, max(lengths)):
        torch.manual_seed(0)
        cfg = MistralConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                            sliding_window=window, initializer_range=0.2, bos_token_id=0, eos_token_id=1)
        cfg._attn_implementation = "sdpa"
        model = MistralForCausalLM(cfg).eval().double()
        assert scoring.attention_window(model) == window
        with torch.no_grad():
            ref = brute_force(model, tok, CONTEXTS, WORDS, "eow")
            for strategy in ("tree", "passage"):
                got = score_words(model, tok, CONTEXTS, WORDS, definition="eow", strategy=strategy)
                for r, g in zip(ref, got):
                    torch.testing.assert_close(g, r, atol=1e-8, rtol=1e-6, msg=f"window {window}, {strategy}")
    assert scoring.attention_window(tiny_word_llama(len(tok))) is None


def test_word_tokenisation_conventions(bpe_tokenizer, sp_tokenizer):
    # GPT-2 BPE: the word carries its leading space; no space before punctuation or at the start
    assert word_token_ids(bpe_tokenizer, "The cat sat on", "mat") == bpe_tokenizer(" mat")["input_ids"]
    assert word_token_ids(bpe_tokenizer, "The cat sat on ", "mat") == bpe_tokenizer(" mat")["input_ids"]
    assert word_token_ids(bpe_tokenizer, "The cat", ",") == bpe_tokenizer(",")["input_ids"]
    assert word_token_ids(bpe_tokenizer, "", "The") == bpe_tokenizer("The")["input_ids"]
    # SentencePiece style: "▁word"
    ids = word_token_ids(sp_tokenizer, "The cat sat on", "mat")
    assert sp_tokenizer.convert_ids_to_tokens(ids)[0].startswith("\u2581")
    with pytest.raises(InputError, match="non-empty"):
        word_token_ids(bpe_tokenizer, "The cat", "  ")


class _MergingTokenizer:
    """Characters as ids, except that "a," is one token: a context ending in "a" merges with a following ","."""

    def _ids(self, text):
        ids, i = [], 0
        while i < len(text):
            if text[i : i + 2] == "a,":
                ids.append(999)
                i += 2
            else:
                ids.append(ord(text[i]))
                i += 1
        return ids

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self._ids(t) for t in text] if isinstance(text, list) else self._ids(text)}


def test_words_token_ids_equals_one_call_per_word(bpe_tokenizer, sp_tokenizer):
    """The batched tokenisation (one context call, one batched call for the words) gives every word's ids of
    word_token_ids, with punctuation, apostrophes, hyphens, digits, capitals and an empty context; the merge
    fallback warns once per merged word."""
    words = ["mat", ",", "'s", "self-esteem", "Mat", "2", "  x ", "mat"]
    for tok in (bpe_tokenizer, sp_tokenizer):
        for context in ("The cat sat on ", "", "He said"):
            assert scoring.words_token_ids(tok, context, words) == [word_token_ids(tok, context, w) for w in words]
    assert scoring.words_token_ids(bpe_tokenizer, "The cat", []) == []
    merging = _MergingTokenizer()
    with pytest.warns(UserWarning, match="merges the word ','") as caught:
        ids = scoring.words_token_ids(merging, "a", [",", "b", ","])
    assert ids == [[ord(",")], [ord(" "), ord("b")], [ord(",")]] and len(caught) == 2
    with pytest.raises(InputError, match="non-empty"):
        scoring.words_token_ids(bpe_tokenizer, "The cat", ["mat", " "])


def test_word_end_masks(bpe_tokenizer, sp_tokenizer):
    for tok in (bpe_tokenizer, sp_tokenizer):
        end = word_end_masks(tok)
        assert set(end.masks[0].nonzero().flatten().tolist()) == _end_set(tok, "ab")
        assert set(end.masks[1].nonzero().flatten().tolist()) == _end_set(tok, "an")
        assert word_end_masks(tok) is end  # cached per tokenizer
        assert end.masks[:, tok.eos_token_id].all()
        assert torch.equal(word_start_mask(tok), end.masks[0])
    padded = word_end_masks(bpe_tokenizer, len(bpe_tokenizer) + 7)
    assert padded.masks.shape == (2, len(bpe_tokenizer) + 7) and not padded.masks[:, -7:].any()


def test_eow_is_paper_times_word_end_probability(gpt2_pair):
    model, tok = gpt2_pair
    paper = word_logprobs(model, tok, ["The cat sat on"], [["the", "mat"]], definition="paper")[0]
    eow = word_logprobs(model, tok, ["The cat sat on"], [["the", "mat"]], definition="eow")[0]
    assert all(e < p for e, p in zip(eow, paper))
    # by hand: q_eow(mat) = q_paper(mat) * P(next token starts a word | "The cat sat on mat")
    ids = scoring.context_token_ids(tok, "The cat sat on") + word_token_ids(tok, "The cat sat on", "mat")
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, -1], -1)
    end = float(probs[word_start_mask(tok)].sum())
    assert math.isclose(math.exp(eow[1]), math.exp(paper[1]) * end, rel_tol=1e-4)


def test_passage_strategy_shares_the_trunk(bpe_tokenizer):
    ctx = [scoring.context_token_ids(bpe_tokenizer, c) for c in CONTEXTS[:3]]
    words = [[word_token_ids(bpe_tokenizer, c, "x")] for c in CONTEXTS[:3]]
    tree_nodes = scoring._build_forest(ctx, words, True, merge_contexts=False)[0]
    passage_nodes = scoring._build_forest(ctx, words, True, merge_contexts=True)[0]
    assert len(tree_nodes) == sum(len(c) for c in ctx) + 3 * len(words[0][0])
    assert len(passage_nodes) == len(ctx[2]) + 3 * len(words[0][0])


def test_truncation_and_prompt_ids(gpt2_pair):
    model, tok = gpt2_pair
    context, words = "There are now rumblings that Apple might", ["soon", "be"]
    got = score_words(model, tok, [context], [words], max_context_tokens=3)[0]
    ctx = [tok.bos_token_id] + tok(context)["input_ids"][-3:]
    want = score_token_ids(model, [ctx], [[word_token_ids(tok, context, w) for w in words]], strategy="pair")[0]
    torch.testing.assert_close(got, want)
    prompt = tok("Context:")["input_ids"]
    got = score_words(model, tok, ["The cat"], [["sat"]], prompt_ids=prompt)[0]
    ctx = [tok.bos_token_id] + prompt + tok("The cat")["input_ids"]
    want = score_token_ids(model, [ctx], [[word_token_ids(tok, "The cat", "sat")]], strategy="pair")[0]
    torch.testing.assert_close(got, want)


def test_long_context_is_cut_to_fit_the_model(gpt2_pair):
    model, tok = gpt2_pair  # 128 positions
    context = " ".join(["The cat sat on the mat."] * 40)
    (lp,) = word_logprobs(model, tok, [context], [["dog"]], definition="eow")
    assert math.isfinite(lp[0])
    with pytest.raises(InputError, match="no room"):
        score_words(model, tok, ["The"], [["cat" * 200]])


def test_fallback_when_4d_masks_are_refused(gpt2_pair, monkeypatch):
    model, tok = gpt2_pair
    ref = word_logprobs(model, tok, CONTEXTS, WORDS, strategy="pair")
    calls = []
    original = engine._score_context  # patched where score_token_ids looks them up
    monkeypatch.setattr(engine, "supports_tree_attention", lambda m, longest=None: False)
    monkeypatch.setattr(engine, "_score_context", lambda *a: calls.append(1) or original(*a))
    got = word_logprobs(model, tok, CONTEXTS, WORDS, strategy="tree", batch_size=100)
    assert calls == [1]
    for r, g in zip(ref, got):
        assert g == pytest.approx(r, abs=1e-4)


def test_bad_arguments(gpt2_pair):
    model, tok = gpt2_pair
    with pytest.raises(InputError, match="definition"):
        score_words(model, tok, ["a"], [["b"]], definition="exact")
    with pytest.raises(InputError, match="strategy"):
        score_words(model, tok, ["a"], [["b"]], strategy="fast")
    with pytest.raises(InputError, match="word_start_mask"):
        score_token_ids(model, [[1, 2]], [[[3]]], definition="eow")
    with pytest.raises(InputError, match="no tokens"):
        score_token_ids(model, [[1, 2]], [[[]]])
    with pytest.raises(InputError, match="contexts but"):
        score_words(model, tok, ["a", "b"], [["b"]])
    # a context without words gives an empty tensor
    out = score_words(model, tok, ["a", "b"], [[], ["c"]])
    assert out[0].shape == (0,) and out[1].shape == (1,)


def test_no_bos_or_eos_token_is_reported(bpe_tokenizer):
    from transformers import PreTrainedTokenizerFast

    bare = PreTrainedTokenizerFast(tokenizer_object=bpe_tokenizer.backend_tokenizer)
    sep = bare.convert_tokens_to_ids("<|endoftext|>")  # in the vocabulary: the document separator
    assert scoring.context_token_ids(bare, "The cat") == [sep] + bpe_tokenizer("The cat")["input_ids"]
    assert scoring.context_token_ids(bare, "The cat", bos="none") == bpe_tokenizer("The cat")["input_ids"]
    with pytest.raises(InputError, match="no BOS/EOS"):
        scoring.context_token_ids(bare, "", bos="none")
    with pytest.raises(InputError, match="--bos"):
        scoring.context_token_ids(bare, "The cat", bos="<nope>")


def test_word_loss_by_hand():
    logq = [torch.log(torch.tensor([0.5, 0.25])), torch.log(torch.tensor([0.1]))]
    p = [torch.tensor([0.75, 0.25]), torch.tensor([1.0])]
    want = ((-(0.75 * math.log(0.5) + 0.25 * math.log(0.25))) + (-math.log(0.1))) / 2
    assert float(word_loss(logq, p)) == pytest.approx(want)
    with pytest.raises(InputError):
        word_loss(logq, p[:1])
    with pytest.raises(InputError):
        word_loss(logq, [p[1], p[0]])


def test_word_scorer_prepared_conditioning_equals_the_prompt_ids_path():
    """WordScorer.score_prepared(ids) == scoring after an empty context with those ids as the prompt (and no BOS);
    score_words is WordScorer.score."""
    tok = make_tiny_word_tokenizer("bytelevel")
    model = tiny_gpt2(len(tok), seed=3)
    prompts = [tok("Instruction: say a word", add_special_tokens=False)["input_ids"],
               tok("Context: There are now", add_special_tokens=False)["input_ids"]]
    words = [["rumblings", "the"], ["Apple", "birds"]]
    with torch.no_grad():
        scorer = scoring.WordScorer(model, tok, definition="eow", strategy="passage")
        got = scorer.score_prepared(prompts, words)
        ref = score_words(model, tok, ["", ""], words, definition="eow", strategy="passage", prompt_ids=prompts,
                          bos="none")
        plain = scorer.score(CONTEXTS, WORDS)
        want = score_words(model, tok, CONTEXTS, WORDS, definition="eow", strategy="passage")
    for g, r in zip(got + plain, ref + want):
        torch.testing.assert_close(g, r, atol=1e-6, rtol=0)
    with pytest.raises(InputError, match="2 conditionings but 1 word lists"):
        scorer.score_prepared(prompts, words[:1])


def test_passage_strategy_trains_under_gradient_checkpointing():
    """Checkpointed layers drop the KV cache: the passage strategy then runs its merged trie in one forward."""
    tok = make_tiny_word_tokenizer("bytelevel")
    model = tiny_gpt2(len(tok), seed=4)
    with torch.no_grad():
        ref = score_words(model, tok, CONTEXTS, WORDS, definition="eow", strategy="tree")
    model.gradient_checkpointing_enable()
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    got = score_words(model, tok, CONTEXTS, WORDS, definition="eow", strategy="passage")
    word_loss(got, [torch.ones(len(w)) / len(w) for w in WORDS]).backward()
    for g, r in zip(got, ref):
        torch.testing.assert_close(g.detach(), r, atol=1e-5, rtol=0)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_word_end_mass_that_underflows_has_finite_gradients():
    x = torch.tensor([[-0.01, -120.0, -120.0], [-0.5, -1.0, -2.0]], requires_grad=True)
    out = scoring._class_log_mass(x, torch.tensor([[False, True, True]]), torch.tensor([0, 0]))
    torch.testing.assert_close(out.detach(), torch.logsumexp(x.detach()[:, 1:], -1))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
