from tests.conftest import sign_in


def test_sign_in_then_dashboard_shows_status_navigation(client):
    assert client.get("/").status_code == 302
    response = sign_in(client)
    assert response.status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert "System status" in page
    assert client.get("/status/").status_code == 200
