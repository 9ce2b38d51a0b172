"""Pruning stages: unstructured magnitude pruning and structured channel pruning.

Example::

    chain = CompressionChain([dict(type='ChannelPrune', amount=0.5), dict(type='MagnitudePrune', amount=0.3)])
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils import prune

from vkit.core.compression.base import CompressionContext, CompressionError, Stage
from vkit.registry.errors import ConfigError
from vkit.registry.registries import COMPRESSORS

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Hardswish, nn.Sigmoid, nn.Tanh,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity,
)
_POOLS = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
_ACTIVATION_FNS = {
    torch.relu, F.relu, F.relu6, F.gelu, F.silu, F.leaky_relu, F.elu, F.hardswish,
    torch.sigmoid, torch.tanh, F.dropout, "relu", "sigmoid", "tanh", "contiguous",
}
_POOL_FNS = {
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
}


def _check_amount(owner: str, amount: object) -> float:
    if not isinstance(amount, (int, float)) or isinstance(amount, bool) or not 0.0 <= amount < 1.0:
        raise ConfigError(f"{owner}.amount: expected a fraction in [0, 1), got {amount!r}")
    return float(amount)


@COMPRESSORS.register_module()
class MagnitudePrune(Stage):
    """Global unstructured L1 pruning of every Conv/Linear weight, made permanent.

    Uses ``torch.nn.utils.prune.global_unstructured`` (``L1Unstructured``)
    over all conv/linear weights together, then ``prune.remove``: the
    smallest ``amount`` of the weights are exactly zero afterwards.

    Args:
        amount: fraction of the weights to zero, in [0, 1).

    Example::

        model = MagnitudePrune(amount=0.5).apply(model, ctx)   # 50% of the weights are 0
    """

    def __init__(self, amount: float = 0.5) -> None:
        super().__init__()
        self.amount = _check_amount("MagnitudePrune", amount)

    def apply(self, model: nn.Module, ctx: CompressionContext) -> nn.Module:
        params = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, *_CONV)) and m.weight is not None]
        if not params:
            raise CompressionError(f"MagnitudePrune: {type(model).__name__} has no Conv/Linear weights to prune")
        if self.amount > 0:
            prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=self.amount)
            for module, name in params:
                prune.remove(module, name)
        return model


@dataclass
class _Link:
    """A producer layer whose output channels flow only through per-channel ops into one consumer layer."""

    producer: str
    consumer: str
    batchnorms: list[str] = field(default_factory=list)
    block: int = 1  # consumer inputs per producer channel (spatial size after a flatten)


class _Tracer(fx.Tracer):
    """fx tracer that keeps every Conv/Linear/BatchNorm (subclasses too, e.g. mmcv's wrappers) as one call."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        leaf_types = (nn.Linear, *_CONV, *_BN, *_ACTIVATIONS, *_POOLS, nn.Flatten)
        return isinstance(m, leaf_types) or super().is_leaf_module(m, module_qualified_name)


def _graphs(module: nn.Module, prefix: str, untraced: dict[str, str]) -> list[tuple[str, fx.Graph]]:
    """fx graphs of the largest traceable submodules: ``module`` itself, else its children, recursively.

    A module torch.fx cannot trace (data-dependent checks, dict inputs) is
    recorded in ``untraced`` with the error and its children are tried on
    their own: a producer->consumer pair inside a traced child is safe to
    prune whatever the parent does with the child's output.
    """
    try:
        return [(prefix, _Tracer().trace(module))]
    except Exception as err:  # noqa: BLE001 - any tracing failure means: not a static graph
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        untraced[prefix or type(module).__name__] = f"{type(err).__name__}: {first[:120]}"
    found: list[tuple[str, fx.Graph]] = []
    for name, child in module.named_children():
        found += _graphs(child, f"{prefix}.{name}" if prefix else name, untraced)
    return found


def _reduces_spatial(node: fx.Node, rank: int) -> bool:
    """``x.mean(dims)`` / ``x.amax(dims)`` over all spatial dims, keeping channels at dim 1."""
    if node.op != "call_method" or node.target not in ("mean", "amax"):
        return False
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    dims = (dims,) if isinstance(dims, int) else dims
    if not isinstance(dims, (tuple, list)) or node.kwargs.get("keepdim", False) or len(node.args) > 2:
        return False
    return sorted(d % rank for d in dims) == list(range(2, rank))


def _is_flatten(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        mod = modules[node.target]
        return isinstance(mod, nn.Flatten) and mod.start_dim == 1 and mod.end_dim == -1
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    if node.op == "call_function" and node.target is torch.flatten:
        return start == 1 and len(node.args) <= 2 and "end_dim" not in node.kwargs
    if node.op == "call_method" and node.target == "flatten":
        return start == 1 and len(node.args) <= 2 and "end_dim" not in node.kwargs
    return False


def _passthrough(node: fx.Node, modules: dict[str, nn.Module], conv: bool) -> bool:
    """An op that keeps channels separate (activations, dropout; pooling for conv outputs)."""
    if node.op == "call_module":
        mod = modules[node.target]
        return isinstance(mod, _ACTIVATIONS) or (conv and isinstance(mod, _POOLS))
    if node.op not in ("call_function", "call_method"):
        return False
    others = [a for a in list(node.args[1:]) + list(node.kwargs.values()) if isinstance(a, fx.Node)]
    return not others and (node.target in _ACTIVATION_FNS or (conv and node.target in _POOL_FNS))


def _follow(node: fx.Node, producer: nn.Module, modules: dict[str, nn.Module], calls: dict[str, int]) -> _Link | str:
    """Walk from a producer's output to its one consumer; a string is the reason it cannot be pruned."""
    conv = isinstance(producer, _CONV)
    channels = producer.out_channels if conv else producer.out_features
    rank = producer.weight.dim()
    link = _Link(producer=str(node.target), consumer="")
    flattened = False
    cur = node
    while True:
        users = list(cur.users)
        if len(users) != 1:
            where = "is the model output" if not users else f"is used by {len(users)} ops ({', '.join(u.name for u in users)})"
            return f"its output {where}"
        user = users[0]
        mod = modules.get(user.target) if user.op == "call_module" else None
        if user.op == "output":
            return "its output is the model output"
        if mod is not None and calls.get(user.target, 0) > 1:
            return f"module {user.target!r} is called {calls[user.target]} times"
        if isinstance(mod, _BN) and conv and not flattened and mod.num_features == channels:
            link.batchnorms.append(str(user.target))
        elif isinstance(mod, (nn.Linear, *_CONV)):
            return _consumer(link, user, mod, channels, conv, flattened)
        elif not flattened and conv and (_is_flatten(user, modules) or _reduces_spatial(user, rank)):
            flattened = True
        elif not _passthrough(user, modules, conv and not flattened):
            return f"its output feeds {_describe(user)}, which ChannelPrune cannot follow"
        cur = user


def _describe(node: fx.Node) -> str:
    """A short name of what a node does: ``module 'layer1.se'``, ``function mul``, ``method view``."""
    if node.op == "call_module":
        return f"module {node.target!r}"
    kind = "method" if node.op == "call_method" else "function"
    return f"{kind} {getattr(node.target, '__name__', node.target)}"


def _consumer(link: _Link, user: fx.Node, mod: nn.Module, channels: int, conv: bool, flattened: bool) -> _Link | str:
    name = str(user.target)
    if isinstance(mod, _CONV):
        if not conv or flattened or mod.groups != 1 or mod.in_channels != channels:
            return (f"its consumer {name!r} ({type(mod).__name__}, in_channels={mod.in_channels}, groups={mod.groups}) "
                    f"does not take its {channels} channels directly")
    else:
        if conv and not flattened:
            return f"its consumer {name!r} is a Linear applied to an unflattened feature map"
        if mod.in_features % channels:
            return f"its consumer {name!r} has {mod.in_features} inputs, not a multiple of {channels} channels"
        link.block = mod.in_features // channels
    link.consumer = name
    return link


def _keep_indices(weight: torch.Tensor, amount: float) -> torch.Tensor:
    """Indices of the output channels with the largest L1 norm, in their original order."""
    channels = weight.shape[0]
    keep = max(1, int(round(channels * (1 - amount))))
    norms = weight.detach().abs().reshape(channels, -1).sum(dim=1)
    return torch.sort(torch.topk(norms, keep).indices).values


def _shrink(module: nn.Module, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> nn.Module:
    new = copy.deepcopy(module)
    if isinstance(module, _BN):
        new.num_features = len(out_idx)
        for key in ("weight", "bias"):
            if getattr(module, key) is not None:
                setattr(new, key, nn.Parameter(getattr(module, key).detach()[out_idx].clone()))
        for key in ("running_mean", "running_var"):
            if getattr(module, key) is not None:
                setattr(new, key, getattr(module, key)[out_idx].clone())
        return new
    weight = module.weight.detach()
    if out_idx is not None:
        weight = weight[out_idx]
        if module.bias is not None:
            new.bias = nn.Parameter(module.bias.detach()[out_idx].clone())
    if in_idx is not None:
        weight = weight[:, in_idx]
    new.weight = nn.Parameter(weight.clone())
    if isinstance(module, nn.Linear):
        new.out_features, new.in_features = weight.shape[0], weight.shape[1]
    else:
        new.out_channels, new.in_channels = weight.shape[0], weight.shape[1]
    return new


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


@COMPRESSORS.register_module()
class ChannelPrune(Stage):
    """Structured pruning: removes whole output channels (L1 norm) and the matching inputs downstream.

    The model is traced with ``torch.fx``; a Conv/Linear layer is pruned when
    its output flows only through per-channel ops (BatchNorm, activations,
    dropout, pooling, a flatten) into exactly one Conv/Linear consumer, as in a
    stack of conv+BN+ReLU+pool blocks ending in a Linear head. Its lowest-L1
    output channels are removed, with the matching BatchNorm entries and the
    consumer's input channels (a block of inputs per channel after a flatten),
    so the layers really shrink. The model's last layer keeps its outputs.
    Layers that cannot be followed (residual adds, concatenations, grouped
    convs) are left as they are and listed in ``notes``. A model torch.fx
    cannot trace whole (input checks, dict inputs, as in vkit's backbones and
    ``VideoModel``) is analysed inside its largest traceable submodules
    (e.g. ``TinyC3D.features``), whose last layer then keeps its outputs. A
    model with no prunable layer at all is a :class:`CompressionError` naming
    each layer and why.

    Args:
        amount: fraction of each prunable layer's output channels to remove, in [0, 1).

    Example::

        small = ChannelPrune(amount=0.5).apply(model, ctx)
    """

    def __init__(self, amount: float = 0.5) -> None:
        super().__init__()
        self.amount = _check_amount("ChannelPrune", amount)
        self.notes = ""

    def plan(self, model: nn.Module) -> tuple[list[_Link], dict[str, str], dict[str, str]]:
        """The prunable producer->consumer links, why the other layers are kept, and the untraceable modules."""
        untraced: dict[str, str] = {}
        links, blocked = [], {}
        for prefix, graph in _graphs(model, "", untraced):
            sub = model.get_submodule(prefix) if prefix else model
            modules = dict(sub.named_modules())
            calls: dict[str, int] = {}
            for node in graph.nodes:
                if node.op == "call_module":
                    calls[node.target] = calls.get(node.target, 0) + 1
            full = lambda name: f"{prefix}.{name}" if prefix else str(name)  # noqa: E731
            for node in graph.nodes:
                mod = modules.get(node.target) if node.op == "call_module" else None
                if not isinstance(mod, (nn.Linear, *_CONV)):
                    continue
                if calls[node.target] > 1:
                    blocked[full(node.target)] = f"is called {calls[node.target]} times"
                elif isinstance(mod, _CONV) and mod.groups != 1:
                    blocked[full(node.target)] = f"is a grouped conv (groups={mod.groups})"
                else:
                    found = _follow(node, mod, modules, calls)
                    if isinstance(found, str):
                        blocked[full(node.target)] = found
                    else:
                        found.producer, found.consumer = full(found.producer), full(found.consumer)
                        found.batchnorms = [full(b) for b in found.batchnorms]
                        links.append(found)
        return links, blocked, untraced

    def apply(self, model: nn.Module, ctx: CompressionContext) -> nn.Module:
        links, blocked, untraced = self.plan(model)
        if not links:
            why = "; ".join(f"{name!r} {reason}" for name, reason in blocked.items()) or "no Conv/Linear layer inside a traceable module"
            if untraced:
                why += "; torch.fx cannot trace " + "; ".join(f"{name!r} ({err})" for name, err in untraced.items())
            raise CompressionError(f"ChannelPrune: nothing to prune in {type(model).__name__}: {why}")
        modules = dict(model.named_modules())
        out_idx = {link.producer: _keep_indices(modules[link.producer].weight, self.amount) for link in links}
        in_idx: dict[str, torch.Tensor] = {}
        for link in links:
            idx = out_idx[link.producer]
            if link.block > 1:
                idx = (idx[:, None] * link.block + torch.arange(link.block)).reshape(-1)
            in_idx[link.consumer] = idx
            for bn in link.batchnorms:
                _set_module(model, bn, _shrink(modules[bn], out_idx[link.producer], None))
        for name in set(out_idx) | set(in_idx):
            _set_module(model, name, _shrink(modules[name], out_idx.get(name), in_idx.get(name)))
        kept = ", ".join(f"{name} ({reason})" for name, reason in blocked.items())
        self.notes = f"pruned {len(links)} layers: {', '.join(link.producer for link in links)}" + (f"; kept {kept}" if kept else "")
        if untraced:
            self.notes += f"; traced inside {', '.join(repr(n) for n in untraced)} only (torch.fx cannot trace them whole)"
        return model
