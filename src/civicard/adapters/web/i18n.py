"""The pages' languages: Spanish (the default) and English, through gettext catalogs and a switch.

Msgids are the Spanish texts. Spanish is what a resident or clerk sees unless they choose
otherwise, so the templates read as the page they render, a string missing from a catalog falls
back to the default language rather than to a third one, and the Spanish catalog is only there
to override a wording without touching the templates. English lives in
`locale/en/LC_MESSAGES/messages.po` (`make messages` extracts `messages.pot` and updates both
catalogs; a unit test fails on any msgid without an English translation).

The .po files are the only form kept in the repository: the first page rendered reads them with
Babel and compiles them in memory, so a fresh clone needs no compile step and no .mo can go stale.

The locale of a request is the `lang` cookie that POST /lang sets (SameSite=Lax, HttpOnly), else
Spanish. It lives in a context variable: `render` sets it around each template, and page routers
that build messages in Python take `use_request_locale` as a dependency so `gettext` in a handler
speaks the reader's language too. Messages of domain errors stay as the services wrote them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from jinja2 import Environment

LOCALES = ("es", "en")
DEFAULT_LOCALE = "es"
LANGUAGE_NAMES = {"es": "Español", "en": "English"}  # each in its own language, never translated
LANG_COOKIE = "lang"
LANG_COOKIE_SECONDS = 365 * 24 * 3600
DOMAIN = "messages"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"

_locale: ContextVar[str] = ContextVar("civicard_locale", default=DEFAULT_LOCALE)
router = APIRouter(include_in_schema=False)


# --- catalogs ------------------------------------------------------------------------------------


def catalog_path(locale: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def load_translations(locale: str) -> Translations:
    """The locale's .po compiled in memory; fuzzy entries are left out, as `msgfmt` would."""
    with catalog_path(locale).open("rb") as po:
        catalog = read_po(po, locale=locale, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


@cache
def translations() -> dict[str, Translations]:
    return {locale: load_translations(locale) for locale in LOCALES}


# --- the current locale --------------------------------------------------------------------------


def locale_of(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE, "")
    return chosen if chosen in LOCALES else DEFAULT_LOCALE


def current_locale() -> str:
    return _locale.get()


@contextmanager
def using_locale(locale: str) -> Iterator[None]:
    token = _locale.set(locale if locale in LOCALES else DEFAULT_LOCALE)
    try:
        yield
    finally:
        _locale.reset(token)


async def use_request_locale(request: Request) -> None:
    """Router dependency: the request's locale for the rest of its handling. Async on purpose: it
    runs in the request's own task, whose context a sync handler's worker thread receives a copy
    of (a sync dependency would set it in a thread of its own, lost at once). Never reset: the
    task, and its context, end with the request."""
    _locale.set(locale_of(request))


def gettext(message: str) -> str:
    return translations()[_locale.get()].gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations()[_locale.get()].ngettext(singular, plural, n)


def N_(message: str) -> str:  # noqa: N802 — the name extraction tools know
    """Mark a module-level text for extraction; `gettext` translates it where it is shown."""
    return message


def translated(labels: Mapping[str, str]) -> dict[str, str]:
    """A table of marked texts (code → msgid) in the current locale, for a page to show."""
    return {code: gettext(text) for code, text in labels.items()}


def localized(label: Mapping[str, str]) -> str:
    """A label the domain keeps per language ({"es": …, "en": …}) in the current locale."""
    return label.get(current_locale()) or label.get(DEFAULT_LOCALE) or next(iter(label.values()), "")


def install(env: Environment) -> None:
    """Jinja's i18n extension on `env`, with `_`/`gettext`/`ngettext` following the current locale.

    New-style gettext: `_("… %(name)s …", name=x)` escapes x, and a literal percent sign is
    written `%%`. Trimmed: whitespace inside `{% trans %}` collapses, as babel.cfg extracts it."""
    env.add_extension("jinja2.ext.i18n")
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals["current_locale"] = current_locale
    env.globals["language_names"] = LANGUAGE_NAMES
    env.filters["localized"] = localized


# --- the switch ----------------------------------------------------------------------------------


def local_path(target: str) -> str:
    """`target` if it is a path on this site (with its query), else "/": no open redirect."""
    parts = urlsplit(target)
    foreign = parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//")
    if foreign or "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return "/"
    return urlunsplit(("", "", parts.path, parts.query, ""))


@router.post("/lang", response_model=None)
def choose_language(
    request: Request,
    lang: Annotated[str, Form(max_length=5)] = DEFAULT_LOCALE,
    next_path: Annotated[str, Form(alias="next", max_length=2000)] = "/",
) -> RedirectResponse:
    """Remember the language in a cookie and go back to the page the switch was on. No CSRF
    token: forging it only changes the language, and SameSite=Lax keeps it first-party."""
    response = RedirectResponse(local_path(next_path), status_code=303)
    response.set_cookie(
        LANG_COOKIE,
        lang if lang in LOCALES else DEFAULT_LOCALE,
        max_age=LANG_COOKIE_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response
