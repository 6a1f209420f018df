"""GET /admin/monitor: the self-contained monitoring page (it polls the public health routes)."""

from pathlib import Path

from parel_monitoring.observability import lambda_handler

# Read once per execution environment; the page has no server-side data.
PAGE = (Path(__file__).with_name("monitor.html")).read_text(encoding="utf-8")
HEADERS = {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    # Everything the page needs is inline or same-origin: no CDN, fonts or third-party scripts.
    "content-security-policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@lambda_handler()
def handler(event, context):
    return {"statusCode": 200, "headers": dict(HEADERS), "body": PAGE}
