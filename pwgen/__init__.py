"""pwgen: run one Parsl workflow across several HPC clusters at once.

The package follows the data flow of the design, one module per step:

    sites.py -> sources/pw.py -> inventory.py -> configgen/ -> run.py

`cli.py` holds only the typer commands that call into these modules.
"""

__version__ = "0.1.0"
