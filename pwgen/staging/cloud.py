"""`s3://` and `gs://` Files: copied on the worker, inside the task, by a CLI of the site.

This machine never touches the data: the task downloads its inputs before the app
runs and uploads its outputs after it (Parsl's in-task staging, like its
`HTTPInTaskStaging`), with the cloud CLI the site has (`aws`, `gcloud` or `gsutil`),
and removes its copies. A failed copy fails the task with the CLI's own message.
"""

import posixpath
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from parsl.app.futures import DataFuture
from parsl.data_provider.files import File
from parsl.data_provider.staging import Staging
from parsl.errors import ConfigurationError
from parsl.utils import RepresentationMixin
from pydantic import ValidationError

from pwgen.objectstore import CredentialsError, ObjectStore, read_keys, worker_environment
from pwgen.staging.errors import StagingError
from pwgen.staging.intask import cli_argv, cloud_stage_in, cloud_stage_out
from pwgen.staging.release import release_site
from pwgen.staging.site import SiteDirs
from pwgen.staging.storekeys import ship_keys
from pwgen.validation import first_problem

if TYPE_CHECKING:
    from parsl.data_provider.data_manager import DataManager

#: URL schemes and what a site may use for them.
SCHEMES = ("s3", "gs")
#: Where tasks of an executor that is not a pwgen site keep their copies (its working_dir,
#: else relative to the worker's directory).
LOCAL_DIR = "pwgen-staging"


class CloudStaging(Staging, RepresentationMixin):
    """`s3://bucket/key` and `gs://bucket/key` Files, copied by the worker in the task.

    Input: before the app runs, the object is copied to a directory of the task's own
    (on a pwgen site: `<remote_dir>/<run_id>/<label>/staging/cloud/<uuid>/<name>`) and
    the task gets that path; a URL ending in `/` is a prefix, copied as a directory.
    Output: the task writes to such a path and, after the app returned, the file (or
    directory, to a prefix) is uploaded to the URL. The copies are removed after the
    task. Objects are copied with `cp`, prefixes with the CLI's sync (`aws s3 sync`,
    `gcloud storage rsync --recursive`, `gsutil -m rsync -r`). A failed copy raises
    `RuntimeError` in the task, with the command line and the CLI's message.

    s3_cli : str or None (default None)
        The AWS CLI (`aws`, or its absolute path on the site). None: the site's choice,
        `$PWGEN_S3_CLI` in the worker's environment (its `worker_init`), else `aws`.
    gs_cli : str or None (default None)
        `gcloud` or `gsutil` (or an absolute path to one). None: `$PWGEN_GS_CLI` on the
        worker, else `gcloud`.
    object_store : mapping or None (default None)
        The site's `object_store` (pwgen.objectstore.ObjectStore: endpoint, region,
        buckets, keys by reference). Its keys are read here when the first s3:// File
        is staged on an executor and written to a private file where its tasks run
        (pwgen.staging.storekeys); the CLI finds them, the endpoint and the region in
        its environment. None: the CLI's own configuration on the worker.
    """

    def __init__(
        self,
        s3_cli: str | None = None,
        gs_cli: str | None = None,
        object_store: Mapping[str, Any] | None = None,
    ) -> None:
        for scheme, cli in (("s3", s3_cli), ("gs", gs_cli)):
            if cli is not None:
                try:
                    cli_argv(cli, scheme, "source", "destination", directory=False)
                except ValueError as err:
                    raise ConfigurationError(str(err)) from None
        self.s3_cli = s3_cli
        self.gs_cli = gs_cli
        self.object_store = object_store
        self._store = None if object_store is None else _validated_store(object_store)
        # The CLI's settings on each executor (label, run dir): keys shipped once per run.
        self._settings: dict[tuple[str, str | None], dict[str, str | None]] = {}
        self._settings_lock = threading.Lock()

    def can_stage_in(self, file: File) -> bool:
        return file.scheme in SCHEMES

    def can_stage_out(self, file: File) -> bool:
        return file.scheme in SCHEMES

    def stage_in(
        self, dm: "DataManager", executor: str, file: File, parent_fut: Future[Any] | None
    ) -> DataFuture | None:
        self._check_bucket(executor, file)
        file.local_path = _task_copy(dm.dfk.executors[executor], file)
        return None  # copied in the task itself

    def replace_task(
        self, dm: "DataManager", executor: str, file: File, func: Callable[..., Any]
    ) -> Callable[..., Any] | None:
        assert file.local_path is not None  # stage_in ran first
        wrapped: Callable[..., Any] = cloud_stage_in(
            func,
            url=file.url,
            scheme=file.scheme,
            local_path=file.local_path,
            directory=file.url.endswith("/"),
            cli=self._cli(file.scheme),
            settings=self._cli_settings(dm.dfk.executors[executor], file),
        )
        return wrapped

    def stage_out(
        self, dm: "DataManager", executor: str, file: File, app_fu: Future[Any]
    ) -> Future[Any] | None:
        self._check_bucket(executor, file)
        file.local_path = _task_copy(dm.dfk.executors[executor], file)
        return None  # uploaded in the task: the output is there when the task is done

    def replace_task_stage_out(
        self, dm: "DataManager", executor: str, file: File, func: Callable[..., Any]
    ) -> Callable[..., Any] | None:
        assert file.local_path is not None  # stage_out ran first
        wrapped: Callable[..., Any] = cloud_stage_out(
            func,
            url=file.url,
            scheme=file.scheme,
            local_path=file.local_path,
            cli=self._cli(file.scheme),
            settings=self._cli_settings(dm.dfk.executors[executor], file),
        )
        return wrapped

    def release_site(self, executor: Any) -> None:
        """At the executor's shutdown: remove the run's work dir for data on the site."""
        release_site(executor)

    def _cli(self, scheme: str) -> str | None:
        return self.s3_cli if scheme == "s3" else self.gs_cli

    def _check_bucket(self, executor: str, file: File) -> None:
        """An s3:// File outside the object store's buckets fails the app call."""
        refused = None
        if self._store is not None and file.scheme == "s3":
            refused = self._store.refused_bucket(file.netloc)
        if refused is not None:
            raise StagingError(f"site {executor} cannot stage {file.url}: {refused}")

    def _cli_settings(self, executor: Any, file: File) -> dict[str, str | None] | None:
        """The object store's settings for the CLI of an s3:// File on this executor;
        the first one ships the keys (read now, on this machine) to where its tasks run."""
        if self._store is None or file.scheme != "s3":
            return None
        run = (executor.label, getattr(executor, "remote_run_dir", None))
        with self._settings_lock:
            settings = self._settings.get(run)
            if settings is None:
                keys_file = None
                if self._store.credentials is not None:
                    try:
                        keys = read_keys(self._store.credentials)
                    except CredentialsError as err:
                        raise StagingError(f"site {executor.label}: {err}") from None
                    keys_file = ship_keys(executor, keys)
                settings = worker_environment(self._store, keys_file)
                self._settings[run] = settings
        return settings


def _validated_store(given: Mapping[str, Any]) -> ObjectStore:
    try:
        return ObjectStore.model_validate(dict(given))
    except ValidationError as err:
        problem = first_problem(err)
        raise ConfigurationError(f"object_store: {problem.path}: {problem.message}") from None


def _task_copy(executor: Any, file: File) -> str:
    """A new path for one task's copy of the object (file or directory)."""
    name = posixpath.basename(file.path.rstrip("/")) or file.netloc
    unique = uuid.uuid4().hex
    dirs = SiteDirs.of(executor)
    if dirs is not None:
        dirs.note_used()
        return posixpath.join(dirs.cloud_dir(unique), name)
    base = getattr(executor, "working_dir", None) or LOCAL_DIR
    return posixpath.join(base, "cloud", unique, name)
