"""The :7000 dashboard and the operator-facing proxy."""
