"""`s3://` and `gs://` Files: copied on the worker, inside the task, by a CLI of the site.

This machine never touches the data: the task downloads its inputs before the app
runs and uploads its outputs after it (Parsl's in-task staging, like its
`HTTPInTaskStaging`), with the cloud CLI the site has (`aws`, `gcloud` or `gsutil`),
and removes its copies. A failed copy fails the task with the CLI's own message.
"""

import posixpath
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from parsl.app.futures import DataFuture
from parsl.data_provider.files import File
from parsl.data_provider.staging import Staging
from parsl.errors import ConfigurationError
from parsl.utils import RepresentationMixin

from pwgen.staging.intask import cli_argv, cloud_stage_in, cloud_stage_out
from pwgen.staging.release import release_site
from pwgen.staging.site import SiteDirs

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
    """

    def __init__(self, s3_cli: str | None = None, gs_cli: str | None = None) -> None:
        for scheme, cli in (("s3", s3_cli), ("gs", gs_cli)):
            if cli is not None:
                try:
                    cli_argv(cli, scheme, "source", "destination", directory=False)
                except ValueError as err:
                    raise ConfigurationError(str(err)) from None
        self.s3_cli = s3_cli
        self.gs_cli = gs_cli

    def can_stage_in(self, file: File) -> bool:
        return file.scheme in SCHEMES

    def can_stage_out(self, file: File) -> bool:
        return file.scheme in SCHEMES

    def stage_in(
        self, dm: "DataManager", executor: str, file: File, parent_fut: Future[Any] | None
    ) -> DataFuture | None:
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
        )
        return wrapped

    def stage_out(
        self, dm: "DataManager", executor: str, file: File, app_fu: Future[Any]
    ) -> Future[Any] | None:
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
        )
        return wrapped

    def release_site(self, executor: Any) -> None:
        """At the executor's shutdown: remove the run's work dir for data on the site."""
        release_site(executor)

    def _cli(self, scheme: str) -> str | None:
        return self.s3_cli if scheme == "s3" else self.gs_cli


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
