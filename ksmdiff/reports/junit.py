"""A run record as JUnit XML: one <testsuite> per target, one <testcase> per scenario; a
failed expect, a broken invariant or a mismatch is a <failure> whose message is the first
problem; unsupported, not run and environment are <skipped> with the reason."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ksmdiff.reports.record import Outcome, by_target, first_problem, outcome, scenario_name

_SKIPPED = (Outcome.UNSUPPORTED, Outcome.NOT_RUN, Outcome.ENVIRONMENT)


def to_junit(record: dict) -> str:
    suites = ET.Element("testsuites", name="ksmdiff")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for target, results in by_target(record).items():
        suite = ET.SubElement(suites, "testsuite", name=target)
        version = next((r["version"] for r in results if r["version"]), None)
        if version:
            props = ET.SubElement(suite, "properties")
            ET.SubElement(props, "property", name="kernel_version", value=version)
        counts = {"tests": 0, "failures": 0, "skipped": 0}
        for r in results:
            case = ET.SubElement(suite, "testcase", name=scenario_name(r["source"]),
                                 classname=f"ksmdiff.{target}", file=r["source"])
            counts["tests"] += 1
            o = outcome(r)
            if o in _SKIPPED:
                counts["skipped"] += 1
                word = {Outcome.NOT_RUN: "not run"}.get(o, o.value)
                ET.SubElement(case, "skipped", message=f"{word}: {r['reason']}")
            elif o in (Outcome.FAILED, Outcome.MISMATCH):
                counts["failures"] += 1
                problems = [f"{e['expect']} (line {e['line']}): {e['reason']}"
                            for e in r["expects"] if e["status"] == "failed"]
                fail = ET.SubElement(case, "failure", message=first_problem(r) or o.value,
                                     type=o.value)
                fail.text = "\n".join(problems) or None
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
        suite.set("errors", "0")
    for k, v in totals.items():
        suites.set(k, str(v))
    suites.set("errors", "0")
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
