def test_health_and_readiness_answer(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    body = client.get("/readyz").get_json()
    assert body["checks"] == {"database": "ok", "redis": "ok"}


def test_client_registers_with_email_code_delivered_over_smtp(client, factory, smtp_sink, run_jobs):
    code = factory.email_code(client, smtp_sink, run_jobs, "new@example.test", "register")
    response = client.post(
        "/api/v1/auth/register", json={"email": "New@Example.test", "password": "Amber-Thistle-31", "email_code": code}
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["user_info"]["user_type"] == "client"
