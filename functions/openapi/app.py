"""GET /api/openapi.json: the API's contract (openapi.yaml as JSON, generated beside this file), public, cacheable."""

import hashlib
from pathlib import Path

from parel_monitoring.http import header
from parel_monitoring.observability import lambda_handler

# Read and hashed once per execution environment: the document changes only with a deployment.
DOCUMENT = Path(__file__).with_name("openapi.json").read_text(encoding="utf-8")
ETAG = '"' + hashlib.sha256(DOCUMENT.encode()).hexdigest()[:32] + '"'
MAX_AGE_S = 300
HEADERS = {"cache-control": f"public, max-age={MAX_AGE_S}", "etag": ETAG}


def _current(if_none_match: str | None) -> bool:
    """Whether the client's If-None-Match names this document (weak comparison, RFC 9110 13.1.2)."""
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or ETAG in tags


@lambda_handler()
def handler(event, context):
    if _current(header(event, "if-none-match")):
        return {"statusCode": 304, "headers": dict(HEADERS), "body": ""}
    return {"statusCode": 200, "headers": {"content-type": "application/json", **HEADERS}, "body": DOCUMENT}
