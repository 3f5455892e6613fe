"""Scenario generation: Hypothesis strategies (and, later, Z3-driven generation)."""
