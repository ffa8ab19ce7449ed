"""The operations page and its data endpoint: behind the operator token, fed by payments."""

from __future__ import annotations

from tests.api.helpers import create, fresh_card_number
from tests.observability.processes import DECLINE


def _bearer(app) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.state.operator_token}"}


async def test_the_page_and_its_data_need_the_operator_token(app, client):
    for path in ("/dashboard", "/dashboard/data"):
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers={"Authorization": "Bearer wrong"})).status_code == 401
    assert (await client.get("/dashboard?token=wrong")).status_code == 401
    page = await client.get("/dashboard", headers=_bearer(app))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'fetch("/dashboard/data"' in page.text


async def test_a_token_in_the_url_becomes_a_cookie_and_leaves_the_url(app, client):
    response = await client.get(f"/dashboard?token={app.state.operator_token}")
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    cookie = response.headers["set-cookie"]
    assert (
        "HttpOnly" in cookie and "Path=/dashboard" in cookie and "SameSite=Strict" in cookie.replace("strict", "Strict")
    )
    client.cookies.clear()  # the test client keeps no cookie; send it as a browser would
    cookie_header = {"Cookie": f"switch_operator={app.state.operator_token}"}
    assert (await client.get("/dashboard/data", headers=cookie_header)).status_code == 200


async def test_data_shows_payments_per_account_and_recent_declines(app, client, merchant):
    before = (await client.get("/dashboard/data", headers=_bearer(app))).json()
    for number in (fresh_card_number(), fresh_card_number(), DECLINE):
        assert (await create(client, merchant, number=number)).status_code == 201
    data = (await client.get("/dashboard/data", headers=_bearer(app))).json()
    assert data["attempts"] == before["attempts"] + 3
    assert data["approved"] == before["approved"] + 2
    sandbox = next(account for account in data["accounts"] if account["account"] == "sandbox")
    assert sandbox["share_bp"] == 10_000
    assert 0 < sandbox["approval_rate_bp"] < 10_000
    assert sandbox["p99_ms"] >= sandbox["p50_ms"] >= 0
    newest = data["recent_declines"][0]
    assert newest["account"] == "sandbox" and newest["method"] == "card" and newest["code"]
    assert newest["code"] in {decline["code"] for decline in data["declines"]}
    assert set(data["unresolved"]) == {"count", "stuck", "oldest_age_s"}


async def test_data_reads_unresolved_intents_from_recovery_gauges(app, client):
    metrics = app.state.metrics
    metrics.unresolved_intents.set(4)
    metrics.oldest_unresolved_seconds.set(615)
    try:
        data = (await client.get("/dashboard/data", headers=_bearer(app))).json()
    finally:
        metrics.unresolved_intents.set(0)
        metrics.oldest_unresolved_seconds.set(0)
    assert data["unresolved"] == {"count": 4, "stuck": 0, "oldest_age_s": 615}
