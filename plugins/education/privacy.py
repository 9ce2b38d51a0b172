"""Learner privacy: salted learner hashes, a farm of pseudonymous links, and what tells a link from a name.

A learner is shown only as :func:`learner_hash` (12 hex digits of
``sha256(salt, learner)``; the salt comes from ``$VKIT_LEARNER_SALT`` and is
never printed or stored). ``vkit engagement-pseudonymise`` links each
recording ``.../<session>/<learner>.mp4`` as ``FARM/<session>/pseudo-<hash>.mp4``:
the ``pseudo-`` marker, not the shape of a name, says a file is a link (a
student number can be 12 hex digits: it is a name, and is hashed like one).
The farm keeps a fingerprint of its salt in ``FARM/.vkit-pseudonyms.json``;
linking with another salt is refused unless ``replace`` (the old links are
removed first), so one farm never holds two pseudonyms of one learner.

Example::

    pseudonymise(["lessons/s1/learner01.mp4"], Path("farm"), "s3cret")   # farm/s1/pseudo-<hash>.mp4
    pseudonym_of("pseudo-5b0c1d2e3f4a")    # '5b0c1d2e3f4a'
    pseudonym_of("0123456789ab")           # None: a name, however hex it looks
    shown_learner("0123456789ab", "s3cret") == learner_hash("0123456789ab", "s3cret")   # True
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path, PurePath

from vkit.registry.errors import ConfigError

SALT_ENV = "VKIT_LEARNER_SALT"
#: What starts the stem of a pseudonymous link: ``pseudo-<12 hex digits>``.
PSEUDONYM_PREFIX = "pseudo-"
#: The farm's record of its salt (a fingerprint, not the salt).
FARM_FILE = ".vkit-pseudonyms.json"

_PSEUDONYM = re.compile(rf"{re.escape(PSEUDONYM_PREFIX)}([0-9a-f]{{12}})")
_OLD_LINK = re.compile(r"[0-9a-f]{12}")  # links of a vkit before the marker (only removed by --replace)


def learner_hash(learner: str, salt: str) -> str:
    """The pseudonym shown for ``learner``: the first 12 hex digits of ``sha256(salt + learner)``."""
    if not salt:
        raise ConfigError(f"no learner salt: set {SALT_ENV} (any secret string; keep it to compare reports)")
    return hashlib.sha256((salt + "\x00" + learner).encode()).hexdigest()[:12]


def salt_fingerprint(salt: str) -> str:
    """16 hex digits that tell two salts apart (a hash of the salt under its own label, not a learner hash)."""
    if not salt:
        raise ConfigError(f"no learner salt: set {SALT_ENV} (any secret string; keep it to compare reports)")
    return hashlib.sha256(("vkit learner salt fingerprint\x00" + salt).encode()).hexdigest()[:16]


def pseudonym_of(stem: str) -> str | None:
    """The learner hash a link's stem carries (``pseudo-<hash>``), else ``None`` (a learner's name)."""
    match = _PSEUDONYM.fullmatch(stem)
    return match.group(1) if match else None


def is_pseudonymised(path: str | PurePath) -> bool:
    """Whether ``path`` is a pseudonymous link of ``vkit engagement-pseudonymise`` (by its marker)."""
    return pseudonym_of(PurePath(str(path)).stem) is not None


def shown_learner(stem: str, salt: str) -> str:
    """A recording's learner as shown: the hash of a link, else ``learner_hash(stem, salt)``."""
    return pseudonym_of(stem) or learner_hash(stem, salt)


def pseudonymise(recordings: Sequence[str], farm: Path, salt: str, replace: bool = False) -> Path:
    """Symlinks ``farm/<session>/pseudo-<learner hash>.<ext>`` to ``recordings`` (``.../<session>/<learner>.<ext>``).

    Scoring ``farm`` instead of the recordings keeps learner ids out of the store:
    it holds the links' paths. The names are stable for a salt, so a re-run resumes;
    a farm linked with another salt is refused unless ``replace`` (its links are removed first).
    """
    farm = Path(farm)
    _claim_farm(farm, salt, replace)
    for recording in recordings:
        path = Path(recording).resolve()
        link = farm / path.parent.name / f"{PSEUDONYM_PREFIX}{learner_hash(path.stem, salt)}{path.suffix.lower()}"
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            if link.resolve() != path:
                raise ConfigError(f"{link} already links to {link.resolve()}, not {path}: two learners with the same "
                                  "name in one session")
        elif link.exists():
            raise ConfigError(f"{link} exists and is not a link: keep the farm for links only")
        else:
            link.symlink_to(path)
    return farm


def _claim_farm(farm: Path, salt: str, replace: bool) -> None:
    """Record ``salt``'s fingerprint in ``farm``; refuse a farm of another salt (or of unknown salt) unless ``replace``."""
    record, fingerprint = farm / FARM_FILE, salt_fingerprint(salt)
    found = _farm_fingerprint(record)
    if found == fingerprint:
        return
    links = _links(farm)
    if (found is not None or links) and not replace:
        why = "was linked with another salt" if found is not None else "holds links but no salt fingerprint (older vkit)"
        raise ConfigError(f"--farm {farm} {why}: two sets of pseudonyms for the same learners would mix in reports; "
                          f"set {SALT_ENV} to the farm's salt, choose another --farm, or pass --replace to remove "
                          f"its {len(links)} link(s) and relink with this salt")
    for link in links:
        link.unlink()
    farm.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"salt_fingerprint": fingerprint}) + "\n", encoding="utf-8")


def _farm_fingerprint(record: Path) -> str | None:
    """The fingerprint kept in ``record``, ``None`` when there is none; a ``ConfigError`` naming a bad record."""
    if not record.exists() and not record.is_symlink():
        return None
    if record.is_symlink() or not record.is_file():
        raise ConfigError(f"{record}: expected a regular file holding the farm's salt fingerprint")
    try:
        found = json.loads(record.read_text(encoding="utf-8")).get("salt_fingerprint")
    except (ValueError, AttributeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{record}: not a farm record ({err}); remove it or pass --replace") from err
    if not isinstance(found, str):
        raise ConfigError(f"{record}: no 'salt_fingerprint' string; remove it or pass --replace")
    return found


def _links(farm: Path) -> list[Path]:
    """The pseudonymous links in ``farm/<session>/`` (symlinks named by a learner hash; nothing else)."""
    if not farm.is_dir():
        return []
    return sorted(p for session in farm.iterdir() if session.is_dir() and not session.is_symlink()
                  for p in session.iterdir()
                  if p.is_symlink() and (pseudonym_of(p.stem) or _OLD_LINK.fullmatch(p.stem)))


__all__ = ["FARM_FILE", "PSEUDONYM_PREFIX", "SALT_ENV", "is_pseudonymised", "learner_hash", "pseudonym_of",
           "pseudonymise", "salt_fingerprint", "shown_learner"]
