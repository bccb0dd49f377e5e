"""The notifier's copies of other contexts' facts.

* ``directory`` – staff (names, addresses, departments), departments, schedules and
  tickets as identity, departments and tickets publish them: who gets which notice.
"""
