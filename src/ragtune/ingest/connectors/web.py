"""A web site: crawled from start URLs and/or a sitemap, politely, and re-crawled incrementally.

- Scope: only URLs under the ``allow`` prefixes (default: each start URL's scheme and host);
  ``robots.txt`` is obeyed (its ``Crawl-delay`` too, when longer than ``delay_s``).
- Politeness: at most one request per ``delay_s`` seconds to a host.
- Incremental: a page fetched before is asked for with ``If-None-Match`` / ``If-Modified-Since``;
  a ``304 Not Modified`` costs no body, and its links (remembered in the state) keep the crawl
  going. A page gone (404/410) or no longer linked is deleted; one that fails (timeout, 5xx)
  keeps its last good version.
- Content: the page's main region (``<main>``, ``role=main``, its one ``<article>``), as text with
  its headings; non-HTML responses are skipped.

The crawl is complete (unlisted pages are deleted) unless it stopped at ``max_pages``.
"""

from __future__ import annotations

import time
import urllib.robotparser
from collections import deque
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urldefrag, urljoin, urlsplit

from ragtune.ingest.connectors.base import Failed, Item, Scan, Skipped, Unchanged, option, str_list, unknown_options
from ragtune.ingest.loaders.html import soup_to_text
from ragtune.types import Document

_OPTIONS = {"start", "sitemap", "allow", "max_pages", "delay_s", "timeout_s", "user_agent", "robots"}


def canonical(url: str) -> str:
    """Without its fragment, and with an empty path as ``/``.

    >>> canonical("HTTP://Example.com#top"), canonical("https://example.com/a/b?x=1#s")
    ('http://example.com/', 'https://example.com/a/b?x=1')
    """
    url = urldefrag(url)[0]
    parts = urlsplit(url)
    return parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower(), path=parts.path or "/").geturl()


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class WebConnector:
    name: str
    start: list[str]
    sitemap: str | None = None
    allow: list[str] = field(default_factory=list)
    max_pages: int = 10_000
    delay_s: float = 1.0
    timeout_s: float = 20.0
    user_agent: str = "ragtune-crawler/1 (+https://github.com/ragtune)"
    robots: bool = True
    type = "web"

    @classmethod
    def from_options(cls, name: str, options: dict[str, Any], workdir: Path) -> "WebConnector":
        unknown_options(options, _OPTIONS, name)
        start = [canonical(u) for u in str_list(options, "start", name, [])]
        sitemap = option(options, "sitemap", str, name, None)
        if not start and not sitemap:
            from ragtune.errors import InputError

            raise InputError(f"source {name!r}: give 'start' (URLs to crawl from) or 'sitemap'")
        for url in [*start, *([sitemap] if sitemap else [])]:
            if urlsplit(url).scheme not in ("http", "https"):
                from ragtune.errors import InputError

                raise InputError(f"source {name!r}: {url!r} is not an http(s) URL")
        allow = str_list(options, "allow", name, []) or sorted({_host(u) + "/" for u in [*start, *([sitemap] if sitemap else [])]})
        return cls(name, start, sitemap, allow, option(options, "max_pages", int, name, 10_000),
                   float(option(options, "delay_s", (int, float), name, 1.0)),
                   float(option(options, "timeout_s", (int, float), name, 20.0)),
                   option(options, "user_agent", str, name, cls.user_agent), option(options, "robots", bool, name, True))

    def scan(self, state: dict[str, Any]) -> Scan:
        scan = Scan(iter(()), complete=True, state={"pages": {}})
        scan.items = self._crawl(state.get("pages", {}), scan)
        return scan

    # -- the crawl --------------------------------------------------------------------------------
    def _crawl(self, before: dict[str, dict], scan: Scan) -> Iterator[Item]:
        import httpx

        after: dict[str, dict] = scan.state["pages"]
        with httpx.Client(follow_redirects=True, timeout=self.timeout_s, headers={"User-Agent": self.user_agent}) as client:
            self._client = client
            self._robots: dict[str, urllib.robotparser.RobotFileParser | None] = {}
            self._last: dict[str, float] = {}  # host → when its last request ended
            self._done: set[str] = set()  # pages listed in this scan
            queue = deque(self.start)
            if self.sitemap:
                queue.extend(self._sitemap_urls(self.sitemap))
            queued = set(queue)
            fetched = 0
            while queue:
                url = queue.popleft()
                if url in self._done or not self._may_fetch(url):
                    continue
                if fetched >= self.max_pages:
                    scan.complete = False  # not everything was listed: delete nothing unlisted
                    break
                fetched += 1
                yield from self._page(url, before.get(url), after)
                for link in after.get(url, {}).get("links", []):
                    if link not in queued:
                        queued.add(link)
                        queue.append(link)

    def _page(self, url: str, old: dict | None, after: dict[str, dict]) -> Iterator[Item]:
        import httpx

        headers = {}
        if old and old.get("etag"):
            headers["If-None-Match"] = old["etag"]
        if old and old.get("last_modified"):
            headers["If-Modified-Since"] = old["last_modified"]
        try:
            resp = self._get(url, headers)
        except httpx.HTTPError as e:
            if old:
                after[url] = old  # keep crawling through what it linked to last time
            yield Failed(url, f"fetch failed: {type(e).__name__}: {e}")
            return
        if resp.status_code == 304 and old:
            after[url] = old
            self._done.add(url)
            yield Skipped(url) if old.get("skipped") else Unchanged(url, lambda: self._page(url, None, after))
            return
        if resp.status_code in (404, 410):
            return  # gone: a complete crawl deletes it
        if resp.status_code >= 400:
            if old:
                after[url] = old
            yield Failed(url, f"HTTP {resp.status_code}")
            return
        final = canonical(str(resp.url))
        if final != url and not self._allowed(final):
            return  # redirected out of scope
        kind = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in ("text/html", "application/xhtml+xml", ""):
            after[url] = {"etag": resp.headers.get("etag"), "last_modified": resp.headers.get("last-modified"),
                          "links": [], "skipped": True}
            yield Skipped(url)
            return
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(resp.text, "lxml")
        links = self._links(soup, final)  # before the text: reading it drops the menus, and their links
        title, text = soup_to_text(soup, main_content=True)
        after[url] = {"etag": resp.headers.get("etag"), "last_modified": resp.headers.get("last-modified"),
                      "links": links}
        if final != url:  # the redirect target is the page; the old address only points at it
            if final in self._done:
                return
            after[final] = after[url]
        self._done.add(final)
        if not text.strip():
            yield Failed(url, "no readable text in the page")
            return
        yield Document(id=f"{self.name}/{final}", text=text, source=final, title=title or final,
                       metadata={"format": "html", "url": final}, mtime=_mtime(resp.headers.get("last-modified")))

    def _get(self, url: str, headers: dict[str, str]):
        host = _host(url)
        wait = self._last.get(host, 0.0) + self._delay(host) - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            return self._client.get(url, headers=headers)
        finally:
            self._last[host] = time.monotonic()

    # -- scope ------------------------------------------------------------------------------------
    def _allowed(self, url: str) -> bool:
        return urlsplit(url).scheme in ("http", "https") and any(url.startswith(p) for p in self.allow)

    def _may_fetch(self, url: str) -> bool:
        if not self._allowed(url):
            return False
        rules = self._robots_for(_host(url))
        return rules is None or rules.can_fetch(self.user_agent, url)

    def _robots_for(self, host: str) -> urllib.robotparser.RobotFileParser | None:
        if not self.robots:
            return None
        if host not in self._robots:
            rules = None
            try:
                resp = self._get(host + "/robots.txt", {})
                if resp.status_code == 200:
                    rules = urllib.robotparser.RobotFileParser()
                    rules.parse(resp.text.splitlines())
            except Exception:  # an unreachable robots.txt means no rules, as for crawlers generally
                rules = None
            self._robots[host] = rules
        return self._robots[host]

    def _delay(self, host: str) -> float:
        rules = self._robots.get(host)
        crawl_delay = rules.crawl_delay(self.user_agent) if rules else None
        return max(self.delay_s, float(crawl_delay or 0))

    # -- links --------------------------------------------------------------------------------------
    def _links(self, soup, base: str) -> list[str]:
        meta = soup.find("meta", attrs={"name": "robots"})
        if meta is not None and "nofollow" in str(meta.get("content", "")).lower():
            return []
        out = []
        for a in soup.find_all("a", href=True):
            if "nofollow" in (a.get("rel") or []):
                continue
            url = canonical(urljoin(base, str(a["href"])))
            if self._allowed(url):
                out.append(url)
        return list(dict.fromkeys(out))

    def _sitemap_urls(self, url: str, depth: int = 0) -> list[str]:
        """The page URLs of a sitemap (following a sitemap index one level down per level, to 3)."""
        from lxml import etree

        try:
            resp = self._get(url, {})
            resp.raise_for_status()
            root = etree.fromstring(resp.content)
        except Exception:
            return []
        locs = [el.text.strip() for el in root.iter("{*}loc") if el.text]
        if etree.QName(root).localname == "sitemapindex" and depth < 3:
            return [u for loc in locs for u in self._sitemap_urls(loc, depth + 1)]
        return [canonical(u) for u in locs]


def _mtime(last_modified: str | None) -> float:
    if last_modified:
        try:
            return parsedate_to_datetime(last_modified).timestamp()
        except (TypeError, ValueError):
            pass
    return time.time()
