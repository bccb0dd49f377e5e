"""The console: staff and clients work in the browser (issue 19).

A user-interface adapter over the five services' public HTTP APIs. Rules it keeps:

* It keeps no event store and no copy of anyone's data: every page is read from
  the services' APIs when it is asked for, every form is one API command.
* It calls the services with the user's own token (the one identity issued at
  login), so it never holds more rights than the user; every check of a right
  or of an object is the service's. The console only hides what ``GET /me``
  says the user may not use.
* The token lives in a sealed session cookie (AES-GCM, ``HttpOnly``,
  ``SameSite=Lax``); it never reaches the page, the URL or a log.
* Every form is a plain HTML form whose fields carry the API's field names
  (``login``, ``password``, ``otp``, ``subject``, ``body``, ``department_id``;
  nested ones dotted: ``name.en``), and carries a CSRF token bound to the
  session; a POST without the right one is a 403 and calls nothing.
* The API's answers are shown as they are: a 422 next to the field it names, a
  409 ``ticket_changed`` as "someone answered meanwhile" with what changed, a
  409 ``blocked_by_announcement`` with the announcement's text, 404 as not found.
* English and Russian (``?lang=ru``, remembered in the session; otherwise the
  browser's ``Accept-Language``).
"""
