"""The five services of the back office, one bounded context each (DESIGN.md section 2)."""
