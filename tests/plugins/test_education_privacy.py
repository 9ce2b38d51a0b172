"""Learner privacy: links told from names by their marker, one salt per farm, no duplicate row across a link."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vkit.plugins.education.privacy import (FARM_FILE, learner_hash, pseudonym_of, pseudonymise, salt_fingerprint,
                                            shown_learner)
from vkit.plugins.education.scorer import EngagementScorer
from vkit.registry.errors import ConfigError


def _recordings(root: Path, names: tuple[str, ...] = ("ana", "0123456789ab")) -> list[str]:
    (root / "s1").mkdir(parents=True)
    for name in names:
        (root / "s1" / f"{name}.mp4").write_bytes(name.encode())
    return [str(root / "s1" / f"{name}.mp4") for name in names]


def _links(farm: Path) -> dict[str, str]:
    return {p.name: p.resolve().name for p in (farm / "s1").iterdir() if p.is_symlink()}


def test_a_link_is_told_by_its_marker_and_a_hex_name_is_hashed_like_any_name() -> None:
    assert pseudonym_of("pseudo-5b0c1d2e3f4a") == "5b0c1d2e3f4a"
    assert pseudonym_of("0123456789ab") is None and pseudonym_of("pseudo-XYZ") is None
    assert shown_learner("0123456789ab", "s") == learner_hash("0123456789ab", "s") != "0123456789ab"
    assert shown_learner("pseudo-5b0c1d2e3f4a", "") == "5b0c1d2e3f4a"  # no salt needed for a link


def test_a_farm_keeps_one_salt_and_replace_relinks_it(tmp_path: Path) -> None:
    recordings, farm = _recordings(tmp_path / "lessons"), tmp_path / "farm"
    pseudonymise(recordings, farm, "pepper")
    first = {f"pseudo-{learner_hash(n, 'pepper')}.mp4": f"{n}.mp4" for n in ("ana", "0123456789ab")}
    assert _links(farm) == first
    assert json.loads((farm / FARM_FILE).read_text()) == {"salt_fingerprint": salt_fingerprint("pepper")}
    assert "pepper" not in (farm / FARM_FILE).read_text()
    pseudonymise(recordings, farm, "pepper")  # the same salt: resumes, nothing new
    assert _links(farm) == first
    (farm / "s1" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=rf"--farm {farm} was linked with another salt: .*--replace to remove its 2 link"):
        pseudonymise(recordings, farm, "other")
    assert _links(farm) == first
    pseudonymise(recordings, farm, "other", replace=True)
    assert _links(farm) == {f"pseudo-{learner_hash(n, 'other')}.mp4": f"{n}.mp4" for n in ("ana", "0123456789ab")}
    assert (farm / "s1" / "notes.txt").read_text() == "mine"  # only links are removed


def test_a_farm_of_an_older_vkit_or_with_a_bad_record_is_refused_by_name(tmp_path: Path) -> None:
    recordings, farm = _recordings(tmp_path / "lessons", ("ana",)), tmp_path / "farm"
    (farm / "s1").mkdir(parents=True)
    (farm / "s1" / f"{learner_hash('ana', 'pepper')}.mp4").symlink_to(recordings[0])  # unmarked, no record
    with pytest.raises(ConfigError, match="holds links but no salt fingerprint"):
        pseudonymise(recordings, farm, "pepper")
    pseudonymise(recordings, farm, "pepper", replace=True)
    assert list(_links(farm)) == [f"pseudo-{learner_hash('ana', 'pepper')}.mp4"]
    (farm / FARM_FILE).write_text("not json")
    with pytest.raises(ConfigError, match=rf"{FARM_FILE}: not a farm record"):
        pseudonymise(recordings, farm, "pepper")


def test_no_duplicate_row_links_a_pseudonymous_link_to_another_path() -> None:
    from vkit.workflows.scoring.engine import _same_content

    link, name, other_link = "/farm/s1/pseudo-5b0c1d2e3f4a.mp4", "/lessons/s1/ana.mp4", "/farm/s1/pseudo-aaaaaaaaaaaa.mp4"
    assert EngagementScorer.may_share_content(name, "/lessons/s2/ana.mp4")
    assert not EngagementScorer.may_share_content(link, name) and not EngagementScorer.may_share_content(name, link)
    assert not EngagementScorer.may_share_content(link, other_link)  # nor one salt's pseudonym to another's

    def claim(scored_path: str) -> dict:
        return dict(scored_path=scored_path, scored_run_id=1, scored_video_id=1, video_id=2, recorded=False)

    assert _same_content(link, {}, claim(name), EngagementScorer) is None  # scored again
    assert _same_content(name, {}, claim(link), EngagementScorer) is None
    recorded = _same_content(name, {}, claim("/lessons/s2/ana.mp4"), EngagementScorer)
    assert recorded["status"] == "duplicate" and recorded["error"].startswith("duplicate of /lessons/s2/ana.mp4")
    assert _same_content(link, {}, claim(name))["status"] == "duplicate"  # a scorer without the rule: as before
