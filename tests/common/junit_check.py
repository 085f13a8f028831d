"""Reads a junit.xml with junitparser, as a CI consumer does, and prints
what it found as JSON for tests/common/junit.rs to compare with its own
quick-xml reading: the root's counts, and per testcase its suite, name,
classname, file, kind (passed, failure, error, skipped), message, type and
text, and its reruns (`<flakyFailure>`, `<rerunFailure>`, ... as
junitparser's xunit2 reader sees them: tag, message, type). Exits non-zero
when junitparser cannot read the file.
"""

import json
import sys

from junitparser import Error, Failure, JUnitXml, Skipped, TestSuite, xunit2


def kind(result):
    for cls, name in ((Failure, "failure"), (Error, "error"), (Skipped, "skipped")):
        if isinstance(result, cls):
            return name
    raise SystemExit("unknown result element %r" % result)


def main(path):
    xml = JUnitXml.fromfile(path)
    # A file whose root is a lone <testsuite> reads as a TestSuite: the
    # runner always writes a <testsuites> root.
    if isinstance(xml, TestSuite):
        raise SystemExit("%s: the root is <testsuite>, not <testsuites>" % path)
    cases = []
    for suite in xml:
        for case in suite:
            results = list(case.result)
            if len(results) > 1:
                raise SystemExit("%s: two results in %s" % (path, case.name))
            r = results[0] if results else None
            reruns = [
                {"tag": i._tag, "message": i.message or "", "type": i.type or ""}
                for i in xunit2.TestCase.fromelem(case._elem).interim_result
            ]
            cases.append(
                {
                    "suite": suite.name or "",
                    "name": case.name or "",
                    "classname": case.classname or "",
                    "file": case._elem.get("file") or "",
                    "kind": kind(r) if r is not None else "passed",
                    "message": (r.message or "") if r is not None else "",
                    "type": (r.type or "") if r is not None else "",
                    "text": (r.text or "") if r is not None else "",
                    "reruns": reruns,
                }
            )
    totals = {
        "tests": int(xml.tests),
        "failures": int(xml.failures),
        "errors": int(xml.errors),
        "skipped": int(xml.skipped),
    }
    json.dump({"totals": totals, "cases": cases}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
