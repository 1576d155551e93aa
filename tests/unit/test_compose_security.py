"""compose.yaml publishes its ports, so it runs with tokens: the services read a tokens file, the
crawlers send a worker token, and nothing opts out of authentication."""

from __future__ import annotations

from pathlib import Path

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"


def test_compose_uses_tokens() -> None:
    text = COMPOSE.read_text()
    assert "GHPULSE_AUTH_FILE: /run/secrets/ghpulse_tokens" in text
    assert "GHPULSE_TOKEN_FILE: /run/secrets/ghpulse_crawler_token" in text
    assert "GHPULSE_INSECURE" not in text
