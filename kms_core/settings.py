"""Where the store lives and who we are (region, account), from arguments or
the environment.  Documented in README and docs/architecture.md."""
from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import stat
from pathlib import Path

from .errors import StoreError

log = logging.getLogger("kms_core.settings")

DEFAULT_ACCOUNT_ID = "111122223333"
DEFAULT_REGION = "us-east-1"
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


class Settings:
    """Immutable configuration.  A plain class, not a dataclass: ``dataclasses``
    imports ``inspect`` (~9 ms), a cold-start cost for Lambda-style processes."""

    __slots__ = ("account_id", "cache_ttl", "home", "region", "root_key", "root_key_file", "store_url")
    home: Path
    store_url: str
    region: str
    account_id: str
    root_key: bytes | None
    root_key_file: Path | None
    cache_ttl: float

    def __init__(self, home: Path, store_url: str, region: str, account_id: str,
                 root_key: bytes | None = None, root_key_file: Path | None = None,
                 cache_ttl: float = 1.0):
        set_ = object.__setattr__
        set_(self, "home", home)
        set_(self, "store_url", store_url)
        set_(self, "region", region)
        set_(self, "account_id", account_id)
        set_(self, "root_key", root_key)
        set_(self, "root_key_file", root_key_file)
        set_(self, "cache_ttl", cache_ttl)  # seconds a cached key may lag other processes

    def __setattr__(self, name, value):
        raise AttributeError("Settings are immutable")

    def _key(self) -> tuple:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __eq__(self, other) -> bool:
        return isinstance(other, Settings) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:  # never shows the root key
        url = re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", self.store_url)
        return (f"Settings(home={str(self.home)!r}, store_url={url!r}, region={self.region!r}, "
                f"account_id={self.account_id!r}, cache_ttl={self.cache_ttl!r})")

    @property
    def embedded_default(self) -> bool:
        return self.store_url == default_store_url(self.home)

    @classmethod
    def from_env(cls, *, home=None, store_url=None, region=None, account_id=None,
                 root_key=None, root_key_file=None, cache_ttl=None) -> Settings:
        home = Path(home or _env("KMS_HOME") or Path.home() / ".kms").expanduser()
        store_url = store_url or _env("KMS_STORE_URL") or default_store_url(home)
        region = (region or _env("KMS_REGION") or _env("AWS_REGION")
                  or _env("AWS_DEFAULT_REGION") or DEFAULT_REGION)
        if not _REGION_RE.match(region):
            raise StoreError(f"invalid region {region!r}")
        account_id = account_id or _env("KMS_ACCOUNT_ID") or DEFAULT_ACCOUNT_ID
        if not re.fullmatch(r"\d{12}", account_id):
            raise StoreError("account id must be 12 digits")
        if root_key is None and _env("KMS_ROOT_KEY"):
            root_key = decode_root_key(os.environ["KMS_ROOT_KEY"], "KMS_ROOT_KEY")
        if root_key is not None and len(root_key) != 32:
            raise StoreError("the root key must be 32 bytes")
        if root_key_file is None:
            root_key_file = Path(_env("KMS_ROOT_KEY_FILE") or home / "root.key")
        if cache_ttl is None:
            cache_ttl = float(_env("KMS_CACHE_TTL") or 1.0)
        settings = cls(home=home, store_url=store_url, region=region, account_id=account_id,
                       root_key=root_key, root_key_file=Path(root_key_file), cache_ttl=cache_ttl)
        make_private(settings)
        return settings


def default_store_url(home: Path) -> str:
    return f"sqlite:///{Path(home) / 'kms.db'}"


def decode_root_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise StoreError(f"{where} is not valid base64") from None
    if len(key) != 32:
        raise StoreError(f"{where} must be base64 of exactly 32 bytes (got {len(key)})")
    return key


# ------------------------------------------------------------------ file modes
_WARNED: set[str] = set()
_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def sqlite_path(store_url: str) -> Path | None:
    """The file of a ``sqlite:///…`` store URL (None for other databases and ``:memory:``)."""
    if not store_url.startswith("sqlite") or "///" not in store_url:
        return None
    path = store_url.split("///", 1)[1].split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path).expanduser()


def make_private(settings: Settings) -> None:
    """Keep what lives under KMS_HOME private to its owner, before the store opens:
    create the home 0700 and the SQLite store file 0600 (SQLite then gives its
    -wal, -shm and -journal files the store file's mode); the root key file is
    created 0600 by the store.  Existing ones that are wider are left as they are
    and reported once per process (a warning, naming the path and the mode only)."""
    db = sqlite_path(settings.store_url)
    home = Path(settings.home)
    try:
        # The home is needed when the store or a root key file to create lives in it.
        in_memory = db is None and settings.store_url.startswith("sqlite")  # no files at all
        needs_home = (db is not None and _inside(db, home)) or (
            not in_memory and settings.root_key is None and settings.root_key_file is not None
            and _inside(settings.root_key_file, home))
        if needs_home:
            _private_dir(home)
        elif home.exists():
            _check(home, 0o700)
        if db is not None:
            _private_dir(db.parent) if not db.parent.exists() else _check(db.parent, 0o700)
            _private_file(db)
            for suffix in _SIDE_FILES[1:]:
                _check(Path(f"{db}{suffix}"), 0o600)
        if settings.root_key_file is not None:
            _check(Path(settings.root_key_file), 0o600)
    except OSError as e:  # read-only media, another owner: the store reports what matters
        log.debug("could not check the modes under %s: %s", home, e.strerror)


def _inside(path: Path, home: Path) -> bool:
    try:
        return Path(path).expanduser().resolve().is_relative_to(home.expanduser().resolve())
    except (OSError, RuntimeError):
        return False


def _private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        _check(path, 0o700)
        return
    os.chmod(path, 0o700)  # exactly 0700, whatever the umask


def _private_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        _check(path, 0o600)
        return
    os.close(fd)  # an empty file is an empty SQLite database


def _check(path: Path, private: int) -> None:
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    if mode & ~private & 0o077 and str(path) not in _WARNED:
        _WARNED.add(str(path))
        log.warning("%s is accessible to other users (mode %04o); kms-local keeps its files "
                    "private: chmod %o %s", path, mode, private, path)
