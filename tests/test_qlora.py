"""QLoRA on CPU: 4-bit nf4 loading, the AVX512-BF16 gradient workaround, training and adapter round trip.

Skipped without bitsandbytes (``pip install .[qlora]``). The tiny Llama has hidden size 64 so
that every projection has a multiple of 32 output rows, which bitsandbytes' CPU repacking needs.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from varylm_hf.errors import InputError
from varylm_hf.prompts import instruction_prompt
from varylm_hf.training.adapters import (
    LORA_TARGET_MODULES,
    apply_cpu_4bit_workaround,
    compute_dtype_4bit,
    load_qlora_model,
    lora_config,
    qlora_compute_dtype,
    qlora_quantization_config,
)
from varylm_hf.training.instruct import train_instruct
from varylm_hf.training.rows import chat_token_ids
from varylm_hf.training.sft_config import VarSFTConfig

bnb = pytest.importorskip("bitsandbytes")

from tests.test_sft import RECORDS, _completion_nll  # noqa: E402

N_LAYERS = 2
N_4BIT = 7 * N_LAYERS  # the seven projections of Appendix B per layer


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, tiny_chat_tokenizer):
    """A tiny random Llama (hidden 64, 2 layers) saved as safetensors: the "Hub" base model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_chat_tokenizer
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=N_LAYERS,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
    )
    path = tmp_path_factory.mktemp("qlora") / "base"
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def _load_4bit(path, compute_dtype=torch.float32):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        path, quantization_config=qlora_quantization_config(compute_dtype), device_map="cpu"
    ).eval()


def _4bit_layers(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]


def _dequantized_fp32_copy(model_4bit, path):
    """The float32 model whose linear weights are exactly the 4-bit model's dequantised weights."""
    from bitsandbytes.functional import dequantize_4bit
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    for name, layer in _4bit_layers(model_4bit):
        w = dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
        ref.get_submodule(name.removesuffix(".base_layer")).weight.data.copy_(w)
    return ref


def _with_lora(model, seed=1):
    """Wrap in the paper's LoRA (no dropout) with random A *and* B, so every LoRA weight gets a gradient."""
    from peft import get_peft_model

    cfg = lora_config(model)
    cfg.lora_dropout = 0.0
    peft_model = get_peft_model(model, copy.deepcopy(cfg))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return peft_model


IDS = torch.tensor([[1, 5, 7, 9, 11, 13, 40, 41, 42, 43, 60, 61]])


def _lora_grads(model):
    model.train()
    model.zero_grad()
    loss = model(input_ids=IDS, labels=IDS).loss
    loss.backward()
    return loss.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def _eval_forward(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=IDS).logits


def _worst_rel_err(grads, ref):
    assert grads.keys() == ref.keys() and len(ref) == 2 * N_4BIT
    return max(((grads[n] - ref[n]).norm() / ref[n].norm()).item() for n in ref)


# ----------------------------------------------------------------------------- config and loading


def test_compute_dtype_auto_is_bf16_on_cuda_fp32_on_cpu():
    assert qlora_compute_dtype("cuda") == torch.bfloat16 and qlora_compute_dtype("cuda:1") == torch.bfloat16
    assert qlora_compute_dtype("cpu") == torch.float32
    auto = qlora_quantization_config("auto").bnb_4bit_compute_dtype
    assert auto == (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    assert qlora_quantization_config().bnb_4bit_compute_dtype == torch.bfloat16  # the paper's default
    assert qlora_quantization_config(torch.float32).bnb_4bit_compute_dtype == torch.float32
    with pytest.raises(InputError, match="compute_dtype"):
        qlora_quantization_config("fp8")
    with pytest.raises(InputError, match="compute_dtype"):
        qlora_quantization_config(torch.int8)


def test_loads_as_nf4_double_quant_4bit(base_dir):
    model = _load_4bit(base_dir, "bfloat16")
    assert model.is_loaded_in_4bit
    layers = _4bit_layers(model)
    assert sorted({n.rsplit(".", 1)[-1] for n, _ in layers}) == sorted(LORA_TARGET_MODULES)
    assert len(layers) == N_4BIT
    for _, layer in layers:
        state = layer.weight.quant_state
        assert state.quant_type == "nf4" and state.nested  # nested = double quantisation
        assert layer.weight.dtype == torch.uint8 and layer.compute_dtype == torch.bfloat16
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit)  # head and embeddings stay full precision
    assert compute_dtype_4bit(model) == torch.bfloat16


def test_workaround_sets_flag_on_every_4bit_layer(base_dir, tiny_chat_llama):
    model = _load_4bit(base_dir)
    for _, layer in _4bit_layers(model):
        layer.support_avx512bf16_for_cpu = True  # what bitsandbytes sets on an AVX512-BF16 CPU
    assert apply_cpu_4bit_workaround(model) == N_4BIT
    assert all(layer.support_avx512bf16_for_cpu is False for _, layer in _4bit_layers(model))
    assert apply_cpu_4bit_workaround(tiny_chat_llama) == 0  # no 4-bit layers: nothing to do
    assert compute_dtype_4bit(tiny_chat_llama) is None


# ----------------------------------------------------------------------------- gradients (DESIGN.md §3)


def test_lora_grads_after_eval_forward_equal_dequantized_fp32_grads(base_dir):
    """The bug guarded against: an eval forward repacks the weights and later LoRA gradients go wrong."""
    model = _load_4bit(base_dir)  # float32 compute: the 4-bit model is then exactly its dequantised copy
    assert apply_cpu_4bit_workaround(model) == N_4BIT
    ref = _with_lora(_dequantized_fp32_copy(model, base_dir))
    model = _with_lora(model)
    _eval_forward(model)  # as Trainer's evaluation does between training steps
    assert not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for _, m in _4bit_layers(model))
    loss, grads = _lora_grads(model)
    ref_loss, ref_grads = _lora_grads(ref)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    assert _worst_rel_err(grads, ref_grads) < 1e-4


def test_bf16_compute_grads_close_to_dequantized_fp32_grads(base_dir):
    model = _load_4bit(base_dir, torch.bfloat16)
    apply_cpu_4bit_workaround(model)
    ref = _with_lora(_dequantized_fp32_copy(model, base_dir))
    model = _with_lora(model)
    _eval_forward(model)
    _, grads = _lora_grads(model)
    _, ref_grads = _lora_grads(ref)
    assert _worst_rel_err(grads, ref_grads) < 5e-2  # bf16 rounding only


def test_repacked_weights_give_wrong_grads_until_the_workaround_restores_them(base_dir):
    """Without the workaround (flag on, as on an AVX512-BF16 CPU) the check above fails; the workaround
    restores weights that an earlier eval forward had already repacked."""
    model = _load_4bit(base_dir)
    ref = _with_lora(_dequantized_fp32_copy(model, base_dir))
    model = _with_lora(model)
    for _, layer in _4bit_layers(model):
        layer.support_avx512bf16_for_cpu = True
    _eval_forward(model)
    assert all(m.weight.quant_state.packing_format_for_cpu for _, m in _4bit_layers(model))
    _, ref_grads = _lora_grads(ref)
    _, bad = _lora_grads(model)
    # If this fails, bitsandbytes trains correctly on repacked weights and the workaround may go.
    assert _worst_rel_err(bad, ref_grads) > 1e-2

    assert apply_cpu_4bit_workaround(model) == N_4BIT
    assert not any(m.weight.quant_state.packing_format_for_cpu for _, m in _4bit_layers(model))
    # the round trip re-quantises the double-quantised scales: compare with the weights as they are now
    ref_now = _with_lora(_dequantized_fp32_copy(model.get_base_model(), base_dir))
    _, grads = _lora_grads(model)
    _, ref_now_grads = _lora_grads(ref_now)
    assert _worst_rel_err(grads, ref_now_grads) < 1e-4
    assert _worst_rel_err(grads, ref_grads) < 2e-2  # and close to the weights as first loaded


# ----------------------------------------------------------------------------- training


def test_qlora_training_reduces_loss_and_adapter_round_trips(tmp_path, base_dir, tiny_chat_tokenizer):
    from peft import PeftModel

    tok = tiny_chat_tokenizer
    model = _load_4bit(base_dir, qlora_compute_dtype("cpu"))
    apply_cpu_4bit_workaround(model)
    before = _completion_nll(model, tok, RECORDS)
    for _, layer in _4bit_layers(model):
        layer.support_avx512bf16_for_cpu = True  # as on an AVX512-BF16 CPU: train_instruct must turn it off
    out = tmp_path / "qlora"
    cfg = VarSFTConfig(
        output_dir=str(out), recipe="sft", learning_rate=5e-2, batch_size=9, per_device_batch_size=9,
        num_train_epochs=2, logging_steps=1, base_model_id=str(base_dir), data="unit-test",
    )
    trainer = train_instruct(model, tok, RECORDS, RECORDS, cfg)  # evaluates after every epoch
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2 and sum("eval_loss" in h for h in trainer.state.log_history) == 2
    trained = trainer.model.eval()
    after = _completion_nll(trained, tok, RECORDS)
    assert after < before - 0.2, (before, after)
    assert all(m.support_avx512bf16_for_cpu is False for _, m in _4bit_layers(trained))
    lora = [p for n, p in trained.named_parameters() if "lora_" in n]
    assert len(lora) == 2 * N_4BIT and all(p.dtype == torch.float32 for p in lora)  # not TRL's bf16 cast

    run = json.loads((out / "varylm_run.json").read_text())
    assert run["hyperparameters"]["qlora"] is True and run["extra"]["bnb_4bit_compute_dtype"] == "float32"
    assert "QLoRA 4-bit nf4 + double quantisation, float32 compute" in (out / "README.md").read_text()

    ids = torch.tensor([sum(chat_token_ids(tok, instruction_prompt("The cat"), "sat"), [])])
    with torch.no_grad():
        ref = trained(input_ids=ids).logits
        fresh = _load_4bit(base_dir, qlora_compute_dtype("cpu"))  # quantisation is deterministic
        apply_cpu_4bit_workaround(fresh)
        reloaded = PeftModel.from_pretrained(fresh, out).eval()
        torch.testing.assert_close(reloaded(input_ids=ids).logits, ref, rtol=0, atol=1e-5)


def test_load_qlora_model_from_folder(base_dir, tiny_chat_tokenizer, tmp_path):
    folder = tmp_path / "m"
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(base_dir).save_pretrained(folder)
    tiny_chat_tokenizer.save_pretrained(folder)
    model, tok = load_qlora_model(str(folder))
    assert model.is_loaded_in_4bit and not model.training and len(_4bit_layers(model)) == N_4BIT
    assert compute_dtype_4bit(model) == qlora_compute_dtype()
    assert all(m.support_avx512bf16_for_cpu is False for _, m in _4bit_layers(model))
    assert tok.chat_template == tiny_chat_tokenizer.chat_template
