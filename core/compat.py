"""Every fix vkit applies to its upstream dependencies, in one place.

Each fix is idempotent and cheap after its first call; :func:`apply` runs them
all and is what vkit's engine calls before it builds anything.

- **mmaction2 1.2.0 lacks ``mmaction.models.localizers.drn``** (its wheel
  forgot the folder, open-mmlab/mmaction2#2714), so ``import mmaction.models``
  raises ``ModuleNotFoundError``. :func:`ensure_mmaction` installs a
  placeholder module whose ``DRN`` raises a clear error when built, then
  imports ``mmaction.models`` so mmaction's registry is filled.
- **mmaction2 1.2.0 imports the undeclared ``importlib_metadata``**
  (``mmaction.models.multimodal``): vkit declares it in ``pyproject.toml``.
- **mmaction2 asserts ``mmcv>=2.0.0rc4,<2.2.0``** and ``mmengine>=0.7.1,<1.0.0``
  at import time: :func:`check_versions` says which installed version is out
  of range before that assert fires (``mmcv-lite==2.1.0`` fits).
- **torch >= 2.6 loads with ``weights_only=True`` by default**, which refuses
  mmengine 0.10.7's own ``.pth`` files (``message_hub`` holds
  ``HistoryBuffer`` objects with numpy arrays). :func:`allow_mmengine_checkpoints`
  allow-lists exactly those globals; ``weights_only`` is never turned off.
  vkit's own checkpoints are safetensors (:mod:`vkit.core.checkpoint`).

Example::

    from vkit.core import compat

    compat.apply()                       # before building models / runners
    mmaction = compat.ensure_mmaction()  # mmaction.models is importable now
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import sys
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from vkit.registry.errors import RegistryError, VkitError

#: The upstream issue about the missing DRN localizer.
DRN_ISSUE = "open-mmlab/mmaction2#2714"
#: The message of the error a placeholder ``DRN`` raises.
DRN_MESSAGE = (
    f"DRN is missing from the mmaction2 1.2.0 wheel ({DRN_ISSUE}); "
    "vkit installs a placeholder so the rest of mmaction.models imports. "
    "Use another localizer, or install mmaction2 from source to get DRN"
)
_DRN_MODULES = ("mmaction.models.localizers.drn", "mmaction.models.localizers.drn.drn")

#: What mmaction2 1.2.0 asserts at import: distribution name -> (minimum inclusive, maximum exclusive).
REQUIRED_VERSIONS: dict[str, tuple[str, str]] = {
    "mmcv": ("2.0.0rc4", "2.2.0"),
    "mmengine": ("0.7.1", "1.0.0"),
}
#: The distributions that provide a requirement, in the order they are looked up.
_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {"mmcv": ("mmcv-lite", "mmcv"), "mmengine": ("mmengine", "mmengine-lite")}

_lock = threading.RLock()
_state: dict[str, Any] = {}


class DRN:
    """Placeholder for mmaction2's DRN localizer, absent from the 1.2.0 wheel; building it raises.

    Args:
        *args, **kwargs: ignored; any construction raises :class:`RegistryError`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RegistryError(DRN_MESSAGE)


def _mmaction_path() -> Path:
    spec = importlib.util.find_spec("mmaction")
    if spec is None or not spec.submodule_search_locations:
        raise VkitError("mmaction2 is not installed: expected mmaction2==1.2.0 (pip install 'mmaction2==1.2.0')")
    return Path(list(spec.submodule_search_locations)[0])


def _install_drn_placeholder() -> bool:
    """Put placeholder ``drn`` modules in ``sys.modules`` if the wheel lacks them; True if installed."""
    if all(name in sys.modules for name in _DRN_MODULES):
        return False
    if (_mmaction_path() / "models" / "localizers" / "drn" / "drn.py").is_file():
        return False  # a fixed mmaction2: use the real module
    package = ModuleType(_DRN_MODULES[0], f"Placeholder for mmaction2's missing DRN ({DRN_ISSUE}); installed by vkit.")
    package.__spec__ = importlib.machinery.ModuleSpec(_DRN_MODULES[0], None, is_package=True)
    package.__path__ = []
    module = ModuleType(_DRN_MODULES[1], package.__doc__)
    module.__spec__ = importlib.machinery.ModuleSpec(_DRN_MODULES[1], None)
    module.DRN = DRN  # type: ignore[attr-defined]
    package.drn = module  # type: ignore[attr-defined]
    package.DRN = DRN  # type: ignore[attr-defined]
    sys.modules.setdefault(_DRN_MODULES[0], package)
    sys.modules.setdefault(_DRN_MODULES[1], module)
    return True


def ensure_mmaction() -> ModuleType:
    """Make ``import mmaction.models`` work on the mmaction2 1.2.0 wheel and fill its MODELS registry.

    Safe to call many times; after the first call it only returns the cached module.

    Returns:
        the ``mmaction`` package, with ``mmaction.models`` imported.

    Example::

        mmaction = ensure_mmaction()
        from mmaction.registry import MODELS
        MODELS.get('X3D')
    """
    cached = _state.get("mmaction")
    if cached is not None:
        return cached
    with _lock:
        if "mmaction" in _state:
            return _state["mmaction"]
        check_versions()
        installed = _install_drn_placeholder()
        try:
            with warnings.catch_warnings():
                # mmcv-lite has no compiled ops; mmaction2's recognizers do not need them.
                warnings.filterwarnings("ignore", message=".*MultiScaleDeformableAttention.*")
                importlib.import_module("mmaction.models")
        except ImportError as err:
            raise VkitError(
                f"cannot import mmaction.models (mmaction2 at {_mmaction_path()}): {err}; "
                "expected mmaction2==1.2.0 with its declared dependencies and importlib_metadata"
            ) from err
        if installed:
            from mmaction.registry import MODELS

            if MODELS.get("DRN") is None:
                MODELS.register_module(name="DRN", module=DRN)
        _state["mmaction"] = sys.modules["mmaction"]
        return _state["mmaction"]


def _installed_version(requirement: str) -> str | None:
    for dist in _DISTRIBUTIONS.get(requirement, (requirement,)):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def check_versions(installed: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """Check mmcv and mmengine against the range mmaction2 1.2.0 asserts at import time.

    Args:
        installed: ``{name: version}`` to check instead of what is installed
            (``None`` as a version means not installed); for tests and tools.

    Returns:
        ``{name: version}`` of each checked requirement.

    Raises:
        VkitError: naming each package out of range, its installed version and the required range.

    Example::

        check_versions()                   # {'mmcv': '2.1.0', 'mmengine': '0.10.7'}
        check_versions({'mmcv': '2.2.0'})  # VkitError: mmcv 2.2.0 is installed; mmaction2 1.2.0 requires ...
    """
    from mmengine.utils import digit_version

    problems: list[str] = []
    found: dict[str, str] = {}
    for name, (low, high) in REQUIRED_VERSIONS.items():
        version = installed[name] if installed is not None and name in installed else _installed_version(name)
        wanted = f"{name}>={low},<{high}"
        if version is None:
            problems.append(f"{name} is not installed; mmaction2 1.2.0 requires {wanted}")
            continue
        try:
            ok = digit_version(low) <= digit_version(version) < digit_version(high)
        except (AssertionError, ValueError, TypeError):
            ok = False
        if not ok:
            hint = " (pip install 'mmcv-lite==2.1.0')" if name == "mmcv" else ""
            problems.append(f"{name} {version} is installed; mmaction2 1.2.0 requires {wanted}{hint}")
        found[name] = version
    if problems:
        raise VkitError("incompatible versions: " + "; ".join(problems))
    return found


def mmengine_safe_globals() -> list[Any]:
    """The globals mmengine 0.10.7 pickles into its ``.pth`` checkpoints, for ``torch.serialization.add_safe_globals``.

    ``message_hub`` holds :class:`mmengine.logging.HistoryBuffer` objects
    (numpy arrays of float64/int64) and numpy scalars; ``HistoryBuffer``
    pickles its statistics methods as ``getattr(HistoryBuffer, 'min')``, so
    ``builtins.getattr`` is mapped to :func:`_history_buffer_getattr`, which
    resolves only those methods (a general ``getattr`` would allow code
    execution). Numpy 1.x files name ``numpy.core.multiarray``; both spellings
    are listed.
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    dtypes = [
        type(np.dtype(t))
        for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
                  np.float16, np.float32, np.float64, np.complex64, np.complex128)
    ]
    entries: list[Any] = [HistoryBuffer, np.ndarray, np.dtype, *dtypes, (_history_buffer_getattr, "builtins.getattr")]
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        entries.append((multiarray._reconstruct, f"{module}._reconstruct"))
        entries.append((multiarray.scalar, f"{module}.scalar"))
    return entries


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` as mmengine's pickles use it: only ``HistoryBuffer``'s registered statistics methods."""
    from mmengine.logging import HistoryBuffer

    allowed = ("min", "max", "current", "mean")
    if obj is HistoryBuffer and name in allowed:
        return HistoryBuffer.__dict__[name]
    import pickle

    raise pickle.UnpicklingError(
        f"refused getattr({obj!r}, {name!r}) while loading a checkpoint: vkit allows getattr only for "
        f"HistoryBuffer's statistics methods {allowed}"
    )


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` (torch >= 2.6's default) read mmengine-written ``.pth`` files.

    Idempotent. Needed by mmengine's ``load_checkpoint`` / ``_load_checkpoint``
    and ``Runner.resume``; ``weights_only`` stays on, so arbitrary pickles are
    still refused.
    """
    if _state.get("safe_globals"):
        return
    import torch

    with _lock:
        torch.serialization.add_safe_globals(mmengine_safe_globals())
        _state["safe_globals"] = True


def apply(mmaction: bool = True) -> None:
    """Apply every fix: version check, mmengine checkpoint allow-list, and (if ``mmaction``) :func:`ensure_mmaction`.

    Idempotent and fast after the first call.

    Args:
        mmaction: also import ``mmaction.models`` (a few seconds the first time).

    Example::

        from vkit.core import compat
        compat.apply()
    """
    if "versions" not in _state:
        _state["versions"] = check_versions()
    allow_mmengine_checkpoints()
    if mmaction:
        ensure_mmaction()
