"""What a reader of the built site sees: nothing loaded from outside it, every formula typeset,
nothing clipped at the theme's default width.

* The static checks read the built HTML and CSS: no script, style sheet, font, image or frame
  from another host; no formula left as raw TeX; no code line longer than 80 characters.
* The browser check opens every page in headless Chromium at 1280 px (both sidebars shown, a
  content column of about 700 px) and fails on any code block, formula, table, image or
  admonition wider than the box that holds it, and on any resource requested from elsewhere.
  It needs Debian's `chromium` (`.ci/run` installs it) and is skipped, with the reason, where
  there is none.

Each check is also run on a page made to fail it (negative controls), so none passes vacuously.
"""

from __future__ import annotations

import html
import re
import shutil
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fontTools.ttLib import TTFont

from tests.layout import browser
from tests.test_docs import load_hook

#: Longest code line that fits the content column at the theme's default width.
MAX_CODE_LINE = 80
_LOCAL = re.compile(r"^(?![a-zA-Z][a-zA-Z0-9+.-]*:|//)")  # no scheme, not protocol-relative
_CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])([^'")\s]+)""")
_PRE = re.compile(r"<pre[^>]*>(.*?)</pre>", re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


class _Loads(HTMLParser):
    """The URLs an HTML page makes the browser load by itself (not links a reader follows)."""

    LOADING = {"script": "src", "img": "src", "iframe": "src", "source": "src", "audio": "src", "video": "src"}
    LINK_RELS = {"stylesheet", "icon", "preload", "modulepreload", "manifest", "prefetch", "apple-touch-icon"}

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "link" and set((values.get("rel") or "").split()) & self.LINK_RELS:
            self.urls.append(values.get("href") or "")
        elif tag in self.LOADING and values.get(self.LOADING[tag]):
            self.urls.append(values[self.LOADING[tag]] or "")


def external_loads(text: str, *, css: bool = False) -> list[str]:
    """The resources an HTML page (or a style sheet, `css=True`) loads from outside the site."""
    if css:
        urls = _CSS_URL.findall(text)
    else:
        parser = _Loads()
        parser.feed(text)
        urls = parser.urls
    return [url for url in urls if not url.startswith("data:") and not _LOCAL.match(url)]


def long_code_lines(text: str, limit: int = MAX_CODE_LINE) -> list[str]:
    """Lines of the page's code blocks longer than `limit` characters, as a reader sees them."""
    lines = []
    for block in _PRE.findall(text):
        lines += [line for line in html.unescape(_TAG.sub("", block)).splitlines() if len(line) > limit]
    return lines


def _pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


@pytest.mark.slow
def test_no_page_or_style_sheet_loads_from_outside_the_site(built_site):
    found = {
        str(path.relative_to(built_site)): urls
        for path in [*_pages(built_site), *built_site.rglob("*.css")]
        if (urls := external_loads(path.read_text(encoding="utf-8"), css=path.suffix == ".css"))
    }
    assert not found, f"loaded from outside the site: {found}"


def test_external_loads_are_found():
    """Negative control: each way a page or a style sheet can pull in a remote file is caught."""
    page = (
        '<script src="https://cdn.example.org/mathjax.js"></script>'
        '<link rel="stylesheet" href="//fonts.example.org/css">'
        '<img src="http://example.org/a.png"><link rel="canonical" href="https://example.org/">'
        '<script src="assets/local.js"></script><img src="data:image/png;base64,AA==">'
    )
    assert external_loads(page) == [
        "https://cdn.example.org/mathjax.js", "//fonts.example.org/css", "http://example.org/a.png",
    ]
    sheet = '@import "https://fonts.example.org/roboto.css"; a { src: url(../fonts/x.woff2), url("https://x.org/f.woff") }'
    assert external_loads(sheet, css=True) == ["https://fonts.example.org/roboto.css", "https://x.org/f.woff"]


@pytest.mark.slow
def test_every_formula_is_typeset_at_build_time(built_site):
    raw = [str(p.relative_to(built_site)) for p in _pages(built_site) if 'class="arithmatex"' in p.read_text(encoding="utf-8")]
    assert not raw, f"formulas left as TeX for a script to typeset: {raw}"
    # nor as bare \\(…\\) anywhere a reader sees text (headings in the table of contents)
    bare = [
        str(p.relative_to(built_site)) for p in _pages(built_site)
        if "\\(" in _TAG.sub("", re.sub(r"<(annotation|script|pre|code)\b.*?</\1>", "", p.read_text(encoding="utf-8"), flags=re.DOTALL))
    ]
    assert not bare, f"raw TeX shown to the reader on {bare}"
    derivations = (built_site / "derivations" / "index.html").read_text(encoding="utf-8")
    assert derivations.count("<math") > 100, "the derivations page should be mostly formulas"


def drawn_math_characters(text: str) -> set[str]:
    """The characters a page's formulas draw (not their TeX annotations, spaces or invisible operators)."""
    chars: set[str] = set()
    for formula in re.findall(r"<math.*?</math>", text, flags=re.DOTALL):
        visible = re.sub(r"<annotation.*?</annotation>", "", formula, flags=re.DOTALL)
        chars |= set(html.unescape(_TAG.sub("", visible)))
    return {c for c in chars if not c.isspace() and unicodedata.category(c) != "Cf"}


@pytest.mark.slow
def test_the_shipped_math_font_draws_every_formula(built_site):
    """A reader with no math font of their own still sees every character: the site ships a
    font holding all of them (and the italic letters browsers draw single-letter variables in),
    and its style sheet points at it."""
    hook = load_hook("math")
    shipped = built_site / hook.FONT_URI
    assert shipped.is_file()
    css = (built_site / "stylesheets" / "math.css").read_text(encoding="utf-8")
    assert f'url("../{hook.FONT_URI}")' in css
    cmap = TTFont(shipped)["cmap"].getBestCmap()
    drawn = set().union(*(drawn_math_characters(p.read_text(encoding="utf-8")) for p in _pages(built_site)))
    italics = {chr(c) for c in range(0x1D434, 0x1D7CC) if unicodedata.name(chr(c), "").startswith("MATHEMATICAL ITALIC")}
    assert len(drawn) > 100 and len(italics) > 100
    missing = sorted(c for c in drawn | italics if ord(c) not in cmap)
    assert not missing, f"the shipped math font lacks {''.join(missing)}"


def test_drawn_math_characters_skip_the_tex():
    page = '<math><semantics><mi>𝔼</mi><mo>\u2061</mo><mi>x</mi><annotation encoding="application/x-tex">\\mathbb E</annotation></semantics></math>'
    assert drawn_math_characters(page) == {"𝔼", "x"}


def test_math_hook_typesets_and_refuses_bad_tex():
    """arithmatex's wrappers become MathML (inline and display, HTML escapes undone before
    KaTeX sees the TeX); TeX that KaTeX cannot parse fails with the page and the formula."""
    hook = load_hook("math")
    page = '<p>so <span class="arithmatex">\\(a &lt; b\\)</span>.</p><div class="arithmatex">\\[\\frac12\\]</div>'
    out = hook.render_math(page, "page.md")
    assert "arithmatex" not in out
    inline, display = re.findall(r"<math.*?</math>", out, flags=re.DOTALL)
    assert 'display="block"' not in inline and "<mo>&lt;</mo>" in inline
    assert out.startswith("<p>so <span class=\"katex\"><math")
    assert 'display="block"' in display and "<mfrac>" in display
    assert '<div class="math-display">' in out
    # styles MathML Core ignores become Unicode's mathematical letters (holes included: ℝ, ℬ, ℭ)
    styled = hook.render_math('<span class="arithmatex">\\(\\mathbb E\\mathbb R\\mathcal B\\mathfrak C\\mathbf x\\)</span>', "p")
    assert [hook.html.unescape(t) for t in re.findall(r"<mi>(.)</mi>", styled)] == list("𝔼ℝℬℭ𝐱")
    assert "mathvariant" not in styled.split("<annotation")[0]
    # a formula in a heading reaches the table of contents as TeX: typeset there too
    title = hook.render_toc_title("2. The slope, compared with \\(-1\\) and \\(a &lt; b\\)", "p")
    assert title.startswith("2. The slope, compared with <span class=\"katex\"><math") and title.count("<math") == 2
    assert "\\(" not in title.split("<annotation")[0]
    # a numbered step: the mark over the relation, one <mo> for the relation (valid MathML)
    step = hook.render_math('<span class="arithmatex">\\(a\\overset{(1)}{=}b\\)</span>', "p").split("<annotation")[0]
    assert "<mover><mo>=</mo><mrow>" in step and "<mo><mover>" not in step and "<mo><mo>" not in step
    with pytest.raises(hook.PluginError, match=r"page\.md.*\\frac\{1\}\{"):
        hook.render_math('<span class="arithmatex">\\(\\frac{1}{\\)</span>', "page.md")


@pytest.mark.slow
def test_code_lines_fit_the_column(built_site):
    found = {str(p.relative_to(built_site)): lines for p in _pages(built_site) if (lines := long_code_lines(p.read_text(encoding="utf-8")))}
    assert not found, f"code lines over {MAX_CODE_LINE} characters (clipped in the column): {found}"


def test_long_code_lines_are_found():
    """Negative control: a long line in a highlighted block is found, a short one is not."""
    line = "x = " + "1 + " * 30 + "1"
    page = f'<pre><code><span class="n">{html.escape(line)}</span>\nshort</code></pre>'
    assert long_code_lines(page) == [line]


needs_chromium = pytest.mark.skipif(
    browser.chromium() is None, reason="no Chromium: `apt-get install chromium` (Debian) to run the browser checks"
)


@pytest.mark.slow
@needs_chromium
def test_nothing_is_clipped_or_fetched_in_a_browser(built_site):
    reports = browser.probe_site(built_site, browser.chromium())
    assert len(reports) >= 20, sorted(reports)
    widths = {report["column"] for report in reports.values()}
    assert all(600 <= width <= 800 for width in widths), f"unexpected content column widths {widths}: not the default layout"
    clipped = {page: report["clipped"] for page, report in reports.items() if report["clipped"]}
    assert not clipped, "content wider than its box:\n" + "\n".join(
        f"{page}: {item['what']} ({item['content']} px in {item['box']} px)" for page, items in clipped.items() for item in items
    )
    fetched = {page: [u for u in report["resources"] if not u.startswith(browser.ORIGIN)] for page, report in reports.items()}
    fetched = {page: urls for page, urls in fetched.items() if urls}
    assert not fetched, f"resources from outside the site: {fetched}"


@pytest.mark.slow
@needs_chromium
def test_the_browser_check_sees_clipping_and_remote_loads(built_site, tmp_path):
    """Negative control: a real page of the site with a too-wide formula, a long code line, a
    too-wide table and a remote script is reported on all four counts."""
    site = tmp_path / "site"
    shutil.copytree(built_site, site)
    page = site / "index.html"
    wide = "<mi>x</mi><mo>+</mo>" * 120
    extra = (
        f'<div class="math-display"><math display="block"><mrow>{wide}</mrow></math></div>'
        f"<pre><code>{'y = ' + '2 * ' * 60}</code></pre>"
        '<div class="md-typeset__scrollwrap"><div class="md-typeset__table"><table><tr>'
        + "<th>a&nbsp;wide&nbsp;column&nbsp;heading</th>" * 12
        + "</tr></table></div></div>"
        '<script src="https://cdn.example.org/remote.js"></script>'
    )
    text = page.read_text(encoding="utf-8")
    marker = '<article class="md-content__inner md-typeset">'
    assert marker in text, "the theme's content element changed: update the probe"
    page.write_text(text.replace(marker, marker + extra, 1), encoding="utf-8")
    for other in _pages(site):
        if other != page:
            other.unlink()
    report = browser.probe_site(site, browser.chromium())["index.html"]
    kinds = {item["what"].split(":")[0] for item in report["clipped"]}
    assert {"div.math-display", "code", "div.md-typeset__scrollwrap"} <= kinds, report["clipped"]
    assert "https://cdn.example.org/remote.js" in report["resources"]
