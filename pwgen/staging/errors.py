"""The error a failed transfer raises: it names both paths and the tool's own message."""


class StagingError(Exception):
    """A file or directory could not be copied to or from a site.

    Raised by the controller-side rsync transfers. A failed stage-in fails the task
    with Parsl's `DependencyError`, whose `__cause__` is this error; a failed
    stage-out fails the output's `DataFuture` with this error itself.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[type["StagingError"], tuple[str]]:
        return type(self), (self.message,)
