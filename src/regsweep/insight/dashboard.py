"""``regsweep dashboard``: optuna-dashboard on a study's storage, opened by regsweep's factory.

regsweep dashboard sweeps/mnist.yaml     # then open http://127.0.0.1:8080

Also what regsweep puts into the dashboard: the verdict as the study's note
(``optuna_dashboard.save_note``) and the report and exported model as study artifacts
(``optuna.artifacts``), in a file-system artifact store beside a SQLite database
(``<db name>-artifacts/``) or wherever ``--artifacts`` / ``REGSWEEP_ARTIFACTS`` says.
"""

from __future__ import annotations

import json
import mimetypes
import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
from rich.console import Console

from regsweep.errors import ConfigError
from regsweep.storage import private
from regsweep.storage.urls import parse_url, redact
from regsweep.sweep.locate import StudyRef, open_existing_storage

DEFAULT_HOST = "127.0.0.1"  # optuna-dashboard has no login and can delete studies
DEFAULT_PORT = 8080
# Set where the listening address is not the reachable one: in a container that listens on
# 0.0.0.0, HOST:PORT is where it is published (docker-compose.yml sets 127.0.0.1:8080).
PUBLISHED_ENV = "REGSWEEP_DASHBOARD_PUBLISHED"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


ARTIFACTS_ENV = "REGSWEEP_ARTIFACTS"
ARTIFACT_ATTR_PREFIX = "artifacts:"  # where optuna.artifacts records a study's uploads


@dataclass(frozen=True)
class Store:
    folder: Path
    store: optuna.artifacts.FileSystemArtifactStore


def artifact_folder(url: str, folder: Path | None = None) -> Path | None:
    """``folder``, else ``REGSWEEP_ARTIFACTS``, else ``<db>-artifacts`` beside a SQLite file.

    A server database has no "beside": without a folder given there is no store.
    """
    if folder is not None:
        return folder
    if os.environ.get(ARTIFACTS_ENV):
        return Path(os.environ[ARTIFACTS_ENV])
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        db = Path(parsed.database).expanduser()
        return db.with_name(f"{db.stem}-artifacts")
    return None


def artifact_store(url: str, folder: Path | None = None, *, create: bool = True) -> Store | None:
    chosen = artifact_folder(url, folder)
    if chosen is None:
        return None
    if create:
        try:
            chosen.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"--artifacts {chosen}: cannot create the artifact store ({exc.strerror or exc})"
            ) from None
    return Store(chosen, optuna.artifacts.FileSystemArtifactStore(str(chosen)))


def upload(
    study: optuna.Study,
    store: optuna.artifacts.FileSystemArtifactStore,
    files: Iterable[Path],
) -> list[str]:
    """Upload ``files`` as study artifacts; an earlier upload of the same file name is
    removed first, so the dashboard lists the current one once."""
    from optuna.artifacts import upload_artifact

    files = list(files)
    names = {f.name for f in files}
    storage = private.study_storage(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    attrs = storage.get_study_system_attrs(study_id)
    for key, value in attrs.items():
        if not key.startswith(ARTIFACT_ATTR_PREFIX) or not isinstance(value, str):
            continue
        meta = json.loads(value)
        if isinstance(meta, dict) and meta.get("filename") in names:
            # What optuna-dashboard's own delete does: forget it, then remove the file.
            storage.set_study_system_attr(study_id, key, json.dumps(None))
            store.remove(meta["artifact_id"])
    return [
        upload_artifact(
            study_or_trial=study,
            file_path=str(path),
            artifact_store=store,
            mimetype=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        )
        for path in files
    ]


def save_verdict_note(study: optuna.Study, markdown: str) -> None:
    """The verdict as the study's note, which optuna-dashboard shows on the study page."""
    from optuna_dashboard import save_note

    save_note(study, markdown)


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    # The dashboard's page fires several API requests at once; one thread each.
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would bury what the user needs to see


def serve(
    ref: StudyRef,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    console: Console | None = None,
    artifacts: Path | None = None,
) -> None:
    """Serve optuna-dashboard for ``ref``'s storage until Ctrl-C or SIGTERM.

    The storage may still be empty: workers that start later show up live. A SQLite
    file that does not exist is refused rather than created.

    Raises:
        StorageError: the storage cannot be opened.
        ConfigError: the address cannot be listened on.
    """
    console = console or Console(stderr=True)
    storage = open_existing_storage(ref.url, "`regsweep launch` or `regsweep worker`")
    import optuna_dashboard

    # The store `report` and `export` upload to, so the report and the model can be
    # downloaded on the study page (created empty if nothing was uploaded yet).
    live = artifact_store(ref.url, artifacts)
    published = published_address()  # a bad value is refused before listening
    app = optuna_dashboard.wsgi(storage, artifact_store=live.store if live else None)
    try:
        server = make_server(
            host, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler
        )
    except OSError as exc:
        raise ConfigError(
            f"--port: cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "pick another --port, or stop what uses it"
        ) from None
    shown_host, shown_port = published or (host, server.server_port)
    url = f"http://{shown_host}:{shown_port}/dashboard/"
    console.print(
        f"[bold]optuna-dashboard[/] for {redact(ref.url)} at [bold]{url}[/]"
        f"{_study_link(storage, ref.name, shown_host, shown_port)} · Ctrl-C stops it",
        highlight=False,
        soft_wrap=True,
    )
    if live is not None:
        console.print(f"artifacts from {live.folder}", highlight=False)
    if shown_host not in _LOOPBACK:
        console.print(
            "[yellow]warning:[/] optuna-dashboard has no login and can delete studies; "
            f"everyone who can reach {shown_host}:{shown_port} can use it",
            highlight=False,
        )
    # SIGTERM (docker stop) ends it as quietly as Ctrl-C: a dashboard holds no state.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with server:
            server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        console.print("dashboard stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)


def published_address() -> tuple[str, int] | None:
    """``$REGSWEEP_DASHBOARD_PUBLISHED`` as (host, port), or None where it is unset.

    Raises:
        ConfigError: it is set but not HOST:PORT.
    """
    value = os.environ.get(PUBLISHED_ENV, "").strip()
    if not value:
        return None
    host, _, port = value.rpartition(":")
    host = host.strip("[]")  # [::1]:8080
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"{PUBLISHED_ENV}={value!r}: expected HOST:PORT where the dashboard is "
            "published, e.g. 127.0.0.1:8080"
        )
    return host, int(port)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _study_link(
    storage: optuna.storages.BaseStorage, name: str | None, host: str, port: int
) -> str:
    if name is None:
        return ""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return f" (study {name!r} does not exist yet)"
    return f" (study {name}: http://{host}:{port}/dashboard/studies/{study_id})"
