"""Other forms of a run record (docs/run-record.md): KTAP, JUnit XML, KCIDB I/O data, an
HTML page; and the CI glue (shards of a scenario list, merging the records of shards).

Every module here is a pure function of run records read by :mod:`ksmdiff.reports.record`;
none of them runs a scenario."""
