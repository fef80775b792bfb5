"""The last provider of a site: a File no other provider takes fails the app call.

Without it, Parsl's DataManager raises `ValueError("Executor lab1 cannot stage file
<File at 0x... url=... scheme=...>")` from the app call; with it, the same call raises
one line naming the URL, the site and what the site can stage instead.
"""

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, NoReturn

from parsl.data_provider.files import File
from parsl.data_provider.staging import Staging
from parsl.utils import RepresentationMixin

from pwgen.staging.errors import StagingError

if TYPE_CHECKING:
    from parsl.data_provider.data_manager import DataManager

#: The schemes site_storage_access() stages, each way (keep in step with its list).
STAGED_IN = ("file", "zip", "http", "https", "ftp", "s3", "gs")
STAGED_OUT = ("file", "zip", "s3", "gs")


class UnsupportedScheme(StagingError):
    """A File whose scheme the site cannot stage (raised by the app call)."""

    #: A misuse in the workflow: `pwgen run` prints it as one line (pwgen_script).
    workflow_error_line = True


class UnsupportedStaging(Staging, RepresentationMixin):
    """Takes every File and refuses it: put it last in `storage_access`.

    The app call raises `UnsupportedScheme` (a `StagingError`), for example `site lab1
    cannot stage in globus://ep/path: pwgen sites stage in file, zip, http, https, ftp,
    s3 and gs Files`, before anything of the task runs.
    """

    def can_stage_in(self, file: File) -> bool:
        return True

    def can_stage_out(self, file: File) -> bool:
        return True

    def stage_in(
        self, dm: "DataManager", executor: str, file: File, parent_fut: Future[Any] | None
    ) -> NoReturn:
        raise UnsupportedScheme(refusal(executor, file, "in", STAGED_IN))

    def stage_out(
        self, dm: "DataManager", executor: str, file: File, app_fu: Future[Any]
    ) -> NoReturn:
        raise UnsupportedScheme(refusal(executor, file, "out", STAGED_OUT))


def refusal(site: str, file: File, way: str, schemes: tuple[str, ...]) -> str:
    """The one-line message for a File a site cannot stage `way` ("in" or "out")."""
    listed = f"{', '.join(schemes[:-1])} and {schemes[-1]}"
    return f"site {site} cannot stage {way} {file.url}: pwgen sites stage {way} {listed} Files"
