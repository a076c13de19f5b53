"""Era pins: which numpy, scipy and pandas go with each scikit-learn release in an origin check.

A model file records the scikit-learn that wrote it, not the numpy or scipy it ran with. The best
stand-in is what people ran with that release: each series' own lower bounds, capped at the last
releases that came out while the series was current (before the next scikit-learn minor release).
The installer picks the newest versions in these ranges that have a wheel for the running Python.

The caps are also hard limits: scikit-learn before 1.4.2 was built against numpy 1.x and cannot
import under numpy 2, and releases before 1.3 predate pandas 2.1 and scipy 1.12, whose removals
they trip over. For XGBoost and LightGBM, whose pickles rarely say which release wrote them, each
era names the newest release of its time.

``tests/test_origin_pins.py`` checks the table: every row's ranges are well formed and non-empty,
rows and caps only ever rise, and the lookup picks the right row for releases between rows.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

# Every origin environment gets at least apo's own joblib floor: older joblib unpickles
# object-dtype arrays with an unrestricted inner unpickler. Only its file reader is used.
JOBLIB = ">=1.6"
# XGBoost's Linux wheels from 2.1.1 on come without its CUDA libraries as xgboost-cpu.
XGBOOST_CPU_FROM = (2, 1, 1)


@dataclass(frozen=True)
class Era:
    """What to install beside the scikit-learn releases of one minor series (``1.3``: 1.3.x)."""

    series: str
    latest: str  # the series' last release: for files that record only their booster's version
    numpy: str
    scipy: str
    pandas: str
    xgboost: str | None  # the newest release of the era; None: the newest there is
    lightgbm: str | None


ERAS: tuple[Era, ...] = (
    # series latest    numpy               scipy               pandas          xgboost  lightgbm
    Era("1.0", "1.0.2", ">=1.14.6,<1.23", ">=1.1.0,<1.9", ">=1.0.5,<1.5", "1.6.1", "3.3.2"),
    Era("1.1", "1.1.3", ">=1.17.3,<1.24", ">=1.3.2,<1.10", ">=1.0.5,<2", "1.7.1", "3.3.3"),
    Era("1.2", "1.2.2", ">=1.17.3,<1.25", ">=1.3.2,<1.11", ">=1.0.5,<2.1", "1.7.5", "3.3.5"),
    Era("1.3", "1.3.2", ">=1.17.3,<2", ">=1.5.0,<1.12", ">=1.1.3,<2.2", "2.0.3", "4.2.0"),
    Era("1.4", "1.4.2", ">=1.19.5,<2", ">=1.6.0,<1.14", ">=1.1.5,<2.3", "2.0.3", "4.3.0"),
    Era("1.5", "1.5.2", ">=1.19.5,<2.2", ">=1.6.0,<1.15", ">=1.1.5,<2.3", "2.1.3", "4.5.0"),
    Era("1.6", "1.6.1", ">=1.19.5,<2.3", ">=1.6.0,<1.16", ">=1.1.5,<2.3", "3.0.2", "4.6.0"),
    Era("1.7", "1.7.2", ">=1.22.0,<2.4", ">=1.8.0,<1.17", ">=1.4.0,<2.4", "3.0.5", "4.6.0"),
    Era("1.8", "1.8.0", ">=1.24.1,<2.5", ">=1.10.0,<1.18", ">=1.5.0,<3.1", "3.1.3", "4.6.0"),
    Era("1.9", "1.9.1", ">=1.24.1,<3", ">=1.10.0,<2", ">=1.5.0,<4", None, None),
)

_RELEASE = re.compile(r"^\s*v?(\d+(?:\.\d+)*)")
_CLAUSE = re.compile(r"^(>=|<=|==|<|>)(\d+(?:\.\d+)*)$")


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: ``1.4.1.post1`` -> (1, 4, 1), ``1.5.dev0`` ->
    (1, 5). Raises ``ValueError`` when the string does not start with a number."""
    match = _RELEASE.match(version)
    if match is None:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def _padded(parts: tuple[int, ...], width: int = 4) -> tuple[int, ...]:
    return parts + (0,) * (width - len(parts))


def clauses(specifier: str) -> list[tuple[str, tuple[int, ...]]]:
    """``">=1.17.3,<2"`` as ``[(">=", (1, 17, 3)), ("<", (2,))]``; ``ValueError`` if malformed."""
    out = []
    for clause in specifier.split(","):
        match = _CLAUSE.match(clause.strip())
        if match is None:
            raise ValueError(f"not a version range: {specifier!r}")
        out.append((match.group(1), release(match.group(2))))
    return out


def allows(specifier: str, version: str) -> bool:
    """Whether ``version``'s release satisfies every clause of ``specifier``."""
    have = _padded(release(version))
    tests = {
        ">=": lambda want: have >= want,
        "<=": lambda want: have <= want,
        ">": lambda want: have > want,
        "<": lambda want: have < want,
        "==": lambda want: have == want,
    }
    return all(tests[op](_padded(bound)) for op, bound in clauses(specifier))


def era_for(sklearn_version: str) -> Era:
    """The row for a scikit-learn release: its own series', else the nearest one before it.

    Releases older than the first row get the first row: no such release has a wheel for a Python
    that apo runs on, and the installer says so.
    """
    wanted = release(sklearn_version)[:2]
    chosen = ERAS[0]
    for era in ERAS:
        if release(era.series) <= wanted:
            chosen = era
    return chosen


def era_of_xgboost(version: str) -> Era:
    """The first era whose XGBoost is ``version`` or newer: where a bare XGBoost model belongs."""
    wanted = release(version)
    for era in ERAS:
        if era.xgboost is None or _padded(release(era.xgboost)) >= _padded(wanted):
            return era
    return ERAS[-1]


def xgboost_package(version: str | None) -> str:
    """The distribution to install XGBoost ``version`` from (its import name is ``xgboost``)."""
    if sys.platform == "linux" and (version is None or release(version) >= XGBOOST_CPU_FROM):
        return "xgboost-cpu"
    return "xgboost"


def requirements(sklearn_version: str, *, xgboost: str | bool = False,
                 lightgbm: str | bool = False) -> tuple[str, ...]:  # fmt: skip
    """What to install for a model saved by ``sklearn_version``: that release exactly, its era's
    numpy, scipy and pandas, and XGBoost or LightGBM when the model holds one (the version given,
    else ``True`` for the era's)."""
    era = era_for(sklearn_version)
    wanted = [
        f"scikit-learn=={sklearn_version}",
        f"numpy{era.numpy}",
        f"scipy{era.scipy}",
        f"pandas{era.pandas}",
        f"joblib{JOBLIB}",
    ]
    if xgboost:
        version = xgboost if isinstance(xgboost, str) else era.xgboost
        package = xgboost_package(version)
        wanted.append(package if version is None else f"{package}=={version}")
    if lightgbm:
        version = lightgbm if isinstance(lightgbm, str) else era.lightgbm
        wanted.append("lightgbm" if version is None else f"lightgbm=={version}")
    return tuple(wanted)
