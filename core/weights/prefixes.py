"""Match a file's keys to a model's: which prefix to strip from the file and which to add for the model.

Checkpoints name the same tensor differently: an mmaction2 recognizer saves its
backbone as ``backbone.conv1_s.conv.weight``, DataParallel adds ``module.``,
``torch.compile`` adds ``_orig_mod.``, Lightning ``model.``; vkit's wrappers keep the
upstream network under ``net.``. :func:`match_keys` tries every mapping
``file key = strip + k  →  model key = add + k`` with ``strip`` made of up to two of
:data:`KNOWN_PREFIXES` (``module.backbone.``) and ``add`` one of the model's own
prefixes, and picks the one that covers every model key. When exactly one fits it is
used; when several fit the user names one with ``pretrained_prefix``; when none fits
the closest one is reported (missing and unexpected keys).

File keys outside ``strip`` (an mmaction2 checkpoint's ``cls_head.``) and keys the
backbone drops on purpose (``ignore``: a MONAI/torchvision classifier's ``fc.``) are
*ignored*, not unexpected: a recognizer checkpoint loads into its backbone.

Example::

    m = match_keys(["backbone.conv.weight", "cls_head.fc.weight"], ["net.conv.weight"])
    m.strip, m.add, m.matched        # ('backbone.', 'net.', {'net.conv.weight': 'backbone.conv.weight'})
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import permutations

from vkit.registry.errors import CheckpointError, ConfigError

#: Prefixes stripped from a file's keys automatically (alone or two together).
KNOWN_PREFIXES = ("backbone.", "module.", "model.", "net.", "_orig_mod.")
#: Model keys that may legitimately be absent from a file (BatchNorm's counter; mmengine ignores it too).
OPTIONAL_SUFFIXES = ("num_batches_tracked",)


@dataclass
class KeyMapping:
    """One way of reading a file's keys as a model's.

    Attributes:
        strip: removed from the front of file keys.
        add: put in front to get the model key.
        matched: ``{model key: file key}``.
        missing: model keys the file does not cover (``num_batches_tracked`` left out).
        unexpected: file keys under ``strip`` that name nothing in the model.
        ignored: file keys outside ``strip``, or that the backbone drops (its classifier).
    """

    strip: str
    add: str
    matched: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        """Every model key is covered and nothing under ``strip`` is left over."""
        return bool(self.matched) and not self.missing and not self.unexpected

    def counts(self) -> dict[str, int]:
        return dict(matched=len(self.matched), missing=len(self.missing), unexpected=len(self.unexpected),
                    ignored=len(self.ignored))

    def describe(self) -> str:
        """``"strip 'backbone.', add 'net.'"`` (what a user would write as ``pretrained_prefix``)."""
        return f"strip {self.strip!r}, add {self.add!r}"


def strip_candidates(extra: Iterable[str] = ()) -> list[str]:
    """``''``, each known prefix, and each ordered pair of them (``'module.backbone.'``)."""
    known = [*KNOWN_PREFIXES, *[p for p in extra if p not in KNOWN_PREFIXES]]
    return ["", *known, *(a + b for a, b in permutations(known, 2))]


def map_keys(file_keys: Iterable[str], model_keys: Iterable[str], strip: str, add: str,
             ignore: Sequence[str] = ()) -> KeyMapping:
    """The :class:`KeyMapping` of one ``(strip, add)`` pair."""
    model = set(model_keys)
    mapping = KeyMapping(strip, add)
    for key in file_keys:
        if not key.startswith(strip):
            mapping.ignored.append(key)
            continue
        target = add + key[len(strip):]
        if target in model:
            mapping.matched[target] = key
        elif any(target.startswith(p) for p in ignore):
            mapping.ignored.append(key)
        else:
            mapping.unexpected.append(key)
    mapping.missing = sorted(k for k in model - set(mapping.matched)
                             if not k.endswith(OPTIONAL_SUFFIXES) and not any(k.startswith(p) for p in ignore))
    return mapping


def match_keys(file_keys: Sequence[str], model_keys: Sequence[str], *, prefix: str | None = None,
               model_prefixes: Sequence[str] = ("",), ignore: Sequence[str] = (), owner: str = "pretrained") -> KeyMapping:
    """The mapping to load with: the one that fits (see the module docstring), else the closest one.

    Args:
        file_keys: the file's keys.
        model_keys: the model's ``state_dict()`` keys.
        prefix: ``pretrained_prefix``: strip exactly this (``''``: nothing); ``None`` tries them all.
        model_prefixes: what may be added (``('', 'net.')`` for a wrapper of an upstream network).
        ignore: model-key prefixes the backbone drops on purpose (its upstream classifier).
        owner: for messages.

    Raises:
        ConfigError: several mappings fit (name one with ``pretrained_prefix``), or ``prefix`` is not text.
        CheckpointError: no key of the file names a key of the model.
    """
    if prefix is not None and not isinstance(prefix, str):
        raise ConfigError(f"{owner}: pretrained_prefix={prefix!r}; expected text such as 'backbone.' ('' strips nothing)")
    if not model_keys:  # a parameter-free backbone: only an empty file fits
        if file_keys:
            raise CheckpointError(f"{owner}: the model has no weights, the file {len(file_keys)} tensors "
                                  f"({list(file_keys)[:3]}); leave pretrained out")
        return KeyMapping("", "")
    own = sorted({".".join(k.split(".")[:2]) + "." for k in file_keys if k.startswith("backbones.") and k.count(".") > 1})
    strips = [prefix] if prefix is not None else strip_candidates(own)  # own: a vkit model's backbones.<modality>.
    adds = list(dict.fromkeys(["", *model_prefixes]))
    tried = [map_keys(file_keys, model_keys, s, a, ignore) for s in strips for a in adds]
    tried = [m for m in tried if m.matched]
    if not tried:
        raise CheckpointError(
            f"{owner}: no key of the file names a key of the model"
            + (f" after stripping {prefix!r}" if prefix is not None else "")
            + f"; the file's keys look like {list(file_keys)[:3]}, the model's like {sorted(model_keys)[:3]}")
    fitting = [m for m in tried if m.fits]
    distinct = {tuple(sorted(m.matched.items())): m for m in fitting}
    if len(distinct) > 1:
        names = sorted({repr(m.strip) for m in distinct.values()})
        raise ConfigError(f"{owner}: several key prefixes fit the file ({', '.join(names)}); name one with "
                          f"pretrained_prefix=...")
    if fitting:
        return min(fitting, key=lambda m: len(m.strip) + len(m.add))
    return max(tried, key=lambda m: (len(m.matched), -len(m.unexpected), -len(m.strip)))


__all__ = ["KNOWN_PREFIXES", "KeyMapping", "map_keys", "match_keys", "strip_candidates"]
