"""The model registry: names -> builders, with checked options.

A builder is ``fn(num_classes, *, option=default, ...) -> FerModel``; its keyword-only
parameters are the model's options. `create_model` rejects unknown names and options with
a `FerlabError` naming the valid ones, names the model's architecture and options, and loads pretrained
backbone weights when the model takes them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ferlab.errors import FerlabError
from ferlab.models.base import FerModel

Builder = Callable[..., FerModel]


@dataclass(frozen=True)
class _Entry:
    name: str
    builder: Builder
    defaults: dict[str, Any]
    takes_pretrained: bool
    summary: str


_REGISTRY: dict[str, _Entry] = {}


def register_model(name: str, *, pretrained: bool = False) -> Callable[[Builder], Builder]:
    """Register a builder under `name`; ``pretrained=True`` adds the `pretrained` option.

    The `pretrained` option (default None) is a path to a backbone state dict, or a
    name the model knows (`efficientnet_lite0`: "imagenet"); `create_model` loads it.
    """

    def decorator(builder: Builder) -> Builder:
        defaults: dict[str, Any] = {}
        params = list(inspect.signature(builder).parameters.values())
        if not params or params[0].name != "num_classes":
            raise TypeError(f"builder for {name!r} must take num_classes first")
        for p in params[1:]:
            if p.kind is not inspect.Parameter.KEYWORD_ONLY or p.default is inspect.Parameter.empty:
                raise TypeError(f"option {p.name!r} of {name!r} must be keyword-only with a default")
            defaults[p.name] = p.default
        doc = (builder.__doc__ or "").strip().splitlines()
        add_model(name, builder, defaults, doc[0] if doc else "", pretrained=pretrained)
        return builder

    return decorator


def add_model(name: str, builder: Builder, defaults: dict[str, Any], summary: str, *, pretrained: bool = False) -> None:
    """Register `builder`, called as ``builder(num_classes, **options)``, with its options' defaults.

    For families of models built from a table (the transfer backbones), where one builder
    serves several names and its options come from data rather than from a signature.
    """
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    options = dict(defaults)
    if pretrained:
        options["pretrained"] = None
    _REGISTRY[name] = _Entry(name, builder, options, pretrained, summary)


def _entry(name: str) -> _Entry:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FerlabError(f"unknown model {name!r}; available models: {', '.join(available_models())}") from None


def available_models() -> list[str]:
    """Names of all registered models, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def default_config(name: str) -> dict[str, Any]:
    """The options of model `name` with their default values."""
    return dict(_entry(name).defaults)


def describe_model(name: str) -> str:
    """One line saying what model `name` is."""
    return _entry(name).summary


def create_model(name: str, num_classes: int, **config: Any) -> FerModel:
    """Build model `name` with `num_classes` outputs; `config` overrides its default options."""
    entry = _entry(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise FerlabError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    unknown = sorted(set(config) - set(entry.defaults))
    if unknown:
        valid = ", ".join(f"{k}={v!r}" for k, v in entry.defaults.items()) or "none"
        raise FerlabError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for model {name!r}; "
            f"valid options (with defaults): {valid}"
        )
    resolved = {**entry.defaults, **config}
    pretrained = resolved.pop("pretrained", None)
    model = entry.builder(num_classes, **resolved)
    model.arch, model.arch_options = name, resolved
    if pretrained is not None:
        from ferlab.models.pretrained import load_backbone_weights

        model.pretrained = load_backbone_weights(model, pretrained)
    return model


_LOADED = False


def _ensure_loaded() -> None:
    """Import the modules whose decorators fill the registry."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from ferlab.models import scratch, transfer  # noqa: F401  (imported for their decorators)


def add_second_head(model: FerModel, num_classes: int) -> None:
    """Give `model` a second head for `num_classes` classes beside its own, on the same features.

    The second head is the architecture's own head built for those classes (a fresh
    ``create_model(arch, num_classes, **arch_options).head``: linear, or the hidden layer and
    dropout the architecture's options ask for), so that the head split off a two-head model
    with its backbone is a plain model of the same architecture (`bundle.split_heads`)."""
    model.second_head = create_model(model.arch, num_classes, **model.arch_options).head
