"""Run built SAM functions under the AWS Lambda Runtime Interface Emulator, without Docker.

``sam local invoke`` needs Docker. This module runs the same built artifacts
(``.aws-sam/build``) the way Lambda does: the RIE binary shipped inside the
aws-sam-cli package starts the Python 3.13 interpreter with ``awslambdaric`` as
runtime client, the function's code as the task root and each layer's
``python/`` directory on the path (as Lambda mounts ``/opt/python``), in a clean
environment built from the template plus an ``env.json`` in the format of
``sam local invoke --env-vars``. It reports the emulator's INIT REPORT and
REPORT lines (init and invoke duration).

    python tools/lambda_emulator.py invoke HealthAppFunction -e events/health-app.json --env-vars env.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sam_template import Evaluator

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / ".aws-sam" / "local"  # `make build`: built for this machine's architecture
RUNTIME_DIR = ROOT / ".cache" / "lambda-runtime" / "python3.13"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
PSEUDO_PARAMETERS = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "parel-monitoring-local",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}
_INIT_REPORT = re.compile(r"INIT REPORT\(durationMs: ([0-9.]+)\)")
_REPORT = re.compile(r"^REPORT RequestId: (\S+)\s+(.*)$")


class EmulatorError(RuntimeError):
    pass


# --------------------------------------------------------------------------- template


def _parse_template(path: Path) -> dict[str, Any]:
    from samcli.yamlhelper import yaml_parse  # understands !Ref, !Sub, ... tags

    return yaml_parse(path.read_text())


def _resolve(value: Any, parameters: dict[str, str]) -> Any:
    """Resolve the intrinsics an environment variable can use locally: Ref and Sub."""
    if isinstance(value, dict) and len(value) == 1:
        ((name, argument),) = value.items()
        if name == "Ref":
            return parameters.get(argument, PSEUDO_PARAMETERS.get(argument, ""))
        if name == "Fn::Sub":
            text = argument if isinstance(argument, str) else argument[0]
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(parameters.get(m[1], PSEUDO_PARAMETERS.get(m[1], ""))), text)
    if isinstance(value, (str, int, float, bool)):
        return str(value).lower() if isinstance(value, bool) else str(value)
    return ""


def _choose(variables: dict[str, Any], template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    """Variables whose value is an ``!If`` get the branch the template's conditions choose (AWS::NoValue: unset)."""
    if not any(isinstance(value, dict) and "Fn::If" in value for value in variables.values()):
        return variables
    evaluator = Evaluator(template, parameters)
    chosen = {}
    for name, value in variables.items():
        while isinstance(value, dict) and "Fn::If" in value:
            condition, when_true, when_false = value["Fn::If"]
            value = when_true if evaluator.condition(condition) else when_false
        if value != {"Ref": "AWS::NoValue"}:
            chosen[name] = value
    return chosen


@dataclass
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str
    memory_mb: int
    timeout_s: int
    environment: dict[str, str]
    layer_dirs: list[Path] = field(default_factory=list)


def load_function(
    logical_id: str,
    build_dir: Path = BUILD_DIR,
    parameter_overrides: dict[str, str] | None = None,
    env_vars: dict[str, Any] | None = None,
) -> FunctionSpec:
    """Read one function of the built template, as ``sam local invoke`` would."""
    # Absolute: the runtime starts in the function's code directory, where a relative path means nothing.
    build_dir = Path(build_dir).resolve()
    template_path = build_dir / "template.yaml"
    if not template_path.exists():
        raise EmulatorError(f"{template_path} not found: run `make build` first")
    template = _parse_template(template_path)
    resources = template.get("Resources", {})
    if logical_id not in resources:
        functions = [key for key, res in resources.items() if res.get("Type") == "AWS::Serverless::Function"]
        raise EmulatorError(f"no function {logical_id!r} in the template; functions: {', '.join(functions)}")
    parameters = {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}
    parameters.update(parameter_overrides or {})
    if env_vars and isinstance(env_vars.get("Parameters"), dict):
        parameters.update({k: str(v) for k, v in env_vars["Parameters"].items()})
    globals_ = template.get("Globals", {}).get("Function", {})
    props = {**globals_, **resources[logical_id]["Properties"]}

    variables = {
        **globals_.get("Environment", {}).get("Variables", {}),
        **resources[logical_id]["Properties"].get("Environment", {}).get("Variables", {}),
    }
    environment = {
        name: _resolve(value, parameters) for name, value in _choose(variables, template, parameters).items()
    }
    # sam local semantics: env.json overrides only variables the template declares.
    overrides: dict[str, Any] = {}
    if env_vars:
        overrides.update(env_vars.get("Parameters", {}) if isinstance(env_vars.get("Parameters"), dict) else {})
        overrides.update(env_vars.get(logical_id, {}))
    for name in environment:
        if name in overrides:
            environment[name] = "" if overrides[name] is None else str(overrides[name])

    layer_dirs = []
    for layer in globals_.get("Layers", []) + resources[logical_id]["Properties"].get("Layers", []):
        ref = layer.get("Ref") if isinstance(layer, dict) else None
        if ref and ref in resources:
            layer_dirs.append(build_dir / resources[ref]["Properties"]["ContentUri"])
    return FunctionSpec(
        logical_id=logical_id,
        code_dir=build_dir / props["CodeUri"],
        handler=props["Handler"],
        memory_mb=int(_resolve(props.get("MemorySize", 128), parameters) or 128),
        timeout_s=int(_resolve(props.get("Timeout", 3), parameters) or 3),
        environment=environment,
        layer_dirs=layer_dirs,
    )


# --------------------------------------------------------------------------- emulator


def rie_binary() -> Path:
    import samcli

    machine = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    binary = Path(samcli.__file__).parent / "local" / "rapid" / f"aws-lambda-rie-{machine}"
    if not binary.exists():
        raise EmulatorError(f"{binary} not found: is aws-sam-cli installed?")
    return binary


def lambda_python() -> str:
    """The bare CPython 3.13 (not a virtualenv: its packages must not leak in)."""
    explicit = os.environ.get("LAMBDA_PYTHON")
    if explicit:
        return explicit
    if sys.version_info[:2] == (3, 13):
        candidate = Path(sys.base_prefix) / "bin" / "python3.13"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("python3.13")
    if not found:
        raise EmulatorError("python3.13 not found (set LAMBDA_PYTHON); the Lambda runtime is python3.13")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Invocation:
    payload: Any
    raw: bytes
    report: str | None
    duration_ms: float | None
    init_duration_ms: float | None
    logs: list[str]


# Called with (spec, event, invocation) after every invocation of any Emulator (the e2e tier checks each API
# answer against openapi.yaml this way); an observer must not raise.
_observers: list[Callable[[FunctionSpec, Any, Invocation], None]] = []


def add_observer(observer: Callable[[FunctionSpec, Any, Invocation], None]) -> None:
    _observers.append(observer)


def remove_observer(observer: Callable[[FunctionSpec, Any, Invocation], None]) -> None:
    _observers.remove(observer)


class Emulator:
    """One warm execution environment of one function (start, invoke..., stop)."""

    def __init__(
        self,
        spec: FunctionSpec,
        extra_env: dict[str, str] | None = None,
        runtime_dir: Path = RUNTIME_DIR,
        keep_transcript: bool = False,
    ):
        self.spec = spec
        self.extra_env = extra_env or {}
        self.runtime_dir = runtime_dir
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.lines: list[str] = []  # the current invocation's (cleared by each invoke)
        # keep_transcript: every line the environment ever wrote (init, every invocation, in between, after the
        # last one), for a caller that must see them all; off by default to keep a long-lived server's memory flat.
        self.transcript: list[str] | None = [] if keep_transcript else None
        self._cond = threading.Condition()
        self._pump_thread: threading.Thread | None = None

    def environment(self) -> dict[str, str]:
        if not (self.runtime_dir / "awslambdaric").exists():
            raise EmulatorError(f"{self.runtime_dir} lacks awslambdaric: run `make runtime`")
        paths = [str(self.spec.code_dir)]
        for layer in self.spec.layer_dirs:
            paths += [str(layer / "python" / "lib" / "python3.13" / "site-packages"), str(layer / "python")]
        paths.append(str(self.runtime_dir))
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PYTHONPATH": os.pathsep.join(paths),
            "PYTHONNOUSERSITE": "1",
            # Lambda's /var/task and /opt are read-only: nothing is cached between cold starts.
            "PYTHONDONTWRITEBYTECODE": "1",
            "LAMBDA_TASK_ROOT": str(self.spec.code_dir),
            "LAMBDA_RUNTIME_DIR": str(self.runtime_dir),
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "AWS_LAMBDA_FUNCTION_NAME": self.spec.logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(self.spec.timeout_s),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.spec.logical_id}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
            "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", os.environ.get("AWS_REGION", "us-east-1")),
        }
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        env.update({key: value for key, value in os.environ.items() if key.startswith("AWS_ENDPOINT_URL")})
        env.update(self.spec.environment)
        env.update(self.extra_env)
        return env

    def start(self) -> Emulator:
        command = [
            str(rie_binary()),
            "--log-level", "info",
            "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}",
            "--runtime-api-address", f"127.0.0.1:{_free_port()}",
            # -S: the host interpreter's site-packages (and its .pth hooks) are not part of
            # the Lambda runtime; only the task root, the layers and the runtime client are.
            lambda_python(), "-S", "-m", "awslambdaric", self.spec.handler,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            cwd=self.spec.code_dir,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmulatorError("emulator exited at start:\n" + "\n".join(self.lines))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise EmulatorError("emulator did not listen within 10 s")

    def _pump(self) -> None:
        assert self.process and self.process.stdout
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                if self.transcript is not None:
                    self.transcript.append(line)
                self._cond.notify_all()

    def _reports(self) -> int:
        return sum(1 for line in self.lines if line.startswith("REPORT RequestId:"))

    def invoke(self, event: Any, timeout: float | None = None) -> Invocation:
        if self.process is None:
            self.start()
        with self._cond:  # lines of earlier invocations are done with: keep a long-lived server's memory flat
            del self.lines[:]
            first_line, reports_before = 0, 0
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{INVOKE_PATH}", data=json.dumps(event).encode(), method="POST"
        )
        try:
            # Always http://127.0.0.1 (the emulator we started).
            with urllib.request.urlopen(request, timeout=timeout or self.spec.timeout_s + 10) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
        with self._cond:  # the REPORT line follows the response shortly
            self._cond.wait_for(lambda: self._reports() > reports_before, timeout=5)
            lines = self.lines[first_line:]
        report = next((line for line in lines if line.startswith("REPORT RequestId:")), None)
        init = next((float(m[1]) for line in lines if (m := _INIT_REPORT.search(line))), None)
        duration = re.search(r"\tDuration: ([0-9.]+) ms", report or "")
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode("utf-8", "replace")
        logs = [line for line in lines if "(rapid)" not in line and not line.startswith(("START ", "END ", "REPORT "))]
        invocation = Invocation(payload, raw, report, float(duration[1]) if duration else None, init, logs)
        for observer in tuple(_observers):
            observer(self.spec, event, invocation)
        return invocation

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._pump_thread is not None:  # its last lines are read before stop() returns
            self._pump_thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def read_env_file(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    file = Path(path)
    if not file.exists():
        raise EmulatorError(f"env-vars file {path} not found")
    return json.loads(file.read_text())


def parse_overrides(items: list[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        for pair in item.split():
            name, _, value = pair.partition("=")
            overrides[name] = value
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    invoke = sub.add_parser("invoke", help="invoke a built function once, like `sam local invoke`")
    invoke.add_argument("function", help="logical ID, e.g. HealthAppFunction")
    invoke.add_argument("-e", "--event", help="event JSON file (default: {})")
    invoke.add_argument("-n", "--env-vars", help="env.json in the format of sam local invoke --env-vars")
    invoke.add_argument("--parameter-overrides", nargs="*", default=[], help="Name=Value ...")
    invoke.add_argument("--build-dir", default=str(BUILD_DIR))
    args = parser.parse_args(argv)

    try:
        env_vars = read_env_file(args.env_vars)
        spec = load_function(args.function, Path(args.build_dir), parse_overrides(args.parameter_overrides), env_vars)
        event = json.loads(Path(args.event).read_text()) if args.event else {}
        with Emulator(spec) as emulator:
            result = emulator.invoke(event)
    except EmulatorError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    for line in result.logs:
        print(line, file=sys.stderr)
    if result.init_duration_ms is not None:
        print(f"INIT REPORT Init Duration: {result.init_duration_ms:.2f} ms", file=sys.stderr)
    print(result.report or "REPORT line missing", file=sys.stderr)
    print(json.dumps(result.payload, indent=2) if not isinstance(result.payload, str) else result.payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
