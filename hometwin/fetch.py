"""Respectful HTTP for the data sources, and the on-disk cache of what they answered.

Every adapter (``services/*/sources``) fetches through :func:`fetch`, which

* sends an identifying ``User-Agent`` (MET Norway's terms require one; :data:`USER_AGENT`, plus
  the contact in ``$HOMETWIN_CONTACT``);
* waits at most :data:`TIMEOUT_S` for a connection and for each read;
* retries a refused connection, a timeout, a 5xx or a 429 with exponential back-off
  (``backoff_s × 2^k``), waiting for ``Retry-After`` when the service sends one (seconds or an
  HTTP date), at most :data:`MAX_WAIT_S` per wait;
* keeps a per-service rate limit (``Service.min_interval_s`` between two requests of this process);
* caches every document on disk with its retrieval time, the time the service says it was
  published (``published_at``: MET Norway's ``meta.updated_at``, a price day's publication …),
  its ``Last-Modified`` and ``Expires`` and the source's licence note; a cached document is
  used without a request while it has not expired (``Expires``, or ``max_age_s``, or for ever
  for an ``immutable`` one: a past price day, an archive year, a TMY), and is revalidated with
  ``If-Modified-Since`` after (a ``304`` keeps it);
* in offline mode (``hometwin run --offline``, :func:`configure`) uses only the cache and raises
  :class:`OfflineMissing` naming the service and what is missing.

Nothing here runs at import time.  A failure is a :class:`SourceError` with one line that names
the service and what to do; tokens travel only in headers or parameters that never appear in a
message, a log or the cache (``secret_params``/``secret_headers``), and only to the service's own
host or to loopback (:func:`check_base_url`).

The cache keeps every version a service published (one file pair per retrieval), so a replay can
ask for the forecast as it stood at the replan at t (:meth:`hometwin.published.Versions.at` over
:func:`cached`).
Layout: ``<cache_dir>/<service>/<key>/<retrieved, UTC, µs>.body`` plus ``.json`` (the meta data),
``key`` = a hash of the URL and its public parameters.  The cache folder comes from
:func:`configure` (``hometwin run --cache-dir``), else ``$HOMETWIN_CACHE_DIR``, else
``$XDG_CACHE_HOME/hometwin`` (``~/.cache/hometwin``).
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import ipaddress
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator
from urllib.parse import urlencode, urlsplit

from pydantic import AfterValidator, Field

from hometwin.lazy import lazy_module

requests = lazy_module("requests")

#: Identifies hometwin to the services (MET Norway refuses requests without one: 403); its terms ask
#: for contact information too: :data:`ENV_CONTACT` (an e-mail address or a web site) is appended.
USER_AGENT = "hometwin/0.1 (digital twin of a home's energy system)"
ENV_CONTACT = "HOMETWIN_CONTACT"
TIMEOUT_S = 20.0
RETRIES = 4
BACKOFF_S = 1.0
MAX_WAIT_S = 120.0
#: Largest answer read (a year of hourly archive weather is ~1 MiB; a TMY JSON ~2 MiB).
MAX_BODY_BYTES = 32 * 2**20
ENV_CACHE_DIR = "HOMETWIN_CACHE_DIR"
ENV_OFFLINE = "HOMETWIN_OFFLINE"
#: Most versions kept per request (oldest removed first); unset or 0 keeps every version (replays).
ENV_CACHE_KEEP = "HOMETWIN_CACHE_KEEP"
LOOPBACK_NAMES = ("localhost",)


class SourceError(RuntimeError):
    """A data source failed; the message is one line naming the service and what to do."""


class OfflineMissing(SourceError):
    """Offline, and the cache lacks a document a run needs."""


@dataclass(frozen=True)
class Service:
    """A data service and the terms a client keeps with it."""

    name: str  # short name in messages and the cache folder, e.g. "met_norway"
    title: str  # e.g. "MET Norway Locationforecast (api.met.no)"
    host: str  # the official host: secrets are sent only there (or to loopback)
    licence: str  # the licence / attribution note stored with every document
    min_interval_s: float = 1.0  # rate limit: seconds between two requests of this process
    conditional: bool = False  # revalidate with If-Modified-Since (MET Norway's terms)
    token_hint: str = ""  # what to do when the token is missing or refused


@dataclass
class Document:
    """One answer of a service: its bytes and what is known about it."""

    body: bytes
    meta: dict[str, Any]
    path: Path | None = None
    from_cache: bool = False

    @property
    def retrieved_at(self) -> float:
        return float(self.meta["retrieved_at"])

    @property
    def published_at(self) -> float | None:
        value = self.meta.get("published_at")
        return None if value is None else float(value)

    def json(self) -> Any:
        return json.loads(self.body)


# -- settings ----------------------------------------------------------------------------------

_settings: dict[str, Any] = {"cache_dir": None, "offline": None, "backoff_s": None, "min_interval_s": None}
_last_request: dict[str, float] = {}
_rate_lock = threading.Lock()


@contextlib.contextmanager
def configure(cache_dir: str | os.PathLike[str] | None = None, offline: bool | None = None,
              backoff_s: float | None = None, min_interval_s: float | None = None) -> Iterator[None]:
    """Set the cache folder, offline mode, and (tests) the back-off base and the rate limit,
    for the ``with`` block; ``None`` keeps the current value."""
    old = dict(_settings)
    for key, value in (("cache_dir", cache_dir), ("offline", offline), ("backoff_s", backoff_s),
                       ("min_interval_s", min_interval_s)):
        if value is not None:
            _settings[key] = value
    try:
        yield
    finally:
        _settings.update(old)


def cache_dir() -> Path:
    """The cache folder in force (see the module's docstring)."""
    if _settings["cache_dir"] is not None:
        return Path(_settings["cache_dir"])
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hometwin"


def offline() -> bool:
    if _settings["offline"] is not None:
        return bool(_settings["offline"])
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes")


# -- URLs and secrets -------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(url: str) -> str:
    """A ``base_url`` a spec may name: ``https://`` anywhere (a mirror), or ``http://`` only to
    loopback (a test server).  ``ValueError`` (the field's message) otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL with a host (got {url[:80]!r})")
    if parts.username or parts.password:
        raise ValueError("must not hold a user name or password")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError("plain http is allowed only to loopback (127.0.0.1, ::1, localhost); use https")
    if parts.query or parts.fragment:
        raise ValueError("must not hold a query or fragment")
    return url.rstrip("/")


def _base_url_or_none(value: str | None) -> str | None:
    return None if value is None else check_base_url(value)


#: A source's ``base_url`` field: for testing or a mirror (:func:`check_base_url`).
BaseUrl = Annotated[str | None, Field(max_length=300, description=(
    "service URL for testing or a mirror (https, or http to loopback only); null = the service's own")),
    AfterValidator(_base_url_or_none)]
#: A source's ``token_file`` field (:func:`check_token_file`).
TokenFile = Annotated[str | None, Field(max_length=300, description=(
    "file holding the token (a mounted Kubernetes Secret under /var/run/secrets or $HOMETWIN_SECRETS_DIR); "
    "tried before token_env")), AfterValidator(lambda v: check_token_file(v))]


def _secrets_allowed(service: Service, url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == service.host or is_loopback(host)


#: Folders a token file may lie in: Kubernetes Secret mounts, plus $HOMETWIN_SECRETS_DIR.
SECRET_ROOTS = ("/var/run/secrets", "/run/secrets")
ENV_SECRETS_DIR = "HOMETWIN_SECRETS_DIR"


def check_token_file(value: str | None) -> str | None:
    """A ``token_file`` a spec may name: an absolute path inside :data:`SECRET_ROOTS` or
    ``$HOMETWIN_SECRETS_DIR`` (a spec must not make hometwin read other files as a token)."""
    if value is None:
        return None
    roots = [Path(r).resolve() for r in SECRET_ROOTS]
    if os.environ.get(ENV_SECRETS_DIR):
        roots.append(Path(os.environ[ENV_SECRETS_DIR]).resolve())
    roots = list(dict.fromkeys(roots))  # /var/run is often /run
    real = Path(os.path.realpath(value))
    if not os.path.isabs(value) or not any(real.is_relative_to(r) for r in roots):
        raise ValueError(f"must be an absolute path under {', '.join(str(r) for r in roots)} "
                         f"(a mounted Secret; set {ENV_SECRETS_DIR} for another folder)")
    return value


def read_token(service: Service, env: str | None, file: str | None) -> str:
    """A token from the environment variable ``env`` or the file ``file`` (a mounted Kubernetes
    Secret; first line, trimmed).  :class:`SourceError` naming the service and both places when
    neither has one; the token itself is never shown."""
    if file:
        try:
            with open(file, encoding="utf-8") as fh:
                token = fh.read(4096).strip().splitlines()[0].strip() if os.path.getsize(file) else ""
        except (OSError, IndexError, UnicodeDecodeError):
            token = ""
        if token:
            return token
    if env and os.environ.get(env, "").strip():
        return os.environ[env].strip()
    places = " or ".join(p for p in (f"the environment variable {env}" if env else "",
                                     f"the file {file}" if file else "") if p)
    raise SourceError(f"{service.title}: no token found in {places}; {service.token_hint}".rstrip("; "))


# -- the cache ----------------------------------------------------------------------------------

def _key(url: str, params: dict[str, Any] | None) -> str:
    canon = url + "?" + urlencode(sorted((params or {}).items()))
    return hashlib.sha256(canon.encode()).hexdigest()[:24]


def _entry_dir(service: Service, url: str, params: dict[str, Any] | None) -> Path:
    return cache_dir() / service.name / _key(url, params)


def cached(service: Service, url: str, params: dict[str, Any] | None = None) -> list[Document]:
    """Every cached document of this request, oldest retrieval first."""
    folder = _entry_dir(service, url, params)
    docs = []
    if folder.is_dir():
        for meta_path in sorted(folder.glob("*.json")):
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                body = meta_path.with_suffix(".body").read_bytes()
            except (OSError, ValueError):
                continue  # a half-written pair (a run killed while writing): not a document
            docs.append(Document(body, meta, meta_path, from_cache=True))
    docs.sort(key=lambda d: d.retrieved_at)
    return docs


def _store(service: Service, url: str, params: dict[str, Any] | None, body: bytes, meta: dict[str, Any]) -> Path:
    folder = _entry_dir(service, url, params)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(meta["retrieved_at"])) + f"{meta['retrieved_at'] % 1:.6f}"[1:]
    meta_path = folder / f"{stamp}.json"
    tmp_body, tmp_meta = meta_path.with_suffix(".body.tmp"), meta_path.with_suffix(".json.tmp")
    tmp_body.write_bytes(body)
    tmp_meta.write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp_body, meta_path.with_suffix(".body"))
    os.replace(tmp_meta, meta_path)  # the meta last: a pair without it is not a document
    _prune(folder)
    return meta_path


def _prune(folder: Path) -> None:
    """Remove the oldest versions beyond ``$HOMETWIN_CACHE_KEEP`` (a pod's small /tmp, a live twin)."""
    try:
        keep = int(os.environ.get(ENV_CACHE_KEEP, "0") or 0)
    except ValueError:
        keep = 0
    if keep <= 0:
        return
    metas = sorted(folder.glob("*.json"))  # names are retrieval times: sorted = oldest first
    for old in metas[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".body").unlink(missing_ok=True)


def _update_meta(doc: Document, **changes: Any) -> None:
    doc.meta.update(changes)
    if doc.path is not None:
        tmp = doc.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc.meta, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, doc.path)


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _fresh(doc: Document, now: float, max_age_s: float | None, immutable: bool) -> bool:
    if immutable:
        return True
    expires = doc.meta.get("expires_at")
    if expires is not None and now < float(expires):
        return True
    checked = float(doc.meta.get("checked_at", doc.retrieved_at))
    return max_age_s is not None and now - checked < max_age_s


# -- the request ----------------------------------------------------------------------------

def user_agent() -> str:
    """:data:`USER_AGENT`, with the contact of :data:`ENV_CONTACT` when set (printable ASCII only)."""
    contact = "".join(c for c in os.environ.get(ENV_CONTACT, "") if 32 <= ord(c) < 127).strip()[:120]
    return f"{USER_AGENT[:-1]}; {contact})" if contact else USER_AGENT


def _wait_rate(service: Service) -> None:
    interval = _settings["min_interval_s"] if _settings["min_interval_s"] is not None else service.min_interval_s
    with _rate_lock:
        last = _last_request.get(service.name)
        now = time.monotonic()
        if last is not None and now - last < interval:
            time.sleep(interval - (now - last))
        _last_request[service.name] = time.monotonic()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = _http_date(value)
    return None if when is None else max(0.0, when - time.time())


def fetch(service: Service, url: str, params: dict[str, Any] | None = None, *,
          what: str = "", published: Callable[[bytes], float | None] | None = None,
          max_age_s: float | None = None, immutable: bool = False,
          secret_params: dict[str, str] | None = None, secret_headers: dict[str, str] | None = None,
          accept: str = "application/json") -> Document:
    """The document at ``url`` with ``params``: from the cache while fresh, else from the service.

    ``what`` describes the request in messages ("the forecast for 63.43 N 10.39 E");
    ``published(body)`` gives the publication time the service states [Unix s] (or None).
    """
    what = what or url  # public parameters only: secrets go separately
    docs = cached(service, url, params)
    latest = docs[-1] if docs else None
    if offline():
        if latest is None:
            raise OfflineMissing(f"offline: no cached {service.title} data for {what} in {cache_dir()} "
                                 f"(run once without --offline to fetch it)")
        return latest
    now = time.time()
    if latest is not None and _fresh(latest, now, max_age_s, immutable):
        return latest
    if (secret_params or secret_headers) and not _secrets_allowed(service, url):
        raise SourceError(f"{service.title}: refusing to send the token to {urlsplit(url).hostname} "
                          f"(tokens go only to {service.host} or loopback)")
    headers = {"User-Agent": user_agent(), "Accept": accept, "Accept-Encoding": "gzip, deflate"}
    if service.conditional and latest is not None and latest.meta.get("last_modified"):
        headers["If-Modified-Since"] = latest.meta["last_modified"]
    headers.update(secret_headers or {})
    query = dict(params or {})
    query.update(secret_params or {})
    backoff = _settings["backoff_s"] if _settings["backoff_s"] is not None else BACKOFF_S
    problem = ""
    for attempt in range(RETRIES + 1):
        _wait_rate(service)
        wait = backoff * 2 ** attempt
        try:
            resp = requests.get(url, params=query, headers=headers, timeout=(TIMEOUT_S, TIMEOUT_S),
                                stream=True, allow_redirects=False)
        except requests.exceptions.Timeout:
            problem = f"no answer within {TIMEOUT_S:g} s"
        except requests.exceptions.RequestException as exc:
            problem = f"unreachable ({type(exc).__name__})"
        else:
            with resp:
                status = resp.status_code
                if status == 304 and latest is not None:
                    _update_meta(latest, checked_at=now, expires_at=_http_date(resp.headers.get("Expires")))
                    return latest
                if status in (200, 203):
                    body = _read_capped(resp, service)
                    return _keep(service, url, params, body, resp.headers, now, published)
                if status == 429 or status >= 500:
                    problem = f"HTTP {status}"
                    after = _retry_after(resp.headers.get("Retry-After"))
                    if after is not None:
                        if after > MAX_WAIT_S:
                            raise SourceError(f"{service.title}: HTTP {status} for {what}, asked to wait "
                                              f"{after:.0f} s (more than {MAX_WAIT_S:.0f} s); try again later")
                        wait = after
                elif status in (401, 403):
                    hint = service.token_hint or "check the User-Agent and the service's terms"
                    raise SourceError(f"{service.title}: HTTP {status} (refused) for {what}; {hint}")
                else:
                    raise SourceError(f"{service.title}: HTTP {status} for {what}; check the source's "
                                      f"settings (area, position, dates)")
        if attempt < RETRIES:
            time.sleep(min(wait, MAX_WAIT_S))
    raise SourceError(f"{service.title}: {problem} for {what} after {RETRIES + 1} tries; check the network "
                      f"or run with --offline on cached data")


def _read_capped(resp: Any, service: Service) -> bytes:
    chunks, total = [], 0
    for chunk in resp.iter_content(1 << 16):
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise SourceError(f"{service.title}: answer larger than {MAX_BODY_BYTES // 2**20} MiB; refused")
        chunks.append(chunk)
    return b"".join(chunks)


def _keep(service: Service, url: str, params: dict[str, Any] | None, body: bytes, headers: Any, now: float,
          published: Callable[[bytes], float | None] | None) -> Document:
    try:
        pub = published(body) if published is not None else None
    except Exception:  # noqa: BLE001 - the parser says what is wrong when the adapter reads it
        pub = None
    meta = {"service": service.name, "url": url, "params": params or {}, "retrieved_at": now, "checked_at": now,
            "published_at": pub, "last_modified": headers.get("Last-Modified"),
            "expires_at": _http_date(headers.get("Expires")), "licence": service.licence}
    try:
        path = _store(service, url, params, body, meta)
    except OSError as exc:
        raise SourceError(f"{service.title}: cannot write the cache {cache_dir()} ({exc.strerror or type(exc).__name__}); "
                          f"give a writable folder with --cache-dir or {ENV_CACHE_DIR}") from None
    return Document(body, meta, path)
