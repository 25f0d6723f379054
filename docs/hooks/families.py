"""MkDocs hook: the estimator-families pages, generated from `snrkit.families.FAMILIES`.

- `families/index.md`: the registry as a table (each family's estimator and cost) and a
  list (its source, summary, needs, bias and law: too long for table cells in the docs
  column), so the page cannot drift from the code;
- `reference/families.md`: the API reference of every family module;
- the navigation's "Estimator families" section gets one entry per family docs page under
  `families/`, so adding a family needs no edit of `mkdocs.yml`.
"""

from __future__ import annotations

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

from snrkit.families import FAMILIES

INDEX = "families/index.md"
REFERENCE = "reference/families.md"
SECTION = "Estimator families"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_index() -> str:
    """The Markdown of the families page."""
    lines = [
        "# Estimator families",
        "",
        "Every family snrkit knows, from its registry (`snrkit.families.FAMILIES`). Each is one module "
        "holding the estimator, how one estimate is drawn and its exact law; every one passes the same "
        "contract tests (its law against Monte Carlo of its own samples and of the real `jax.jvp` "
        "estimator on real networks). How to add one: [Contributing a family](../contributing.md).",
        "",
        "| family | estimator | cost |",
        "| --- | --- | --- |",
    ]
    for row in FAMILIES.values():
        name = row.estimator.__name__
        page = row.docs.removeprefix("families/") if row.docs.startswith("families/") else f"../{row.docs}"
        lines.append(
            f"| [{_cell(row.title)}]({page}) | `sk.{name}` | {_cell(row.cost)} |"
        )
    lines += ["", "## What each is", ""]
    for row in FAMILIES.values():
        law = " ".join(row.law.split())
        lines += [
            f"- **{row.title}** (`{row.name}`, {row.source}): {row.summary}",
            f"    - needs: {', '.join(sorted(row.needs))}; bias: {row.bias}",
            f"    - law: ${law}$",
        ]
    return "\n".join(lines) + "\n"


def render_reference() -> str:
    """The API reference of every family module, in registry order."""
    modules = list(dict.fromkeys(row.estimator.__module__ for row in FAMILIES.values()))
    # the package's own heading would repeat the page title
    lines = [
        "# Estimator families", "", "::: snrkit.families", "    options:", "      show_root_heading: false", "",
        "::: snrkit.families.registry.Family", "",
    ]
    for module in modules:
        lines += [f"::: {module}", ""]
    return "\n".join(lines)


def on_config(config):
    section = next((entry for entry in config["nav"] if isinstance(entry, dict) and SECTION in entry), None)
    if section is None:
        raise PluginError(f"mkdocs.yml needs a nav section {SECTION!r} for the family pages")
    pages = section[SECTION]
    listed = {next(iter(p.values())) if isinstance(p, dict) else p for p in pages}
    for row in FAMILIES.values():
        if row.docs.startswith("families/") and row.docs not in listed:
            pages.append({row.title: row.docs})
            listed.add(row.docs)
    return config


def on_files(files: Files, config) -> Files:
    for row in FAMILIES.values():
        if files.get_file_from_path(row.docs.split("#")[0]) is None:
            raise PluginError(f"family {row.name!r}: its docs page {row.docs} does not exist")
    files.append(File.generated(config, INDEX, content=render_index()))
    files.append(File.generated(config, REFERENCE, content=render_reference()))
    return files
