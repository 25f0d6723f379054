"""MkDocs hook: typeset every formula at build time, so the site needs no network to show math.

`pymdownx.arithmatex` (generic mode) wraps each formula of a page, docstrings rendered by
mkdocstrings included, as `<span class="arithmatex">\\(…\\)</span>` (inline) or
`<div class="arithmatex">\\[…\\]</div>` (display). This hook replaces each wrapper by the
MathML that KaTeX (through PyKaTeX, KaTeX compiled into a Python extension) renders from the
TeX. Browsers draw MathML natively with their own math fonts, so no script, style sheet or
font is loaded at reading time, from the site or elsewhere. The TeX stays in each formula's
`<annotation>`, for copy and paste and for screen readers.

MathML Core, what Chromium implements, ignores `mathvariant` except `normal`, so
`\\mathbb E` would show as a plain E. Styled letters are therefore written as the characters of
Unicode's Mathematical Alphanumeric Symbols block (𝔼, ℝ, 𝒩, 𝐱), which every browser draws.
KaTeX also wraps a relation with a mark over or under it (`\\overset{(1)}{=}`, the numbered
steps of a derivation) in `<mo>` elements nested in each other, which is not valid MathML and
which Chromium draws with the mark beside the sign; the wrappers are removed.

A formula KaTeX cannot parse fails the build with the page and the TeX, rather than showing
raw TeX to the reader.

The site ships one font for readers whose system has no math font: STIX General, the
SIL-licensed font matplotlib installs with itself, which holds every character the formulas
use (`docs/stylesheets/math.css` lists it after the usual system math fonts, so a browser
fetches it, from the site, only when those are missing).
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from pathlib import Path

import matplotlib
import pykatex
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

# arithmatex's generic output: the TeX, HTML-escaped, between \( \) or \[ \], or a bare
# \begin{…}…\end{…} environment in a display <div>.
_WRAPPED = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">(?P<tex>.*?)</(?P=tag)>',
    re.DOTALL,
)
FALLBACK_FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "STIXGeneral.ttf"
FONT_URI = "assets/fonts/STIXGeneral.ttf"
"""Where the site serves the fallback math font (`math.css` refers to it)."""
_DELIMITERS = {r"\(": r"\)", r"\[": r"\]"}
_STYLED = re.compile(r'<(?P<tag>mi|mn) mathvariant="(?P<variant>[a-z-]+)">(?P<text>[^<]*)</(?P=tag)>')
# MathML's mathvariant values and the word Unicode's character names use for each style
_VARIANTS = {
    "bold": "BOLD", "italic": "ITALIC", "bold-italic": "BOLD ITALIC", "double-struck": "DOUBLE-STRUCK",
    "script": "SCRIPT", "bold-script": "BOLD SCRIPT", "fraktur": "FRAKTUR", "bold-fraktur": "BOLD FRAKTUR",
    "sans-serif": "SANS-SERIF", "bold-sans-serif": "SANS-SERIF BOLD", "sans-serif-italic": "SANS-SERIF ITALIC",
    "monospace": "MONOSPACE",
}
# <mo><mover><mo><mo>=</mo></mo>MARK</mover></mo>: KaTeX's over/under-set relation
_STACKED_RELATION = re.compile(
    r"<mo><(?P<tag>mover|munder)><mo><mo>(?P<op>[^<]*)</mo></mo>(?P<mark>(?:(?!<m(?:over|under)\b).)*?)</(?P=tag)></mo>",
    re.DOTALL,
)
# letters Unicode encoded earlier, in Letterlike Symbols, and left as holes in the block
_LETTERLIKE = {"ITALIC SMALL H": "PLANCK CONSTANT"}


@functools.lru_cache(maxsize=None)
def typeset(tex: str, display: bool) -> str:
    """The MathML of one formula (cached: the same formula recurs across pages)."""
    mathml = pykatex.renderToString(tex, displayMode=display, output="mathml", throwOnError=True)
    return _unnest_stacked_relations(_unicode_styles(mathml))


def styled_character(char: str, variant: str) -> str | None:
    """`char` in the style `variant` (a mathvariant value) as one Unicode character, or None
    when Unicode has no such character (e.g. a double-struck α)."""
    style = _VARIANTS.get(variant)
    name = unicodedata.name(char, "")
    parts = name.replace("LATIN ", "").replace("GREEK ", "").replace(" LETTER", "").split()
    if style is None or not parts or parts[0] not in {"CAPITAL", "SMALL", "DIGIT"}:
        return None
    wanted = f"{style} {' '.join(parts)}"
    for candidate in (f"MATHEMATICAL {wanted}", _LETTERLIKE.get(wanted, wanted.replace("FRAKTUR", "BLACK-LETTER"))):
        try:
            return unicodedata.lookup(candidate)
        except KeyError:
            continue
    return None


def _unicode_styles(mathml: str) -> str:
    def replace(match: re.Match[str]) -> str:
        text = html.unescape(match["text"])
        chars = [styled_character(c, match["variant"]) for c in text]
        if not text or None in chars:
            return match[0]
        return f"<{match['tag']}>{html.escape(''.join(chars))}</{match['tag']}>"

    return _STYLED.sub(replace, mathml)


def _unnest_stacked_relations(mathml: str) -> str:
    return _STACKED_RELATION.sub(r"<\g<tag>><mo>\g<op></mo>\g<mark></\g<tag>>", mathml)


def _strip_delimiters(tex: str) -> str:
    opening = tex[:2]
    closing = _DELIMITERS.get(opening)
    if closing is not None and tex.endswith(closing):
        return tex[2:-2]
    return tex


def render_math(text: str, where: str) -> str:
    """`text` (a page's HTML) with every arithmatex formula replaced by its MathML.

    Raises:
        PluginError: a formula KaTeX cannot parse, named with `where` and its TeX.
    """

    def replace(match: re.Match[str]) -> str:
        display = match["tag"] == "div"
        tex = _strip_delimiters(html.unescape(match["tex"]).strip())
        try:
            mathml = typeset(tex, display)
        except pykatex.ParseError as error:
            raise PluginError(f"math on {where}: KaTeX cannot typeset {tex!r}: {error}") from None
        if display:
            return f'<div class="math-display">{mathml}</div>'
        return mathml

    return _WRAPPED.sub(replace, text)


# a formula in a heading reaches the table of contents as its bare TeX, delimiters included
_TOC_INLINE = re.compile(r"\\\((?P<tex>.*?)\\\)", re.DOTALL)


def render_toc_title(title: str, where: str) -> str:
    """A table-of-contents title (HTML) with its `\\(…\\)` formulas typeset."""
    return _TOC_INLINE.sub(
        lambda match: render_math(f'<span class="arithmatex">{match[0]}</span>', where), title
    )


def _typeset_toc(items, where: str) -> None:
    for item in items:
        item.title = render_toc_title(item.title, where)
        _typeset_toc(item.children, where)


def on_files(files: Files, config) -> Files:
    if not FALLBACK_FONT.is_file():
        raise PluginError(f"math: the fallback font {FALLBACK_FONT} is missing; reinstall matplotlib")
    files.append(File.generated(config, FONT_URI, abs_src_path=str(FALLBACK_FONT)))
    return files


def on_page_content(html_text: str, page, config, files) -> str:
    _typeset_toc(page.toc, f"{page.file.src_uri} (table of contents)")
    return render_math(html_text, page.file.src_uri)
