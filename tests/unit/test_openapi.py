"""Every service's OpenAPI document lists the errors its routes answer, in their format."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import catalogue
from shared.runtime.service import ServiceSpec, create_app


@pytest.mark.parametrize("service", catalogue.names())
def test_every_operation_documents_its_errors_in_the_services_format(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAR_DIR", str(tmp_path))  # the app writes a development secret there
    spec = catalogue.spec(service)
    assert isinstance(spec, ServiceSpec)
    document = create_app(spec).openapi()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's shape, not the services'
    assert schemas["Error"]["required"] == ["error"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            where = f"{method.upper()} {path}"
            assert responses["405"]["headers"]["Allow"]["required"], where
            for status, answer in responses.items():
                if status.startswith(("4", "5")) and "content" in answer:
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (where, status)
            if "{" in path:
                assert "404" in responses, where
            if method in ("post", "put", "patch", "delete"):
                assert {"409", "413", "422"} <= set(responses), where
            parameters = {p["name"] for p in operation.get("parameters", [])}
            if "min_position" in parameters:
                assert "Retry-After" in responses["503"]["headers"], where
            if path.startswith(("/staff", "/clients", "/tickets", "/departments")):
                assert {"401", "403"} <= set(responses), where


def test_the_login_documents_its_own_refusals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    spec = catalogue.spec("identity")
    assert isinstance(spec, ServiceSpec)
    login = create_app(spec).openapi()["paths"]["/auth/login"]["post"]["responses"]
    assert {"401", "403", "429"} <= set(login)
    assert "Retry-After" in login["429"]["headers"]
