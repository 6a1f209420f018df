"""Every function and layer is built by build/Makefile (SAM's makefile builder), so a plain `sam build` ships
precompiled bytecode; a function added without the Metadata line would ship none (tests/e2e/test_plain_sam_build.py
proves what the builder produces)."""

from __future__ import annotations

from pathlib import Path

from samcli.yamlhelper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
FUNCTION_METADATA = {"BuildMethod": "makefile", "ContextPath": "build"}


def _template() -> dict:
    return yaml_parse((ROOT / "template.yaml").read_text())


def test_every_function_uses_the_shared_makefile():
    resources = _template()["Resources"]
    functions = {name: r for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    assert len(functions) >= 12
    wrong = {name: r.get("Metadata") for name, r in functions.items() if r.get("Metadata") != FUNCTION_METADATA}
    assert not wrong, f"add `Metadata: {{BuildMethod: makefile, ContextPath: build}}` to: {wrong}"
    makefile = (ROOT / "build" / "Makefile").read_text()
    assert "\nbuild-%: check-python\n" in makefile  # the pattern rule every function's build-<LogicalId> meets


def test_the_layer_is_built_for_the_template_architecture():
    template = _template()
    layers = {name: r for name, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::LayerVersion"}
    assert set(layers) == {"SharedLayer"}
    metadata = layers["SharedLayer"]["Metadata"]
    assert metadata["BuildMethod"] == "makefile"
    assert metadata["BuildArchitecture"] == {"Ref": "Architecture"}
    assert metadata["ContextPath"] == {"Fn::Sub": "build/${Architecture}"}
    for architecture in template["Parameters"]["Architecture"]["AllowedValues"]:
        makefile = ROOT / "build" / architecture / "Makefile"
        assert makefile.is_file(), f"{makefile} missing: the layer cannot be built for {architecture}"
        assert "../Makefile" in makefile.read_text()
        assert f"PLATFORMS_{architecture} :=" in (ROOT / "build" / "Makefile").read_text()
