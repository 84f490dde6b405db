"""Test a function as ``kfaas serve`` runs it, in the test's own process.

::

    from kfaas.testing import create_app

    def test_hello():
        client = create_app("hello", "main.py").test_client()
        response = client.post("/", json={"name": "Ada"})
        assert response.status_code == 200
        assert response.get_json() == {"hello": "Ada"}

``create_app`` takes functions-framework's arguments, and the client answers as Flask's test client does,
so tests written for ``functions_framework.create_app`` run against kfaas with that one import changed.
"""

from kfaas.runtime.testing import App, TestClient, TestResponse, create_app

__all__ = ["App", "TestClient", "TestResponse", "create_app"]
