"""Reports: a template notebook run with papermill into one self-contained HTML file.

>>> from nbtoolkit.report import run_report
>>> run = run_report("batch_eval", "eval.ipynb", parameters={"rows": 20})   # doctest: +SKIP
>>> run.html                                                                  # doctest: +SKIP

The package, by what each module owns:

- ``run``: finding a template, running it (papermill, a kernel of this interpreter),
  recording what it did, writing the HTML page; ``estimate_template``.
- ``parameters``: a template's declared parameters, and the values given, checked before
  the kernel starts.
- ``sections`` (``Report``): the sections a template shows, from a finished run; built from
  ``markup`` (HTML pieces), ``inputs`` (the rows and models a template runs on),
  ``analysis`` / ``replay`` / ``values`` / ``assumptions`` / ``failures`` (the numbers and
  words), ``figures`` (matplotlib charts, also ``res.plot``; ``chart`` is the one module that
  imports matplotlib) and ``workflow`` (the hand-built diagram).

Importing this package imports neither papermill nor matplotlib: they load when a report
runs or a chart is drawn. The core never imports this package.
"""

from __future__ import annotations

from ..errors import CellError, ParameterError
from .parameters import (
    Parameter,
    check_before_running,
    check_no_secrets,
    check_parameters,
    from_text,
    parse_cli_value,
    template_parameters,
    yaml_text,
)
from .run import (
    BUILTIN_TEMPLATES,
    ReportRun,
    collect_frames,
    estimate_template,
    run_report,
    template_path,
    templates_dir,
    to_html,
    write_notebook,
)

__all__ = [
    "BUILTIN_TEMPLATES",
    "CellError",
    "Parameter",
    "ParameterError",
    "ReportRun",
    "check_before_running",
    "check_no_secrets",
    "check_parameters",
    "collect_frames",
    "estimate_template",
    "from_text",
    "parse_cli_value",
    "run_report",
    "template_parameters",
    "template_path",
    "templates_dir",
    "to_html",
    "write_notebook",
    "yaml_text",
]
