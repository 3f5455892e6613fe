"""The kspec engine: parse (parse.py), type check (check.py), compile to Z3 (compile.py),
prove (prove.py), print counterexamples (cex.py)."""
