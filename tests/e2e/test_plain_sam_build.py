"""A plain `sam build` (no make), as a user following SAM's convention runs it, ships bytecode the Lambda
runtime uses: every module of the layer (our package and its installed dependencies) and of every function has
its ``__pycache__/<name>.cpython-313.pyc``, hash-based and unchecked (valid whatever the mtimes SAM, the zip and
Lambda give the files), of Python 3.13's magic number and of that very source. Then, from the zips `sam package`
makes, unpacked read-only as Lambda mounts them, each function's handler is imported with bytecode writing off
and no module of the bundle is compiled from source. Both architectures: the deploy default (arm64, whose layer
must carry aarch64 wheels) and x86_64; the import runs on this machine's own architecture."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from lambda_emulator import RUNTIME_DIR, lambda_python
from tree_copy import copy_as_clone

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 900
HASH_BASED, CHECK_SOURCE = 0b01, 0b10  # PEP 552 flags in a .pyc header
ELF_MACHINE = {"x86_64": 0x3E, "arm64": 0xB7}
LOCAL_ARCH = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"

# Run by the runtime's interpreter (-B, read-only code): import the handler (and, for the layer, every module of
# our package), recording every module of the bundle compiled from source instead of loaded from its .pyc.
IMPORT_PROBE = r"""
import importlib, json, pkgutil, sys
from importlib.machinery import SourceFileLoader

roots, modules = sys.argv[1:3], sys.argv[3:]
compiled = []
original = SourceFileLoader.source_to_code

def source_to_code(self, data, path, *args, **kwargs):
    if str(path).startswith(tuple(roots)):
        compiled.append(str(path))
    return original(self, data, path, *args, **kwargs)

SourceFileLoader.source_to_code = source_to_code
for name in modules:
    if name.endswith(".*"):
        package = importlib.import_module(name[:-2])
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
    else:
        importlib.import_module(name)
loaded = sorted(m.__spec__.cached for m in list(sys.modules.values())
                if getattr(m, "__spec__", None) and m.__spec__.origin and m.__spec__.origin.startswith(tuple(roots))
                and m.__spec__.origin.endswith(".py"))
print(json.dumps({"compiled": compiled, "loaded": loaded, "dont_write_bytecode": sys.dont_write_bytecode}))
"""


def _environment() -> dict[str, str]:
    """A user's shell: python3.13 on PATH (SAM's builders need it), no virtualenv of this checkout."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VIRTUAL_ENV", "PYTEST_"))}
    parts = [part for part in env["PATH"].split(os.pathsep) if "/.venv/" not in part + "/"]
    env["PATH"] = os.pathsep.join([str(Path(lambda_python()).parent), *parts])
    env["SAM_CLI_TELEMETRY"] = "0"
    for name in ("PYTHONPATH", "PYTHON313"):
        env.pop(name, None)
    return env


_BUILDS: dict[str, Path] = {}


@pytest.fixture(scope="module", params=["arm64", "x86_64"])
def plain_build(request, tmp_path_factory) -> tuple[str, Path]:
    return request.param, _build(request.param, tmp_path_factory)


def _build(architecture: str, tmp_path_factory) -> Path:
    """``sam build`` in a copy of the tree (arm64: the template's default, no option at all), once per run."""
    if architecture in _BUILDS:
        return _BUILDS[architecture]
    tree = copy_as_clone(tmp_path_factory.mktemp(f"plain-{architecture}") / "parel-monitoring")
    sam = Path(ROOT / ".venv" / "bin" / "sam")
    command = [str(sam), "build"]
    if architecture != "arm64":
        command += ["--parameter-overrides", f"Architecture={architecture}"]
    result = subprocess.run(
        command, cwd=tree, env=_environment(), capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
    )
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    _BUILDS[architecture] = tree / ".aws-sam" / "build"
    return _BUILDS[architecture]


def _artifacts(build_dir: Path) -> dict[str, Path]:
    """Every function's and layer's built directory, from the built template."""
    from lambda_emulator import _parse_template

    resources = _parse_template(build_dir / "template.yaml")["Resources"]
    found = {}
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            found[logical_id] = build_dir / properties["CodeUri"]
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            found[logical_id] = build_dir / properties["ContentUri"]
    return found


def bytecode_problems(directory: Path) -> tuple[list[str], int]:
    """Why a module under ``directory`` would be compiled at run time (empty: none), and how many were checked."""
    problems, checked = [], 0
    for source in sorted(directory.rglob("*.py")):
        checked += 1
        cached = Path(importlib.util.cache_from_source(str(source)))
        where = source.relative_to(directory)
        if not cached.is_file():
            problems.append(f"{where}: no {cached.relative_to(directory)}")
            continue
        header = cached.read_bytes()[:16]
        flags = int.from_bytes(header[4:8], "little")
        if header[:4] != importlib.util.MAGIC_NUMBER:
            problems.append(f"{where}: magic {header[:4]!r}, Python 3.13's is {importlib.util.MAGIC_NUMBER!r}")
        elif flags != HASH_BASED:
            problems.append(f"{where}: flags {flags:#04b}, not unchecked-hash ({HASH_BASED:#04b})")
        elif header[8:16] != importlib.util.source_hash(source.read_bytes()):
            problems.append(f"{where}: the .pyc is of another source")
    return problems, checked


def _lambda_zip(directory: Path, destination: Path) -> Path:
    """``directory`` zipped the way `sam package`/`sam deploy` zip it, unpacked read-only at ``destination``."""
    from samcli.lib.package.utils import make_zip_with_lambda_permissions, zip_folder

    zipped = zip_folder(str(directory), zip_method=make_zip_with_lambda_permissions)
    with zipped as (zip_file, _), zipfile.ZipFile(zip_file) as archive:
        names = set(archive.namelist())
        archive.extractall(destination)
    sources = [name for name in names if name.endswith(".py")]
    missing = [name for name in sources if importlib.util.cache_from_source(name) not in names]
    assert sources and not missing, f"the deploy zip of {directory.name} lacks the bytecode of {missing[:10]}"
    for path in [destination, *destination.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return destination


def _make_writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def import_probe(task_root: Path, layer_root: Path, modules: list[str]) -> dict:
    """Import ``modules`` as the Lambda runtime would (task root, /opt/python, the runtime's own packages such as
    boto3), writing no bytecode."""
    layer_paths = [layer_root / "python" / "lib" / "python3.13" / "site-packages", layer_root / "python"]
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join(map(str, [task_root, *layer_paths, RUNTIME_DIR])),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_LAMBDA_FUNCTION_NAME": "probe",
        "AWS_REGION": "us-east-1",
    }
    roots = [str(task_root) + os.sep, str(layer_root) + os.sep]
    result = subprocess.run(
        [lambda_python(), "-B", "-s", "-c", IMPORT_PROBE, *roots, *modules],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, f"importing {modules} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_module_has_bytecode_the_runtime_uses(plain_build):
    architecture, build_dir = plain_build
    artifacts = _artifacts(build_dir)
    functions = [name for name in artifacts if name != "SharedLayer"]
    assert "SharedLayer" in artifacts and len(functions) >= 12, sorted(artifacts)
    checked = {}
    for name, directory in artifacts.items():
        problems, checked[name] = bytecode_problems(directory)
        assert not problems, f"{architecture} {name}: {len(problems)} module(s) without usable bytecode:\n" + (
            "\n".join(problems[:20])
        )
        assert checked[name] >= 1, f"{name}: no module at all in {directory}"
    layer = artifacts["SharedLayer"] / "python"
    # Our package and its installed dependencies, each with bytecode (not just our own files).
    for package in ("parel_monitoring", "aws_lambda_powertools", "sentry_sdk", "psycopg", "redis", "requests"):
        assert (layer / package / "__pycache__" / "__init__.cpython-313.pyc").is_file(), package
    assert checked["SharedLayer"] > 500, checked  # the dependencies, not only our package
    # The layer's compiled dependencies are the architecture's (aarch64 wheels for an arm64 deploy).
    libraries = [path for path in layer.rglob("*.so*") if path.is_file()]
    assert libraries, "no compiled library in the layer (psycopg's binary wheel is expected)"
    wrong = [p.name for p in libraries if int.from_bytes(p.read_bytes()[18:20], "little") != ELF_MACHINE[architecture]]
    assert not wrong, f"{architecture} layer holds libraries of another architecture: {wrong}"


def test_deploy_zips_carry_the_bytecode(plain_build, tmp_path):
    """What `sam package`/`sam deploy` upload (their zip of each built directory) keeps every .pyc."""
    _, build_dir = plain_build
    for name, directory in _artifacts(build_dir).items():
        _lambda_zip(directory, tmp_path / name)
    _make_writable(tmp_path)


def test_handlers_import_from_bytecode_on_read_only_code(tmp_path_factory, tmp_path):
    """This machine's architecture (the other's layer cannot load here; its bytecode and zips are checked above)."""
    build_dir = _build(LOCAL_ARCH, tmp_path_factory)
    artifacts = _artifacts(build_dir)
    opt = _lambda_zip(artifacts.pop("SharedLayer"), tmp_path / "opt")
    try:
        layer_run = import_probe(tmp_path / "none", opt, ["parel_monitoring.*", "psycopg", "redis", "requests"])
        assert layer_run["dont_write_bytecode"] is True
        assert not layer_run["compiled"], f"compiled from source at import: {layer_run['compiled'][:20]}"
        assert len(layer_run["loaded"]) > 100, len(layer_run["loaded"])
        for name, directory in artifacts.items():
            task = _lambda_zip(directory, tmp_path / name)
            run = import_probe(task, opt, ["app"])
            assert not run["compiled"], f"{name}: compiled from source at import: {run['compiled'][:20]}"
            assert str(task / "__pycache__" / "app.cpython-313.pyc") in run["loaded"], (name, run["loaded"][:5])
        # And the check can fail: the handler's .pyc gone (a build without bytecode), it is compiled at import.
        _make_writable(task)
        (task / "__pycache__" / "app.cpython-313.pyc").unlink()
        task.chmod(0o555)
        assert import_probe(task, opt, ["app"])["compiled"] == [str(task / "app.py")]
        assert bytecode_problems(task)[0] == ["app.py: no __pycache__/app.cpython-313.pyc"]
    finally:
        _make_writable(tmp_path)


def test_bytecode_check_fails_on_timestamp_or_foreign_bytecode(tmp_path):
    """``bytecode_problems`` tells a usable .pyc from a timestamp-based one and from one of another source."""
    import py_compile

    source = tmp_path / "module.py"
    source.write_text("VALUE = 1\n")
    py_compile.compile(str(source), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    assert bytecode_problems(tmp_path) == ([], 1)
    source.write_text("VALUE = 2\n")
    assert bytecode_problems(tmp_path)[0] == ["module.py: the .pyc is of another source"]
    py_compile.compile(str(source), invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    assert bytecode_problems(tmp_path)[0] == ["module.py: flags 0b00, not unchecked-hash (0b01)"]
    py_compile.compile(str(source), invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    assert bytecode_problems(tmp_path)[0] == ["module.py: flags 0b11, not unchecked-hash (0b01)"]
