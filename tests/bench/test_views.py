"""The bare view bench/run compares REST single with is served only when the benchmark asks for it."""

import importlib

import pytest
from django.test import override_settings
from django.urls import NoReverseMatch, clear_url_caches, reverse


def _reload_urls():
    import lpr_server.urls

    importlib.reload(lpr_server.urls)
    clear_url_caches()


@pytest.fixture
def bench_views_on():
    with override_settings(BENCH_VIEWS=True):
        _reload_urls()
        yield
    _reload_urls()


def test_production_urls_have_no_bench_view(client):
    with pytest.raises(NoReverseMatch):
        reverse("bench-bare")
    assert client.post("/bench/bare/", data=b"{}", content_type="application/json").status_code == 404


def test_with_bench_views_on_the_bare_view_answers_a_small_json(bench_views_on, client):
    response = client.post(reverse("bench-bare"), data=b'{"plate": "AB123CD"}', content_type="application/json")

    assert response.status_code == 200 and response.json() == {"ok": True}
