"""template.yaml as CloudFormation will see it: SAM's transform, and the intrinsics evaluated for given parameters.

Used by the template tests (what each deployed role may do, under every combination of the optional
parameters) and by ``make reliability`` (checkov runs on the transformed template, the one that is deployed).

    PYTHONPATH=tools .venv/bin/python tools/sam_template.py > transformed.json
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
# What the transform needs to know about a deployment (never an account of ours: the values are fixed).
REGION, ACCOUNT, PARTITION = "eu-west-1", "123456789012", "aws"
PSEUDO = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": PARTITION,
          "AWS::StackName": "parel-monitoring", "AWS::URLSuffix": "amazonaws.com"}  # fmt: skip


class NoValue:
    """``AWS::NoValue``: the property (or list item) disappears."""

    def __repr__(self) -> str:
        return "NoValue"

    def __bool__(self) -> bool:
        return False


NO_VALUE = NoValue()


def load(path: Path = TEMPLATE) -> dict[str, Any]:
    from samcli.yamlhelper import yaml_parse  # understands !Ref, !If, ... tags

    return yaml_parse(path.read_text())


def transform(template: dict[str, Any] | None = None) -> dict[str, Any]:
    """SAM's transform of ``template`` (default: template.yaml), as ``sam validate`` / CloudFormation run it."""
    from samtranslator.translator.transform import transform as sam_transform

    template = copy.deepcopy(template if template is not None else load())
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):  # local paths: sam package would upload them
            if isinstance(properties.get(key), str):
                properties[key] = "s3://bucket/key"

    class _NoManagedPolicies:  # the template names managed policies by ARN only
        def load(self) -> dict[str, str]:
            return {}

    saved = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = REGION
    try:
        return sam_transform(template, {}, _NoManagedPolicies())
    finally:
        if saved is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = saved


class Evaluator:
    """Evaluates a template's intrinsics (Ref, Fn::If, conditions, Fn::Sub, Fn::Join, Fn::GetAtt) for
    given parameter values; ``Fn::GetAtt`` becomes the string ``<resource>.<attribute>``."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, str] | None = None) -> None:
        self.template = template
        self.parameters = {name: spec.get("Default", "") for name, spec in template.get("Parameters", {}).items()}
        self.parameters.update(parameters or {})
        self._conditions: dict[str, bool] = {}

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            value = self.parameters[name]
            spec = self.template["Parameters"][name]
            if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                return [] if value == "" else value.split(",")
            return value
        return f"{name}.Ref"  # a resource

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.value(self.template["Conditions"][name]))
        return self._conditions[name]

    def value(self, node: Any) -> Any:
        """``node`` with every intrinsic evaluated; list items and properties that are NoValue are dropped."""
        if isinstance(node, list):
            return [item for item in (self.value(item) for item in node) if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, argument),) = node.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Condition":
                return self.condition(argument)
            if key == "Fn::If":
                name, when_true, when_false = argument
                return self.value(when_true if self.condition(name) else when_false)
            if key == "Fn::Equals":
                left, right = (self.value(item) for item in argument)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.value(argument[0])
            if key == "Fn::And":
                return all(self.value(item) for item in argument)
            if key == "Fn::Or":
                return any(self.value(item) for item in argument)
            if key == "Fn::Join":
                separator, items = argument
                items = self.value(items)
                return separator.join(str(item) for item in (items if isinstance(items, list) else [items]))
            if key == "Fn::GetAtt":
                resource, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return f"{resource}.{attribute}"
            if key == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                values = {name: self.value(value) for name, value in variables.items()}

                def substitute(match: re.Match[str]) -> str:
                    name = match[1]
                    if name in values:
                        return str(values[name])
                    if "." in name:
                        return name
                    return str(self.ref(name))

                return re.sub(r"\$\{([^}!]+)\}", substitute, text)
        return {key: value for key, value in ((k, self.value(v)) for k, v in node.items()) if value is not NO_VALUE}


if __name__ == "__main__":
    json.dump(transform(), sys.stdout, indent=1)
    sys.stdout.write("\n")
