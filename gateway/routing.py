"""Step 3 of the request path: the model a client names -> the ``Target`` to call.

Pure: no I/O. Rules, in order:

1. ``[aliases]`` from config are expanded first (``fast = "gemini/gemini-2.0-flash"``).
2. ``provider/model`` always selects that provider (``ollama/llama3.2``).
3. A provider's name alone selects its ``default_model`` (``"model": "gemini"``).
4. A bare model is routed by the family that serves it: ``gpt-*``, ``chatgpt-*``,
   ``o1*``, ``o3*``, ``o4*`` to OpenAI, ``gemini-*`` to Gemini, ``deepseek-*`` to
   DeepSeek, ``grok-*`` to Grok.
5. Otherwise, the first enabled provider that lists the model (config ``models``,
   or a live list such as Ollama's, handed in as ``extra_models``).

A disabled provider or an unknown model raises ``ModelNotFound`` naming the model.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import ModelNotFound
from .providers.base import Target
from .settings import ProviderSettings, Settings

_FAMILIES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("gpt-", "chatgpt-", "o1", "o3", "o4"), "openai"),
    (("gemini-",), "gemini"),
    (("deepseek-",), "deepseek"),
    (("grok-",), "grok"),
)


def family_of(model: str) -> str | None:
    for prefixes, kind in _FAMILIES:
        if model.startswith(prefixes):
            return kind
    return None


class Router:
    def __init__(self, settings: Settings) -> None:
        self._providers = settings.providers
        self._aliases = settings.aliases
        self._fallbacks = settings.fallbacks

    def _target(self, name: str, p: ProviderSettings, model: str) -> Target:
        return Target(
            provider=name, kind=p.kind, model=model, base_url=p.base_url, api_key=p.api_key
        )

    def _enabled(self, name: str, requested: str) -> ProviderSettings:
        p = self._providers.get(name)
        if p is None or not p.enabled:
            state = "not configured" if p is None else "disabled"
            raise ModelNotFound(
                f"The model `{requested}` does not exist: provider {name} is {state}.",
                param="model",
            )
        return p

    def resolve(
        self, requested: str, extra_models: Mapping[str, frozenset[str]] | None = None
    ) -> Target:
        model = self._aliases.get(requested, requested)
        name, sep, rest = model.partition("/")
        if sep and name in self._providers:
            if not rest:
                raise ModelNotFound(
                    f"The model `{requested}` names no model after `{name}/`.", param="model"
                )
            return self._target(name, self._enabled(name, requested), rest)
        if model in self._providers:
            p = self._enabled(model, requested)
            if not p.default_model:
                raise ModelNotFound(
                    f"Provider {model} has no default_model; name a model as `{model}/<model>`.",
                    param="model",
                )
            return self._target(model, p, p.default_model)
        kind = family_of(model)
        if kind is not None:
            # Prefer a provider named like the family, then any enabled one of that kind.
            candidates = [kind] + [
                n for n, p in self._providers.items() if p.kind == kind and n != kind
            ]
            for n in candidates:
                found = self._providers.get(n)
                if found is not None and found.enabled:
                    return self._target(n, found, model)
            self._enabled(kind, requested)  # raises with the reason
        for n, p in self._providers.items():
            if p.enabled and (
                model in p.models or model in (extra_models or {}).get(n, frozenset())
            ):
                return self._target(n, p, model)
        raise ModelNotFound(
            f"The model `{requested}` does not exist or is not served by any enabled provider.",
            param="model",
        )

    def targets(
        self, requested: str, extra_models: Mapping[str, frozenset[str]] | None = None
    ) -> list[Target]:
        """The routed target, then its ``[fallbacks]`` chain (entries that do not
        resolve now, e.g. a disabled provider, are skipped)."""
        first = self.resolve(requested, extra_models)
        chain = (
            self._fallbacks.get(requested)
            or self._fallbacks.get(f"{first.provider}/{first.model}")
            or self._fallbacks.get(first.model, [])
        )
        out = [first]
        for name in chain:
            try:
                target = self.resolve(name, extra_models)
            except ModelNotFound:
                continue
            if target not in out:
                out.append(target)
        return out

    def listed_models(
        self, extra_models: Mapping[str, frozenset[str]] | None = None
    ) -> list[tuple[str, str]]:
        """(model id as clients should send it, provider) for every enabled provider."""
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        for n, p in self._providers.items():
            if not p.enabled:
                continue
            ids = [p.default_model, *p.models, *sorted((extra_models or {}).get(n, ()))]
            for m in ids:
                if not m:
                    continue
                try:
                    bare_ok = self.resolve(m, extra_models).provider == n
                except ModelNotFound:
                    bare_ok = False
                mid = m if bare_ok else f"{n}/{m}"
                if mid not in seen:
                    seen.add(mid)
                    out.append((mid, n))
        return out
