"""Run by test_configuration_errors.py in its own interpreter: one function's real handler, imported
afresh for each case (an environment to set), then invoked with its events. Prints one JSON line per
case: whether the import raised, and each invocation's answer or exception."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "layers" / "shared"), str(ROOT / "tests")]

from events_loader import load_event  # noqa: E402
from parel_monitoring import error_tracker, logs  # noqa: E402
from parel_monitoring.settings import ConfigurationError  # noqa: E402

CONTEXT = SimpleNamespace(
    function_name="Scenario", memory_limit_in_mb=256, aws_request_id="req-config",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:Scenario",
    get_remaining_time_in_millis=lambda: 10_000,
)  # fmt: skip


def run_case(code_uri: str, events: list[str], env: dict[str, str], number: int) -> dict:
    saved = dict(os.environ)
    os.environ.update(env)
    error_tracker._state.update(initialized=False, enabled=False)
    logs.create_logger.cache_clear()
    try:
        spec = importlib.util.spec_from_file_location(f"handler_{number}", ROOT / code_uri / "app.py")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:
            return {"import": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        answers = []
        for name in events:
            try:
                answers.append({"event": name, "answer": module.handler(load_event(name), CONTEXT)})
            except ConfigurationError as exc:
                answers.append({"event": name, "configuration": exc.variable})
            except BaseException as exc:
                answers.append({"event": name, "raised": f"{type(exc).__name__}: {exc}"})
        return {"import": None, "answers": answers}
    finally:
        os.environ.clear()
        os.environ.update(saved)


if __name__ == "__main__":
    code_uri, events, cases = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    for number, env in enumerate(cases):
        print(json.dumps(run_case(code_uri, events, env, number), default=str), flush=True)
