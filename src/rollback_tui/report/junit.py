"""A JUnit XML result of a rehearsal, for CI: one testcase per runbook step item, from the read model.

A failed item is a <failure>, one that could not run or could not look (unknown) an <error>, and one
that did not run — skipped by its condition, a change not allowed, a manual item nobody answered — is
<skipped>, each with its reason in words. Nothing is a pass unless the item passed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable

from rollback_tui.core.read.steps import DONE, FAILED, UNKNOWN, StepRow, status_word
from rollback_tui.core.state import SessionState


def junit_xml(suite: str, rows: Iterable[StepRow], state: SessionState) -> str:
    """The `<testsuites>` document for the step rows given (the steps that were asked to run)."""
    cases = []
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for row in rows:
        for index, item in enumerate(row.items):
            case = ET.Element("testcase", classname=f"{suite}.{row.name}", name=f"{index + 1}. {item.label}")
            run = state.step_items.get((row.name, index))
            if run is not None and run.started_ts is not None and run.finished_ts is not None:
                case.set("time", f"{max(0.0, run.finished_ts - run.started_ts):.3f}")
            words = status_word(item.status) + (f": {item.reason}" if item.reason else "")
            counts["tests"] += 1
            if item.status in FAILED:
                counts["failures"] += 1
                ET.SubElement(case, "failure", message=words, type=item.status)
            elif item.status in UNKNOWN:
                counts["errors"] += 1
                ET.SubElement(case, "error", message=words, type="unknown")
            elif item.status not in DONE:
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message=words)
            cases.append(case)
    attrs = {"name": suite, **{k: str(v) for k, v in counts.items()}}
    root = ET.Element("testsuites", attrs)
    suite_el = ET.SubElement(root, "testsuite", attrs)
    suite_el.extend(cases)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
