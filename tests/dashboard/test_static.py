"""The dashboard's static files: served from the package only, cached by content."""

from __future__ import annotations

import re

import requests

from hyperdash.server.pages import STATIC_DIR


def test_static_files_stay_inside_their_folder(hyperdash_server):
    url = hyperdash_server.url
    for path in ("/static/../pages.py", "/static/%2e%2e/pages.py", "/static/..%2fpages.py",
                 "/static/%2e%2e/%2e%2e/__init__.py", "/static/js/", "/static/no-such-file.js"):
        # A prepared request keeps the path as written (requests would not collapse the dots).
        request = requests.Request("GET", url + path).prepare()
        request.url = url + path
        resp = requests.Session().send(request, timeout=10)
        assert resp.status_code == 404, path
        assert "import" not in resp.text, path


def test_pages_link_fingerprinted_files_that_are_cached_for_good(hyperdash_server):
    url = hyperdash_server.url
    page = requests.get(url + "/login", timeout=10).text
    links = re.findall(r'(?:href|src)="(/static/[^"]+\?v=[0-9a-f]{12})"', page)
    assert any("/css/app.css" in link for link in links)
    for link in links:
        resp = requests.get(url + link, timeout=10)
        assert resp.status_code == 200, link
        assert "immutable" in resp.headers["cache-control"], link
    # Files that modules import by plain name are revalidated instead.
    plain = requests.get(url + "/static/js/api.js", timeout=10)
    assert plain.headers["cache-control"] == "no-cache"
    assert requests.get(url + "/static/js/api.js", headers={"if-none-match": plain.headers["etag"]},
                        timeout=10).status_code == 304


def test_vendored_libraries_are_recorded_with_their_versions():
    recorded = {}
    for line in (STATIC_DIR / "vendor" / "VERSIONS").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version, integrity = line.split()
            recorded[name] = version
            assert integrity.startswith("sha512-")
            assert (STATIC_DIR / "vendor" / name / "LICENSE").is_file()
    assert set(recorded) == {"uplot", "ansi_up"}
    assert f'this.VERSION = "{recorded["ansi_up"]}"' in (STATIC_DIR / "vendor/ansi_up/ansi_up.js").read_text()
    assert f'(v{recorded["uplot"]})' in (STATIC_DIR / "vendor/uplot/uPlot.iife.min.js").read_text()[:200]
