"""Memoization of tasks with `File` arguments (app caching, checkpoints).

Parsl's memoizer has no key for a `File` (`id_for_memo` raises "unknown type for
memoization"), so an app with `cache=True` and a File argument, input or output,
cannot be cached at all, on any executor. pwgen gives Files the key a path has: the
scheme and the absolute path (a relative path is the workflow's working directory's,
as everywhere pwgen stages). An input File's *content* is not part of the key, as for
a path passed as a string: a task whose input file changed between runs is still "the
same task" (docs/failover.md).
"""

import os
import pickle

from parsl.data_provider.files import File
from parsl.dataflow.memoization import id_for_memo


@id_for_memo.register(File)
def id_for_memo_file(file: File, output_ref: bool = False) -> bytes:
    """A File's memo key: its scheme, host and absolute path."""
    path = os.path.abspath(file.path) if file.scheme == "file" else file.path
    return pickle.dumps(("parsl.File", file.scheme, file.netloc, path))
