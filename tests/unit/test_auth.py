import pytest

from parel_monitoring.auth import authorize

TOKEN = "s3cret-admin-token-0123456789"


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        ("", 401),
        ("Bearer", 401),
        ("Bearer ", 401),
        (f"Basic {TOKEN}", 401),
        (f"bearer{TOKEN}", 401),
        (f"Bearer {TOKEN} extra", 401),
        ("Bearer " + "x" * 5000, 401),
        ("Bearer tök€n", 401),
        (f"Bearer {TOKEN}x", 403),
        (f"Bearer {TOKEN[:-1]}", 403),
        ("Bearer wrong", 403),
        (f"Bearer {TOKEN}", 200),
        (f"  Bearer {TOKEN}  ", 200),
    ],
)
def test_decisions(header, status):
    decision = authorize(header, TOKEN)
    assert decision.status == status and decision.authorized is (status == 200)
    assert TOKEN not in decision.reason


@pytest.mark.parametrize("configured", [None, ""])
def test_no_token_configured_denies_everything(configured):
    assert authorize(f"Bearer {TOKEN}", configured).authorized is False
    assert authorize("Bearer ", configured).status == 403
