"""GPT configurations for planning by name: the GPT-2 presets of flopgrad.models and more.

>>> from flopgrad.planning.presets import PLANNING_PRESETS
>>> PLANNING_PRESETS["gpt3-175b"].d_model
12288
"""

from __future__ import annotations

from flopgrad.models import PRESETS, GPTConfig

__all__ = ["PLANNING_PRESETS", "model_config"]

# GPT-architecture configurations for planning, beside the GPT-2 presets of flopgrad.models.
PLANNING_PRESETS: dict[str, GPTConfig] = {
    **PRESETS,
    "gpt3-175b": GPTConfig(96, 96, 12288, 2048, 50257),
    "gpt3-6.7b": GPTConfig(32, 32, 4096, 2048, 50257),
    # LLaMA-7B's dimensions on the GPT block (4x GELU MLP, LayerNorm, learned positions):
    # 6.7B parameters like LLaMA-7B's 6.74B, not its SwiGLU/RMSNorm/RoPE architecture.
    "llama-7b-style": GPTConfig(32, 32, 4096, 4096, 32000, bias=False, tied_embeddings=False),
    "llama-13b-style": GPTConfig(40, 40, 5120, 4096, 32000, bias=False, tied_embeddings=False),
}


def model_config(model: str | GPTConfig) -> GPTConfig:
    """A GPTConfig from a preset name or a GPTConfig (unknown names list the known ones).

    >>> import flopgrad as fg
    >>> fg.planning.model_config("llama-7b-style").num_params()
    6721638400
    """
    if isinstance(model, GPTConfig):
        return model
    if model not in PLANNING_PRESETS:
        raise KeyError(f"unknown model {model!r}; known presets: "
                       f"{', '.join(sorted(PLANNING_PRESETS))}")
    return PLANNING_PRESETS[model]
