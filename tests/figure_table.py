"""The trained tests' figures from JUnit reports, one column per report, with their spread.

    python tests/figure_table.py .kernel-reports/*.xml

Each report is one run (a kernel set, a seed, a thread count: `make test-kernels`, or
`pytest --junitxml=...`); the figures are what the tests recorded with the `figure` fixture.
A docstring's spread is the min-max row here over the runs it names.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def read_figures(report: Path) -> dict[str, float]:
    """{'module::test figure': value} of one JUnit report."""
    figures = {}
    for case in ET.parse(report).iter("testcase"):
        test = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        for prop in case.iter("property"):
            figures[f"{test} {prop.get('name')}"] = float(prop.get("value"))
    return figures


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__.strip())
        return 2
    runs = {Path(p).stem: read_figures(Path(p)) for p in paths}
    names = sorted(set().union(*runs.values()))
    print("\t".join(["figure", *runs, "min", "max"]))
    for name in names:
        values = [runs[r].get(name) for r in runs]
        seen = [v for v in values if v is not None]
        cells = ["-" if v is None else f"{v:.4g}" for v in values]
        print("\t".join([name, *cells, f"{min(seen):.4g}", f"{max(seen):.4g}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
