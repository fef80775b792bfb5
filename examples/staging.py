"""Files in and out of every site: `pwgen run examples/staging.py --sites SITES -- FILE DIR OUT`.

FILE and DIR are a file and a directory on this machine; every site the config defines
gets both (pwgen copies them to the run's work dir on the site), one task per site
turns FILE into its byte-reversed copy and another turns DIR into a directory of
upper-cased copies of its files, and pwgen copies both results back to
OUT/<site>/. The tasks see only paths on their site; the workflow sees only paths here.
"""

import hashlib
import os
import sys

import parsl
from parsl import File, python_app


def reverse_file(inputs: list[File], outputs: list[File]) -> tuple[str, str, str]:
    """Write the input's bytes reversed to the output; return (sha256, host, input path)."""
    import hashlib
    import socket

    with open(inputs[0], "rb") as source:
        data = source.read()
    with open(outputs[0], "wb") as target:
        target.write(data[::-1])
    return hashlib.sha256(data).hexdigest(), socket.gethostname(), inputs[0].filepath


def upper_tree(inputs: list[File], outputs: list[File]) -> list[str]:
    """Copy every file below the input directory, upper-cased, to the output directory."""
    import os

    names = []
    for root, _, files in os.walk(inputs[0]):
        for name in files:
            relative = os.path.relpath(os.path.join(root, name), inputs[0])
            target = os.path.join(outputs[0], relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(os.path.join(root, name), "rb") as source, open(target, "wb") as out:
                out.write(source.read().upper())
            names.append(relative)
    return sorted(names)


def sha256(path: str) -> str:
    with open(path, "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()


def main(data_file: str, data_dir: str, out: str) -> None:
    labels = sorted(label for label in parsl.dfk().executors if not label.startswith("_"))
    name, tree = os.path.basename(data_file), os.path.basename(data_dir.rstrip("/"))
    runs = []
    for label in labels:
        reversed_copy = File(os.path.join(out, label, f"{name}.reversed"))
        upper_copy = File(os.path.join(out, label, f"{tree}.upper"))
        runs.append(
            (
                label,
                python_app(reverse_file, executors=[label])(
                    inputs=[File(data_file)], outputs=[reversed_copy]
                ),
                python_app(upper_tree, executors=[label])(
                    inputs=[File(data_dir)], outputs=[upper_copy]
                ),
            )
        )
    for label, reversed_future, tree_future in runs:
        digest, host, site_path = reversed_future.result()
        here = reversed_future.outputs[0].result().filepath  # waits until it is back here
        print(f"{label}: {name} sha256 {digest} on {host} (staged to {site_path})")
        print(f"{label}: {name}.reversed back at {here}, sha256 {sha256(here)}")
        files = tree_future.result()
        back = tree_future.outputs[0].result().filepath
        print(f"{label}: {tree} ({len(files)} files: {', '.join(files)}) upper-cased at {back}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(f"usage: {sys.argv[0]} FILE DIR OUT")
    main(*(os.path.abspath(arg) for arg in sys.argv[1:]))
