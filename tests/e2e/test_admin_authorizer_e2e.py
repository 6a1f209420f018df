"""The admin authorizer through the Lambda emulator (HttpApi REQUEST authorizer, simple responses)."""

import pytest

from events_loader import load_event

TOKEN = "e2e-admin-token-6b1f9a2c"


@pytest.fixture(scope="module")
def authorizer(built):
    from lambda_emulator import Emulator, load_function

    with Emulator(load_function("AdminAuthorizerFunction", built), extra_env={"ADMIN_API_TOKEN": TOKEN}) as emulator:
        yield emulator


@pytest.mark.parametrize(
    ("authorization", "authorized", "status"),
    [
        (None, False, 401),
        ("Token abc", False, 401),
        ("Bearer", False, 401),
        ("Bearer wrong-token", False, 403),
        (f"Bearer {TOKEN}", True, 200),
        (f"Bearer {TOKEN}", True, 200),  # warm again: the token is still read correctly
    ],
)
def test_decisions(authorizer, authorization, authorized, status):
    event = load_event("admin-authorizer", headers={"authorization": authorization})
    result = authorizer.invoke(event)
    assert result.payload["isAuthorized"] is authorized
    assert result.payload["context"]["status"] == status and result.payload["context"]["reason"]
    assert TOKEN not in "\n".join(result.logs)


def test_no_token_configured_denies_everyone(start_function):
    result = start_function("AdminAuthorizerFunction", ADMIN_API_TOKEN="").invoke(load_event("admin-authorizer"))
    assert result.payload["isAuthorized"] is False and result.payload["context"]["status"] == 403


def test_unreadable_token_secret_fails_closed(start_function):
    app = start_function(
        "AdminAuthorizerFunction",
        ADMIN_API_TOKEN="",
        ADMIN_API_TOKEN_SECRET_ARN="arn:aws:secretsmanager:us-east-1:123456789012:secret:missing",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",  # nothing answers: the secret cannot be read
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_MAX_ATTEMPTS="1",
    )
    result = app.invoke(load_event("admin-authorizer"))
    assert result.payload["isAuthorized"] is False and result.payload["context"]["status"] == 403
