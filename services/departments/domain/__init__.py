"""Domain model of the departments context.

Aggregates that take commands and return events; no I/O.

* ``department`` – the ``Department`` aggregate and the rule that makes its effective rights;
* ``schedule`` – the ``Schedule`` aggregate and business-time arithmetic
  (``expected_response_at``, ``business_time_between``, ``is_open``, ``next_opening``);
* ``defaults`` – Sales and Technical support, with fixed ids;
* ``events`` – the payload models and their ``registry``; ``errors`` – the typed errors.
"""
