"""What a project is: statuses, slug rules, and deriving a slug from a name."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["SLUG_PATTERN", "STATUSES", "slugify"]

STATUSES = ("active", "invisible", "archived")
#: The same shape as tenant slugs: lower-case, URL-safe, 2..63 characters.
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
_SLUG_RE = re.compile(SLUG_PATTERN)


def slugify(name: str) -> str:
    """A slug derived from a name; ``project-<n>`` style fallback when nothing usable is left.

    Accents are folded to ASCII so "Café Ünö" becomes "cafe-uno" rather than losing letters.
    """
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")[:63].rstrip("-")
    if not _SLUG_RE.match(slug):
        slug = f"project-{slug}".rstrip("-") if slug else "project"
        if not _SLUG_RE.match(slug):
            slug = "project"
    return slug
