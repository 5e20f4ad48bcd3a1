"""The model seen by the engine: unwrapping (DDP, accelerate, peft), what its config and forward accept, and the
forward calls that return only the logits rows the scorer needs."""

from __future__ import annotations

import inspect

import torch


def _unwrap(model):
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):  # DDP / accelerate
        model = model.module
    return model


def _forward_params(model) -> set:
    inner = _unwrap(model)
    base = getattr(inner, "get_base_model", None)  # peft
    target = base() if callable(base) else inner
    return set(inspect.signature(target.forward).parameters)


def _model_max_positions(model) -> int | None:
    cfg = _unwrap(model).config
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _model_dtype_device(model):
    inner = _unwrap(model)
    dtype = getattr(inner, "dtype", None)
    if dtype is None or not dtype.is_floating_point:
        dtype = next(p.dtype for p in inner.parameters() if p.dtype.is_floating_point)
    device = next(inner.parameters()).device
    return dtype, device


def supports_tree_attention(model, longest: int | None = None) -> bool:
    """True when the model's attention implementation takes a float 4D mask (eager, sdpa) and, given the
    ``longest`` scored sequence (tokens), no layer's sliding window is shorter than it (:func:`attention_window`:
    the 4D mask is used as given, so a window would be ignored)."""
    impl = getattr(_unwrap(model).config, "_attn_implementation", None)
    if impl not in (None, "eager", "sdpa"):
        return False
    window = attention_window(model) if longest is not None else None
    return window is None or longest <= window


def attention_window(model) -> int | None:
    """The smallest sliding-window or chunked-attention span of the model's layers, or None (full attention).

    Tries and cached trunks hand the model a 4D mask, which it uses as given: exact only while every scored
    sequence fits in this span (:func:`supports_tree_attention`; ``score_token_ids`` falls back to ``context``).
    """
    cfg = _unwrap(model).config
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    sliding, chunk = getattr(cfg, "sliding_window", None), getattr(cfg, "attention_chunk_size", None)
    types = getattr(cfg, "layer_types", None)
    spans = []
    if isinstance(types, (list, tuple)):
        if sliding and any("sliding" in str(t) for t in types):
            spans.append(int(sliding))
        if chunk and any("chunk" in str(t) for t in types):
            spans.append(int(chunk))
    else:
        if sliding and getattr(cfg, "use_sliding_window", True):
            spans.append(int(sliding))
        if chunk:
            spans.append(int(chunk))
    return min(spans) if spans else None


def _logits_at(model, input_ids, keep, params, **kw) -> torch.Tensor:
    """Logits (N, V) at the True positions of the boolean (B, T) ``keep`` mask, row-major."""
    if "logits_to_keep" in params:
        logits = model(input_ids=input_ids, logits_to_keep=keep, use_cache=False, **kw).logits
        if logits.dim() == 2:
            return logits
    else:
        logits = model(input_ids=input_ids, use_cache=False, **kw).logits
    return logits[keep]


def _forward_rows(model, ids, pos, mask, keep_idx, params, device, **kw):
    """Logits (K, V) of one row at the positions ``keep_idx`` (a forward with a 4D mask, maybe a cache)."""
    ids_t = torch.tensor([ids], device=device)
    pos_t = torch.tensor([pos], device=device)
    keep_t = torch.tensor(keep_idx, dtype=torch.long, device=device)
    if "logits_to_keep" in params and keep_idx:
        logits = model(input_ids=ids_t, position_ids=pos_t, attention_mask=mask.to(device), logits_to_keep=keep_t,
                       **kw).logits
        return logits[0]
    logits = model(input_ids=ids_t, position_ids=pos_t, attention_mask=mask.to(device), **kw).logits
    return logits[0, keep_t]


def _cache_kwarg(params: set) -> str:
    return "cache" if "cache" in params else "past_key_values"
