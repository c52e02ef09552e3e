"""The pages' message catalogs: every text the templates and page handlers mark has an English
translation, translations keep their placeholders and markup, and the catalogs match the sources.

The texts are extracted here exactly as `make messages` does (babel.cfg), so a string added to a
template without running it, or left untranslated in en/messages.po, fails this test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from civicard.adapters.web import i18n

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"%\([a-z_]+\)s|%%")
TAG = re.compile(r"<[^>]+>")
MsgId = str | tuple[str, ...]


def _key(msgid: str | tuple[str, ...] | list[str]) -> MsgId:
    return msgid if isinstance(msgid, str) else tuple(msgid)


@pytest.fixture(scope="module")
def extracted() -> dict[MsgId, list[str]]:
    """msgid → where it is used, from the sources babel.cfg names."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: dict[MsgId, list[str]] = {}
    src = str(ROOT / "src")
    for filename, lineno, message, _, _ in extract_from_dir(
        ROOT, method_map, options_map, DEFAULT_KEYWORDS, directory_filter=lambda d: d.startswith(src)
    ):
        found.setdefault(_key(message), []).append(f"{filename}:{lineno}")
    return found


def _catalog(path: Path, locale: str | None) -> Catalog:
    with path.open("rb") as po:
        return read_po(po, locale=locale)


def _ids(catalog: Catalog) -> set[MsgId]:
    return {_key(m.id) for m in catalog if m.id}


def _forms(message: Message) -> list[str]:
    return [message.string] if isinstance(message.string, str) else list(message.string)


def test_the_sources_mark_texts_in_templates_and_in_page_handlers(extracted: dict[MsgId, list[str]]) -> None:
    where = {place.split(":")[0] for places in extracted.values() for place in places}
    assert any(w.endswith("templates/base.html") for w in where)
    assert any(w.endswith("review_pages.py") for w in where)
    assert "Salir" in extracted and ("%(count)s resultado", "%(count)s resultados") in extracted


def test_every_marked_text_has_an_english_translation(extracted: dict[MsgId, list[str]]) -> None:
    english = _catalog(i18n.catalog_path("en"), "en")
    untranslated = []
    for msgid, places in extracted.items():
        message = english.get(msgid if isinstance(msgid, str) else msgid[0])
        if message is None or message.fuzzy or not all(_forms(message)):
            untranslated.append(f"{places[0]}: {msgid!r}")
    assert not untranslated, "run `make messages` and translate in en/messages.po:\n" + "\n".join(untranslated)


def test_english_translations_keep_the_placeholders_and_markup_of_the_spanish() -> None:
    english = _catalog(i18n.catalog_path("en"), "en")
    broken = []
    for message in english:
        if not message.id:
            continue
        spanish = [message.id] if isinstance(message.id, str) else list(message.id)
        wanted_holders = sorted({h for text in spanish for h in PLACEHOLDER.findall(text)})
        wanted_tags = sorted(TAG.findall(spanish[0]))
        for form in _forms(message):
            holders = sorted(set(PLACEHOLDER.findall(form)))
            if holders != wanted_holders or sorted(TAG.findall(form)) != wanted_tags:
                broken.append(f"{message.id!r} → {form!r}")
    assert not broken, "\n".join(broken)


def test_the_template_and_both_catalogs_hold_exactly_the_marked_texts(extracted: dict[MsgId, list[str]]) -> None:
    """A stale catalog (a text changed without `make messages`) would silently show Spanish."""
    locale_dir = i18n.LOCALE_DIR
    assert _ids(_catalog(locale_dir / "messages.pot", None)) == set(extracted)
    for locale in i18n.LOCALES:
        assert _ids(_catalog(i18n.catalog_path(locale), locale)) == set(extracted), locale


def test_the_catalogs_load_without_a_compile_step_and_follow_the_locale() -> None:
    assert i18n.gettext("Salir") == "Salir"  # Spanish unless a request chose otherwise
    with i18n.using_locale("en"):
        assert i18n.current_locale() == "en"
        assert i18n.gettext("Salir") == "Sign out"
        assert i18n.ngettext("%(count)s resultado", "%(count)s resultados", 1) == "%(count)s result"
        assert i18n.ngettext("%(count)s resultado", "%(count)s resultados", 3) == "%(count)s results"
        assert i18n.localized({"es": "hija", "en": "daughter"}) == "daughter"
        assert i18n.gettext("a text nobody marked") == "a text nobody marked"
    with i18n.using_locale("fr"):  # not offered: the default
        assert i18n.current_locale() == "es" and i18n.gettext("Salir") == "Salir"
    assert i18n.current_locale() == "es"
