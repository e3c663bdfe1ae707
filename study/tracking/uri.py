"""The tracking URI before anything is logged: made absolute, printed without its password, and
checked (its database driver installed, its server answering, its SQLite folder writable) so a
study that could not log is refused in one line before it starts."""

from __future__ import annotations

import os
import re
from pathlib import Path

from study.errors import SpecError


def absolute_uri(uri: str, cwd: Path | None = None) -> str:
    """``sqlite:///mlflow.db`` -> ``sqlite:////abs/dir/mlflow.db``; a bare path becomes ``file:``."""
    cwd = cwd or Path.cwd()
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        return f"sqlite:///{(cwd / path).resolve() if not path.is_absolute() else path}"
    if "://" not in uri:
        return (cwd / uri).resolve().as_uri()
    return uri


_PASSWORD = re.compile(r"(://[^/:@\s]+:)[^@\s/]+@")  # the password of any user:password@host


def redacted(text: str) -> str:
    """A URI, or a whole spec's text, as it may be printed or logged: every password in a
    ``scheme://user:secret@host`` is replaced by ``***``."""
    return _PASSWORD.sub(r"\1***@", text)


# The pip package of each database driver SQLAlchemy may ask for (a module's name is not always its
# package's); psycopg is what ``postgresql://`` means from SQLAlchemy 2.1 on, psycopg2 before it.
_DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000",
    "mysqldb": "mysqlclient",
    "pymysql": "PyMySQL",
    "mysqlconnector": "mysql-connector-python",
    "mariadbconnector": "mariadb",
    "pyodbc": "pyodbc",
    "pymssql": "pymssql",
}
DATABASES = ("postgresql", "mysql", "mssql")  # MLflow's SQLAlchemy stores besides sqlite


def check_driver(uri: str) -> None:
    """A database URI whose driver is not installed is refused now, in one line naming the package
    (MLflow would fail at its first query, deep in a traceback). SQLAlchemy is asked which module
    the scheme needs, so ``postgresql+pg8000://`` and a future default are named right."""
    if not uri.partition("://")[0].lower().startswith(DATABASES):
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        dialect = make_url(uri).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise SpecError(f"tracking_uri {redacted(uri)}: not a database URI SQLAlchemy can open ({exc})") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        package = _DRIVER_PACKAGES.get(dialect.driver, dialect.driver)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        extra = {
            "psycopg": ' (in a checkout: pip install -e ".[postgres]")',
            "mysqldb": " (it builds against the MySQL client library; mysql+pymysql:// needs PyMySQL only)",
        }
        extra = extra.get(dialect.driver, "")
        raise SpecError(
            f"tracking_uri {redacted(uri)}: the {dialect.name} driver {dialect.driver!r} is not "
            f'installed ({first}): pip install "{package}"{extra}'
        ) from None


def _health(uri: str) -> None:
    """GET the server's /health; credentials in the URI go in a header (urllib cannot parse them)."""
    import base64
    import urllib.request
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    host = parts.hostname or ""
    bare = urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))
    request = urllib.request.Request(bare.rstrip("/") + "/health")
    if parts.username is not None:
        token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    urllib.request.urlopen(request, timeout=5).read()


def check_reachable(uri: str) -> None:
    """Fail at once, in one line, when the store cannot be reached or opened."""
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise SpecError(f"tracking_uri {uri}: folder {folder} does not exist or is not writable")
    elif uri.startswith(("http://", "https://")):
        try:
            _health(uri)
        except Exception as exc:
            raise SpecError(
                f"tracking_uri {redacted(uri)}: no MLflow server answers ({exc.__class__.__name__}: {exc})"
            ) from None
