"""The msgids the code uses, as Babel's extractor finds them, and the catalog template.

``python -m aerie.i18n.extract`` rewrites ``locale/aerie.pot`` from the shared library and
the services' packages: their Python (``msg(...)``) and their Jinja2 templates (``{% trans %}``,
``_()``, ``gettext()``, ``ngettext()``: the console's pages, read with Jinja2's own extractor,
so extracting needs the console installed). ``pybabel update -D aerie -i
shared/aerie/i18n/locale/aerie.pot -d shared/aerie/i18n/locale`` then carries new msgids
into every language's ``.po``, and ``pybabel init -D aerie -l <lang> ...`` starts a new
language. The unit tests compare the same extraction with every shipped catalog, so a
message without a translation fails CI.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import write_po

from aerie.i18n.catalogs import DOMAIN, LOCALE_DIR
from aerie.i18n.messages import KEYWORDS

__all__ = ["METHOD_MAP", "TEMPLATE_KEYWORDS", "TEMPLATE_METHOD_MAP", "code_catalog", "source_folders"]

SHARED = Path(__file__).resolve().parents[1]
REPOSITORY = SHARED.parents[1]
#: The tests are not read (they may build messages no response sends).
IGNORED = ("**/tests/**", "ignore")
#: Python files, where messages are ``msg(...)`` (:data:`KEYWORDS`).
METHOD_MAP = [IGNORED, ("**.py", "python")]
#: The Jinja2 templates of a package's ``templates/`` folder (the console's pages).
TEMPLATE_METHOD_MAP = [IGNORED, ("**/templates/**.html", "jinja2.ext:babel_extract")]
#: As the console's Environment parses them: ``{% trans %}`` blocks trimmed of their
#: whitespace (policy ``ext.i18n.trimmed``); a template that does not parse fails the
#: extraction instead of being skipped silently, which would drop its messages.
TEMPLATE_OPTIONS = {"**/templates/**.html": {"trimmed": "true", "silent": "false"}}
#: What a template calls to translate; ``{% trans %}`` compiles to ``gettext``/``ngettext`` too.
TEMPLATE_KEYWORDS: dict[str, Any] = {"_": None, "gettext": None, "ngettext": (1, 2)}


def source_folders(repository: Path = REPOSITORY) -> list[Path]:
    """The shared library and each service's package (where messages are raised)."""
    folders = [SHARED]
    for pyproject in sorted(repository.glob("services/*/pyproject.toml")):
        package = pyproject.parent / pyproject.parent.name
        if package.is_dir():
            folders.append(package)
    return folders


def code_catalog(folders: Iterable[Path] | None = None) -> Catalog:
    """Every ``msg(...)`` msgid in ``folders`` and every template's, with where it is used."""
    catalog = Catalog(domain=DOMAIN, project="Aerie", charset="utf-8")
    # Two passes, so a Python call named ``gettext`` (a method, say) is never taken for a message.
    passes = ((METHOD_MAP, {}, KEYWORDS), (TEMPLATE_METHOD_MAP, TEMPLATE_OPTIONS, TEMPLATE_KEYWORDS))
    for folder in folders if folders is not None else source_folders():
        root = folder.parent
        for method_map, options_map, keywords in passes:
            for filename, lineno, message, comments, context in extract_from_dir(
                folder,
                method_map=method_map,
                options_map=options_map,
                keywords=keywords,
                comment_tags=("Translators:",),
            ):
                location = (str((folder / filename).relative_to(root)), lineno)
                catalog.add(message, None, [location], auto_comments=comments, context=context)
    return catalog


def main() -> None:
    target = LOCALE_DIR / f"{DOMAIN}.pot"
    with target.open("wb") as handle:
        write_po(handle, code_catalog(), width=100, include_lineno=False)
    print(f"wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
