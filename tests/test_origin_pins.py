"""The era pins table: well formed, only ever rising, and looked up by the right row."""

from __future__ import annotations

import pytest

from alphapulse_onnx.origin import pins
from alphapulse_onnx.origin.pins import ERAS


def _bounds(specifier: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The lower (``>=``) and upper (``<``) bound of one row's range, padded for comparison."""
    clauses = dict(pins.clauses(specifier))
    assert set(clauses) == {">=", "<"}, f"{specifier}: a row gives a floor and a cap"
    return pins._padded(clauses[">="]), pins._padded(clauses["<"])


@pytest.mark.parametrize("era", ERAS, ids=[era.series for era in ERAS])
def test_every_row_is_well_formed(era: pins.Era) -> None:
    assert pins.release(era.latest)[:2] == pins.release(era.series)
    for specifier in (era.numpy, era.scipy, era.pandas):
        low, high = _bounds(specifier)
        assert low < high, f"{era.series}: {specifier} allows nothing"
    for booster in (era.xgboost, era.lightgbm):
        assert booster is None or pins.release(booster)


def test_rows_and_caps_only_rise() -> None:
    series = [pins.release(era.series) for era in ERAS]
    assert series == sorted(series) and len(set(series)) == len(series)
    for library in ("numpy", "scipy", "pandas"):
        caps = [_bounds(getattr(era, library))[1] for era in ERAS]
        floors = [_bounds(getattr(era, library))[0] for era in ERAS]
        assert caps == sorted(caps), f"{library}: a later release may not cap lower"
        assert floors == sorted(floors), f"{library}: a later release may not need less"
    for booster in ("xgboost", "lightgbm"):
        pinned = [pins.release(v) for era in ERAS if (v := getattr(era, booster)) is not None]
        assert pinned == sorted(pinned)
        newest = [getattr(era, booster) for era in ERAS]
        assert None not in newest[:-1], f"{booster}: only the current series takes the newest"


def test_releases_built_against_numpy_1_never_get_numpy_2() -> None:
    for era in ERAS:
        if pins.release(era.series) < (1, 4):
            assert not pins.allows(era.numpy, "2.0.0"), era.series
    assert not pins.allows(pins.era_for("1.4.1.post1").numpy, "2.0.0")


def test_the_constraints_scikit_learn_1_1_3_needs_on_python_3_11() -> None:
    era = pins.era_for("1.1.3")
    assert pins.allows(era.numpy, "1.23.5") and not pins.allows(era.numpy, "1.24.0")
    assert pins.allows(era.scipy, "1.9.3") and not pins.allows(era.scipy, "1.12.0")
    assert pins.allows(era.pandas, "1.5.3") and not pins.allows(era.pandas, "2.0.0")


@pytest.mark.parametrize(
    ("version", "series"),
    [
        ("1.3.2", "1.3"),
        ("1.3.0", "1.3"),
        ("1.4.1.post1", "1.4"),
        ("1.2.0rc1", "1.2"),
        ("1.6.dev0", "1.6"),
        ("0.24.2", "1.0"),  # older than every row: the first (no wheel for today's Pythons)
        ("1.10.0", "1.9"),  # newer than every row: the last
        ("2.1.0", "1.9"),
    ],
)
def test_lookup_picks_the_row_of_the_series_or_the_one_before(version: str, series: str) -> None:
    assert pins.era_for(version).series == series


def test_requirements_pin_the_release_exactly_and_its_era_around_it() -> None:
    wanted = pins.requirements("1.3.2")
    assert wanted[0] == "scikit-learn==1.3.2"
    assert "numpy>=1.17.3,<2" in wanted and f"joblib{pins.JOBLIB}" in wanted
    with_boosters = pins.requirements("1.3.2", xgboost="1.7.6", lightgbm=True)
    assert "xgboost==1.7.6" in with_boosters  # the version the file records
    assert f"lightgbm=={pins.era_for('1.3.2').lightgbm}" in with_boosters  # the era's


def test_a_bare_xgboost_model_belongs_to_the_era_of_its_booster() -> None:
    assert pins.era_of_xgboost("1.7.3").series == "1.2"
    assert pins.era_of_xgboost("2.0.3").series == "1.3"
    assert pins.era_of_xgboost("99.0.0").series == ERAS[-1].series


@pytest.mark.parametrize(
    ("version", "spec", "allowed"),
    [
        ("1.26.4", ">=1.17.3,<2", True),
        ("2.0.0", ">=1.17.3,<2", False),
        ("1.17.3", ">=1.17.3,<2", True),
        ("1.17", ">=1.17.3,<2", False),
        ("1.4.1.post1", "==1.4.1", True),
    ],
)
def test_allows(version: str, spec: str, allowed: bool) -> None:
    assert pins.allows(spec, version) is allowed


def test_a_malformed_range_is_refused() -> None:
    with pytest.raises(ValueError, match="not a version range"):
        pins.clauses(">=1.2;<2")
