"""Visual reports: one run (``write_report``) and side-by-side comparisons (``write_comparison``).

matplotlib and scikit-learn are imported only when a report is written, never at ``import vaekit``.
"""

from __future__ import annotations

from vaekit.report.compare import COMPARE_SECTION_IDS, parse_variants, train_and_compare, write_comparison
from vaekit.report.single import SECTION_IDS, build_report, write_report

__all__ = ["COMPARE_SECTION_IDS", "SECTION_IDS", "build_report", "parse_variants", "train_and_compare",
           "write_comparison", "write_report"]
