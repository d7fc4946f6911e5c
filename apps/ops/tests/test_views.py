from __future__ import annotations


def test_health_answers_ok_with_and_without_slash(client):
    for path in ("/health", "/health/"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
