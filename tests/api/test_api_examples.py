"""Every response model of the OpenAPI document has an example, and the example holds:
it validates against the model's JSON schema and parses as the model."""

from __future__ import annotations

from typing import Any

import pytest

from pgwarden.api import create_app
from pgwarden.config import Settings

jsonschema = pytest.importorskip("jsonschema")

# FastAPI's own answer to a request it cannot parse: its model, not one of ours.
_FASTAPI_OWN = {"HTTPValidationError"}

_app = create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"))
_document = _app.openapi()
_SCHEMAS: dict[str, Any] = _document["components"]["schemas"]


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[-1]} if "$ref" in node else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def _response_models() -> list[str]:
    names: set[str] = set()
    for operations in _document["paths"].values():
        for operation in operations.values():
            names |= _refs(operation.get("responses", {}))
    return sorted(names - _FASTAPI_OWN)


def _model(name: str) -> Any:
    """Return the pydantic model the document's schema ``name`` was made from."""
    from pgwarden.api import _edge, _schemas, migrations, monitoring

    models = {model.__name__: model for model in _schemas._models.values()}
    for model in (_edge.ErrorBody, monitoring.Liveness, monitoring.Readiness,
                  monitoring.Summary, monitoring.History, migrations.MigrationState,
                  migrations.MigrationRevision, migrations.UpgradePlan):  # fmt: skip
        models[model.__name__] = model
    return models[name]


def test_the_document_names_its_response_models() -> None:
    models = _response_models()
    assert {"NPlusOneReport", "SlowStatementReport", "TargetStatus", "PitrStatus"} <= set(models)
    assert len(models) >= 25


@pytest.mark.parametrize("name", _response_models())
def test_every_response_model_has_an_example_that_holds(name: str) -> None:
    schema = _SCHEMAS[name]
    examples = schema.get("examples")
    assert examples, f"{name} has no example"
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": _document["components"]},
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    for example in examples:
        problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(example)]
        assert problems == [], name
        _model(name).model_validate(example)  # and pydantic reads it as the model
        # every key the model answers with is shown
        assert set(example) == set(schema["properties"]), name


def test_a_bad_example_would_be_caught() -> None:
    validator = jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/NPlusOneReport", "components": _document["components"]},
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    example = dict(_SCHEMAS["NPlusOneReport"]["examples"][0], line="42", kind="loop")
    del example["statement"]  # a null FastAPI would drop, were the examples not put back
    found = {e.message.split("'")[1] for e in validator.iter_errors(example)}
    assert found == {"loop", "42", "statement"}
