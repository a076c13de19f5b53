"""Origin environments: isolated Pythons with a model's own library versions, made once, cached.

One environment per set of requirements (``pins.requirements``) and Python interpreter, shared
by every model that needs the same versions, in a cache folder (``APO_ORIGIN_CACHE``, else the
user's cache: ``$XDG_CACHE_HOME/apo/origin`` or ``~/.cache/apo/origin`` on Linux). Always the
running Python: the worker imports apo's loader from this very installation.

Made with ``uv`` when it is on PATH, else ``python -m venv`` and pip. A venv's pip reads the
user's pip configuration and ``PIP_*`` variables itself; uv is given the same index settings,
read from ``pip config list``. Only wheels are installed (``--only-binary :all:``), so a release
with no wheel for this Python is reported ("no wheel of scikit-learn 1.0.2 for Python 3.11"),
never built from source.

An environment is built in a temporary folder beside its final place and renamed there once it
imports, under a per-environment lock, so a second apo waits for the first instead of building
it twice, and a killed build never leaves a half-made environment that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from alphapulse_onnx.errors import first_line

CACHE_ENV = "APO_ORIGIN_CACHE"
MARKER = "apo-origin.json"  # written last: an environment without it is not finished
_BUILDING = ".building-"
_LOCKS = ".locks"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# What an environment must import before it is kept; prints the versions it holds.
_IMPORT_CHECK = """
import json, sys
from importlib import metadata
modules, names = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for module in modules:
    __import__(module)
found = {"python": ".".join(map(str, sys.version_info[:3]))}
for name in names:
    try:
        found[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        pass
print(json.dumps(found))
"""
_UNREACHABLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
    r"resolution|Could not fetch URL|ConnectTimeout|ReadTimeout|Network is unreachable|"
    r"error sending request|dns error",
    re.IGNORECASE,
)


class EnvironmentUnavailable(Exception):
    """An environment that cannot be had; ``str`` is the one line that says why."""


def default_cache() -> Path:
    """``APO_ORIGIN_CACHE``, else the user's cache folder for apo, ``origin`` within it."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "apo" / "Cache" / "origin"
    if sys.platform == "darwin":  # pragma: no cover - exercised on macOS only
        return Path.home() / "Library" / "Caches" / "apo" / "origin"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "apo" / "origin"


@dataclass(frozen=True)
class Spec:
    """What one environment holds: requirements for the installer, and a name for people."""

    requirements: tuple[str, ...]
    label: str  # "scikit-learn 1.3.2", "scikit-learn 1.6.1, xgboost 2.1.4"

    @property
    def key(self) -> str:
        """The environment's folder name: readable, and unique to the requirements and Python."""
        interpreter = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
        identity = json.dumps([self.requirements, interpreter, sys.version, sys.platform])
        digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
        readable = re.sub(r"[^A-Za-z0-9.]+", "-", self.label).strip("-")
        return f"{readable}-py{PYTHON}-{digest}"


@dataclass(frozen=True)
class Environment:
    """A finished environment: its folder, its interpreter and what it holds."""

    path: Path
    versions: dict[str, str]  # distribution name -> installed version, and "python"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def python(self) -> Path:
        return python_in(self.path)


def python_in(folder: Path) -> Path:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        return folder / "Scripts" / "python.exe"
    return folder / "bin" / "python"


def find(spec: Spec, cache: Path) -> Environment | None:
    """The finished environment for ``spec`` in ``cache``, or ``None``."""
    folder = cache / spec.key
    try:
        recorded = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not python_in(folder).exists() or not isinstance(recorded, dict):
        return None
    versions = recorded.get("versions")
    if not isinstance(versions, dict):
        return None
    return Environment(folder, {str(k): str(v) for k, v in versions.items()})


def create(spec: Spec, cache: Path) -> Environment:
    """Make the environment for ``spec`` (or wait for another apo making it, and take that).

    Raises ``EnvironmentUnavailable`` with the reason when it cannot be made: no wheel for this
    Python, the package index out of reach, an installer failure, or an import that fails.
    """
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / _LOCKS / f"{spec.key}.lock"):
        ready = find(spec, cache)
        if ready is not None:
            return ready  # another apo made it while we waited for the lock
        for stale in cache.glob(f"{_BUILDING}{spec.key}-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a build that was killed
        building = Path(tempfile.mkdtemp(prefix=f"{_BUILDING}{spec.key}-", dir=cache))
        try:
            _build(spec, building)
            versions = _verify(spec, building)
            marker = {"requirements": list(spec.requirements), "versions": versions,
                      "python": sys.version.split()[0], "created": time.time()}  # fmt: skip
            (building / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
            os.chmod(building, 0o777 & ~_umask())  # mkdtemp's 0700: as any folder apo makes
            final = cache / spec.key
            if final.exists():  # unfinished (find() said so): not ours to keep
                shutil.rmtree(final)
            os.replace(building, final)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    made = find(spec, cache)
    if made is None:
        raise EnvironmentUnavailable(f"the environment for {spec.label} vanished from {cache}")
    return made


def _build(spec: Spec, folder: Path) -> None:
    uv = shutil.which("uv")
    if uv is not None:
        _run([uv, "venv", "--quiet", "--python", sys.executable, str(folder)], spec)
        install = [uv, "pip", "install", "--quiet", "--python", str(python_in(folder)),
                   "--only-binary", ":all:", "--index-strategy", "unsafe-best-match",
                   *uv_index_options(pip_config())]  # fmt: skip
    else:
        _run([sys.executable, "-m", "venv", str(folder)], spec)
        install = [str(python_in(folder)), "-m", "pip", "install", "--quiet", "--no-input",
                   "--disable-pip-version-check", "--only-binary=:all:"]  # fmt: skip
    _run([*install, *spec.requirements], spec)


def _verify(spec: Spec, folder: Path) -> dict[str, str]:
    names = [re.split(r"[<>=!~ ]", r, maxsplit=1)[0] for r in spec.requirements]
    modules = ["sklearn", "numpy", "scipy", "pandas", "joblib"]
    modules += [m for m in ("xgboost", "lightgbm") if any(n.startswith(m) for n in names)]
    argv = [str(python_in(folder)), "-I", "-c", _IMPORT_CHECK, json.dumps(modules),
            json.dumps(names)]  # fmt: skip
    output = _run(argv, spec, verifying=True)
    try:
        found = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise EnvironmentUnavailable(
            f"the environment for {spec.label} does not report its versions"
        ) from None
    # xgboost-cpu is XGBoost: say so in the versions people read.
    return {str(k).replace("xgboost-cpu", "xgboost"): str(v) for k, v in found.items()}


def _run(argv: Sequence[str], spec: Spec, *, verifying: bool = False) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL)  # fmt: skip
    except OSError as exc:
        raise EnvironmentUnavailable(f"cannot run {argv[0]}: {exc.strerror}") from None
    if done.returncode == 0:
        return done.stdout
    output = f"{done.stdout}\n{done.stderr}"
    if verifying:
        raise EnvironmentUnavailable(
            f"{spec.label} does not import in its environment: {_last_error(output)}"
        )
    raise EnvironmentUnavailable(install_failure(output, spec.label))


def install_failure(output: str, label: str, python: str = PYTHON) -> str:
    """The one line that says why pip or uv could not install ``label``'s environment."""
    missing = _missing_requirement(output)
    # A connection error explains an empty index, not a release that lacks only its wheel.
    if _UNREACHABLE.search(output) and (missing is None or "(from versions: none)" in output):
        return f"cannot reach the package index to install {label} ({_last_error(output)})"
    if missing is not None:
        return f"no wheel of {missing} for Python {python}"
    return f"cannot install {label}: {_last_error(output)}"


_PIP_MISSING = re.compile(r"No matching distribution found for ([^\s;]+)")
# uv: "Because scikit-learn==1.0.2 has no usable wheels and you require ...", "... and
# numpy>=1.17.3,<=1.22.4 has no usable wheels, ...", "Because there is no version of ...".
_UV_MISSING = re.compile(
    r"([A-Za-z0-9_.\-]+(?:(?:==|>=|<=|!=|<|>)\S+?)?),? has no (?:usable |matching )?wheels"
    r"|there is no version of (\S+?)(?: and|,|$)",
    re.MULTILINE,
)


def _missing_requirement(output: str) -> str | None:
    """``scikit-learn 1.0.2`` (or ``numpy>=1.14,<1.23``) when the installer found no wheel."""
    match = _PIP_MISSING.search(output)
    if match is not None:
        return _readable(match.group(1))
    found = _UV_MISSING.search(output)
    return _readable(found.group(1) or found.group(2)) if found is not None else None


def _readable(requirement: str) -> str:
    """``scikit-learn==1.0.2`` as ``scikit-learn 1.0.2``; ranges as they are."""
    name, sep, version = requirement.partition("==")
    return f"{name} {version}" if sep and not re.search(r"[<>,]", version) else requirement


def _last_error(output: str) -> str:
    lines = [line.strip(" ×╰─▶│") for line in output.splitlines() if line.strip(" ×╰─▶│")]
    errors = [line for line in lines if line.startswith(("ERROR", "error"))]
    return first_line((errors or lines or ["no output"])[-1], 240)


def pip_config() -> dict[str, str]:
    """``pip config list`` of the running Python's pip, as ``{"global.index-url": ...}``."""
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "config", "list"], check=False,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)  # fmt: skip
    except OSError:
        return {}
    settings = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            settings[key.strip()] = value.strip().strip("'\"")
    return settings


def uv_index_options(settings: dict[str, str]) -> list[str]:
    """pip's index settings as uv options: the environment beats ``install`` beats ``global``
    (pip's own precedence); list-valued settings are whitespace-separated."""
    chosen: dict[str, str] = {}
    for section in ("global", "install", ":env:"):
        for key, value in settings.items():
            scope, _, name = key.rpartition(".")
            if scope == section:
                chosen[name] = value
    options: list[str] = []
    if chosen.get("no-index", "").lower() in ("1", "true", "yes", "on"):
        options.append("--no-index")
    if chosen.get("index-url"):
        options += ["--index-url", chosen["index-url"]]
    for url in chosen.get("extra-index-url", "").split():
        options += ["--extra-index-url", url]
    for place in chosen.get("find-links", "").split():
        options += ["--find-links", place]
    return options


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive OS lock on ``path``, waited for; the kernel frees it if apo dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
