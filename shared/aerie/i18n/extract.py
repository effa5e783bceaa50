"""The msgids the code uses, as Babel's extractor finds them, and the catalog template.

``python -m aerie.i18n.extract`` rewrites ``locale/aerie.pot`` from the shared library and
the services' packages; ``pybabel update -D aerie -i shared/aerie/i18n/locale/aerie.pot
-d shared/aerie/i18n/locale`` then carries new msgids into every language's ``.po``, and
``pybabel init -D aerie -l <lang> ...`` starts a new language. The unit tests compare the
same extraction with every shipped catalog, so a message without a translation fails CI.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import write_po

from aerie.i18n.catalogs import DOMAIN, LOCALE_DIR
from aerie.i18n.messages import KEYWORDS

__all__ = ["code_catalog", "source_folders"]

SHARED = Path(__file__).resolve().parents[1]
REPOSITORY = SHARED.parents[1]
#: Python files only, and not the tests (which may build messages no response sends).
METHOD_MAP = [("**/tests/**.py", "ignore"), ("**.py", "python")]


def source_folders(repository: Path = REPOSITORY) -> list[Path]:
    """The shared library and each service's package (where messages are raised)."""
    folders = [SHARED]
    for pyproject in sorted(repository.glob("services/*/pyproject.toml")):
        package = pyproject.parent / pyproject.parent.name
        if package.is_dir():
            folders.append(package)
    return folders


def code_catalog(folders: Iterable[Path] | None = None) -> Catalog:
    """Every ``msg(...)`` msgid in ``folders``, with where it is used."""
    catalog = Catalog(domain=DOMAIN, project="Aerie", charset="utf-8")
    for folder in folders if folders is not None else source_folders():
        root = folder.parent
        for filename, lineno, message, comments, context in extract_from_dir(
            folder, method_map=METHOD_MAP, keywords=KEYWORDS, comment_tags=("Translators:",)
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
