"""Provider adapters, by kind (an explicit registry: no entry points, no file-name magic)."""

from __future__ import annotations

from .base import ProviderAdapter
from .deepseek import DeepSeekAdapter
from .gemini import GeminiAdapter
from .grok import GrokAdapter
from .ollama import OllamaAdapter
from .openai import OpenAIAdapter

ADAPTERS: dict[str, type[ProviderAdapter]] = {
    OpenAIAdapter.kind: OpenAIAdapter,
    GeminiAdapter.kind: GeminiAdapter,
    DeepSeekAdapter.kind: DeepSeekAdapter,
    GrokAdapter.kind: GrokAdapter,
    OllamaAdapter.kind: OllamaAdapter,
}

__all__ = ["ADAPTERS", "ProviderAdapter"]
