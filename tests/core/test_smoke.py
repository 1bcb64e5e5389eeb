def test_home_page_renders_for_anonymous_visitors(client, db):
    response = client.get("/")
    assert response.status_code == 200
    assert "Aladdin" in response.content.decode()
