"""Data staging for tasks on sites that share no filesystem with this machine.

A workflow names its data with Parsl `File`s (`inputs=`, `outputs=`) and the site
executor's `storage_access` moves it (docs/staging.md):

    files.py    SiteFileStaging: file:// paths of this machine, copied to and from the
                run's work dir on the site by rsync over the site's ssh master
    zipfiles.py SiteZipStaging: zip: members of an archive on this machine, extracted
                or added here and copied as files.py copies
    unsupported.py  UnsupportedStaging: last, any other File fails the app call in one line
    cloud.py    CloudStaging: s3:// and gs:// copied on the worker, in the task, by the
                site's CLI (aws, gcloud, gsutil); s3 with the site's object store
    storekeys.py  an object store's keys written to the run's work dir on the site
    site.py     SiteDirs: the run's work dir for data on a site, its layout, ssh to it
    rsync.py    Rsync: the controller-side rsync commands and their errors
    release.py  release_site: at executor shutdown, transfers stopped, the dir removed
    intask.py   the wrappers that run on the worker (stdlib and Parsl only)
    streams.py  a bash app's stdout/stderr: written on the site, brought back before
                the task completes (the site executor's submit)
    delivery.py a file back from a site written where the workflow wants it
    memo.py     a memo key for Files (app caching and checkpoints of tasks with Files)
    errors.py   StagingError
"""

from parsl.data_provider.ftp import FTPInTaskStaging
from parsl.data_provider.http import HTTPInTaskStaging
from parsl.data_provider.staging import Staging

from pwgen.staging import memo  # noqa: F401  (registers Files with Parsl's memoizer)
from pwgen.staging.cloud import CloudStaging
from pwgen.staging.errors import StagingError
from pwgen.staging.files import SiteFileStaging
from pwgen.staging.release import release_site
from pwgen.staging.site import SiteDirs
from pwgen.staging.unsupported import UnsupportedStaging
from pwgen.staging.zipfiles import SiteZipStaging

__all__ = [
    "CloudStaging",
    "SiteDirs",
    "SiteFileStaging",
    "SiteZipStaging",
    "StagingError",
    "UnsupportedStaging",
    "release_site",
    "site_storage_access",
]


def site_storage_access(s3_cli: str | None = None, gs_cli: str | None = None) -> list[Staging]:
    """What a pwgen site executor stages (the generated config writes the same list out).

    file:// by rsync from here, zip: members through an archive here; http(s) and ftp
    downloaded in the task (Parsl's in-task providers: its default separate-task ones
    need a working_dir the site shares between tasks); s3:// and gs:// in the task with
    the site's CLI; any other File fails the app call, naming its scheme and the site.
    """
    return [
        SiteFileStaging(),
        SiteZipStaging(),
        HTTPInTaskStaging(),
        FTPInTaskStaging(),
        CloudStaging(s3_cli=s3_cli, gs_cli=gs_cli),
        UnsupportedStaging(),  # last: it takes every File
    ]
