"""The console's words in English and Russian.

Rules it keeps: every text a page shows comes from here by key (``t("queue")``),
so both languages have every word; a key missing from Russian falls back to
English, and a missing key shows itself (never an error page). Data from the
services (department names, announcement texts) come in both languages from
the APIs themselves and are picked by ``pick``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LANGUAGES = ("en", "ru")

WORDS: dict[str, tuple[str, str]] = {
    # (English, Russian)
    "console": ("Back office", "Панель управления"),
    "login": ("Login", "Логин"),
    "password": ("Password", "Пароль"),
    "otp": ("One-time code", "Одноразовый код"),
    "otp_needed": (
        "Enter the one-time code from your authenticator app.",
        "Введите одноразовый код из приложения-аутентификатора.",
    ),
    "sign_in": ("Log in", "Войти"),
    "sign_out": ("Log out", "Выйти"),
    "forgot": ("Forgot your password?", "Забыли пароль?"),
    "forgot_title": ("Reset your password", "Восстановление пароля"),
    "forgot_sent": (
        "If the login exists, a message with a link to reset the password is on its way.",
        "Если такой логин есть, на почту отправлено письмо со ссылкой для смены пароля.",
    ),
    "send_link": ("Send the link", "Отправить ссылку"),
    "reset_title": ("Choose a new password", "Новый пароль"),
    "reset_done": ("Your password is changed. Log in with it.", "Пароль изменён. Войдите с ним."),
    "token": ("Code from the message", "Код из письма"),
    "change_password": ("Change password", "Сменить пароль"),
    "current_password": ("Current password", "Текущий пароль"),
    "new_password": ("New password", "Новый пароль"),
    "password_changed": ("Your password is changed.", "Пароль изменён."),
    "save": ("Save", "Сохранить"),
    "create": ("Create", "Создать"),
    "language": ("Language", "Язык"),
    "queue": ("Active requests", "Активные запросы"),
    "my_requests": ("My requests", "Мои запросы"),
    "new_request": ("New request", "Новый запрос"),
    "department": ("Department", "Отдел"),
    "departments": ("Departments", "Отделы"),
    "category": ("Category", "Категория"),
    "no_category": ("(none)", "(нет)"),
    "subject": ("Subject", "Тема"),
    "body": ("Message", "Сообщение"),
    "send": ("Send", "Отправить"),
    "open_request": ("Open the request", "Создать запрос"),
    "expected_response": ("Expected response by", "Ожидаемое время ответа"),
    "paid_balance": ("Paid requests left", "Осталось платных запросов"),
    "paid": ("paid", "платный"),
    "blocked": (
        "New requests cannot be opened now",
        "Сейчас нельзя создать новый запрос",
    ),
    "no_departments": (
        "No department takes requests from you at the moment.",
        "Сейчас ни один отдел не принимает от вас запросы.",
    ),
    "status": ("Status", "Статус"),
    "status_open": ("waiting for staff", "ожидает ответа"),
    "status_answered": ("answered", "отвечен"),
    "status_closed": ("closed", "закрыт"),
    "any": ("any", "любой"),
    "assignee": ("Assignee", "Ответственный"),
    "nobody": ("nobody", "никто"),
    "me": ("me", "я"),
    "sort": ("Sort", "Сортировка"),
    "sort_waiting": ("waiting longest", "дольше всех ждут"),
    "sort_deadline": ("deadline", "срок ответа"),
    "sort_-updated": ("recently changed", "недавно изменённые"),
    "sort_-opened": ("newest", "новые"),
    "filter": ("Show", "Показать"),
    "total": ("Total", "Всего"),
    "previous": ("Previous", "Назад"),
    "next": ("Next", "Вперёд"),
    "live_on": ("Live: new requests appear here.", "Новые запросы появляются здесь сами."),
    "nothing": ("Nothing here.", "Здесь пусто."),
    "opened": ("Opened", "Создан"),
    "updated": ("Changed", "Изменён"),
    "client": ("Client", "Клиент"),
    "clients": ("Clients", "Клиенты"),
    "staff": ("Staff", "Сотрудники"),
    "reply": ("Reply", "Ответить"),
    "internal_note": (
        "Internal note (the client does not see it)",
        "Внутренняя заметка (клиент не видит)",
    ),
    "template": ("Template", "Шаблон"),
    "choose_template": ("— fill from a template —", "— заполнить из шаблона —"),
    "fill": ("Fill", "Заполнить"),
    "assign": ("Assign", "Назначить"),
    "transfer": ("Transfer", "Передать"),
    "close": ("Close", "Закрыть"),
    "reopen": ("Reopen", "Открыть снова"),
    "rate": ("Rate", "Оценить"),
    "rating": ("Rating", "Оценка"),
    "rated": ("Rated", "Оценено"),
    "rate_reply": ("Rate this reply", "Оцените ответ"),
    "collision": ("Someone answered meanwhile", "Пока вы писали, кто-то ответил"),
    "collision_hint": (
        "Nothing was sent. Here is what changed; your text is kept below.",
        "Ничего не отправлено. Вот что изменилось; ваш текст сохранён ниже.",
    ),
    "entry_opened": ("opened the request", "создал(а) запрос"),
    "entry_message": ("wrote", "написал(а)"),
    "entry_internal_note": ("internal note", "внутренняя заметка"),
    "entry_assigned": ("assigned", "назначение"),
    "entry_transfer": ("transferred", "передан"),
    "entry_closed": ("closed", "закрыт"),
    "entry_reopened": ("reopened", "открыт снова"),
    "entry_rated": ("rated", "оценка"),
    "entry_rating_requested": ("rating asked for", "запрошена оценка"),
    "entry_linked_to_client": ("linked to a client", "привязан к клиенту"),
    # What a 409 ticket_changed lists, by event type.
    "change_TicketMessagePosted": ("a message was posted", "написано сообщение"),
    "change_TicketAssigned": ("the ticket was assigned", "назначен ответственный"),
    "change_TicketTransferred": ("the ticket was transferred", "запрос передан"),
    "change_TicketClosed": ("the ticket was closed", "запрос закрыт"),
    "change_TicketReopened": ("the ticket was reopened", "запрос открыт снова"),
    "change_TicketRated": ("the client rated it", "клиент поставил оценку"),
    "you": ("You", "Вы"),
    "support": ("Support", "Поддержка"),
    "not_found": ("Not found", "Не найдено"),
    "forbidden": ("You may not do this", "Нет доступа"),
    "unavailable": (
        "A service does not answer; try again shortly.",
        "Сервис не отвечает; попробуйте чуть позже.",
    ),
    "csrf": (
        "The form was too old or came from elsewhere; it was not sent. Try again.",
        "Форма устарела или пришла с другого сайта и не отправлена. Попробуйте ещё раз.",
    ),
    "impersonating": ("You are logged in as client", "Вы вошли как клиент"),
    "return": ("Return to my session", "Вернуться в свою сессию"),
    "log_in_as": ("Log in as this client", "Войти как этот клиент"),
    "name": ("Name", "Имя"),
    "email": ("E-mail", "E-mail"),
    "country": ("Country", "Страна"),
    "customer_status": ("Customer status", "Статус клиента"),
    "company_name": ("Company", "Компания"),
    "contact_person": ("Contact person", "Контактное лицо"),
    "registered": ("Registered", "Зарегистрирован"),
    "characteristic": ("Characteristic", "Характеристика"),
    "penalty_points": ("Penalty points", "Штрафные баллы"),
    "services": ("Services", "Услуги"),
    "note": ("Note", "Заметка"),
    "search_name": ("Name, e-mail or login", "Имя, e-mail или логин"),
    "rights": ("Rights", "Права"),
    "right": ("Right", "Право"),
    "sources": ("From", "Источник"),
    "source_individual": ("granted individually", "выдано лично"),
    "source_full_access": ("full access", "полный доступ"),
    "inherited": (
        "inherited from the department: cannot be removed here",
        "унаследовано от отдела: здесь не снять",
    ),
    "grant": ("Grant", "Выдать"),
    "revoke": ("Revoke", "Отозвать"),
    "enable": ("Turn on", "Включить"),
    "disable": ("Turn off", "Выключить"),
    "enabled": ("on", "вкл."),
    "full_access_only": ("full access only", "только полный доступ"),
    "name_en": ("Name (English)", "Название (англ.)"),
    "name_ru": ("Name (Russian)", "Название (рус.)"),
    "description": ("Description", "Описание"),
    "in_support": ("Takes requests in the support center", "Принимает запросы в центре поддержки"),
    "new_department": ("New department", "Новый отдел"),
    "new_staff": ("New staff member", "Новый сотрудник"),
    "full_name_en": ("Full name (English)", "Полное имя (англ.)"),
    "full_name_ru": ("Full name (Russian)", "Полное имя (рус.)"),
    "full_access": ("Full access", "Полный доступ"),
    "announcements": ("Announcements", "Объявления"),
    "announcement_text": ("Text", "Текст"),
    "starts_at": ("From", "С"),
    "ends_at": ("Until", "До"),
    "blocking": (
        "Blocking: no new requests while it is shown",
        "Блокирующее: пока показано, новые запросы не создаются",
    ),
    "active": ("active", "активно"),
    "end_now": ("End now", "Завершить"),
    "templates": ("Templates", "Шаблоны"),
    "template_name": ("Name", "Название"),
    "macros": (
        "Macros: %client_person%, %admin_name%, %ticket_id%, %ticket_subject%, %department%",
        "Макросы: %client_person%, %admin_name%, %ticket_id%, %ticket_subject%, %department%",
    ),
    "settings": ("Settings", "Настройки"),
    "saved": ("Saved.", "Сохранено."),
    "back": ("Back", "Назад"),
    "edit": ("Edit", "Изменить"),
    "phone": ("Phone", "Телефон"),
    "changed_meanwhile": (
        "Someone changed this card meanwhile; nothing was saved. Here it is as it is now.",
        "Пока вы редактировали, карточку изменили; ничего не сохранено. Вот текущая версия.",
    ),
    "characteristic_normal": ("normal", "обычный"),
    "characteristic_good": ("good", "хороший"),
    "characteristic_conflict": ("conflict", "конфликтный"),
    "suspend_services": ("Suspend services", "Приостановить услуги"),
    "resume_services": ("Resume services", "Возобновить услуги"),
    "write_message": ("Write to the client", "Написать клиенту"),
    "forbid_replies": ("Replies forbidden", "Без возможности ответа"),
    "abuse_notice": ("Abuse notice (with a deadline)", "Уведомление о нарушении (со сроком)"),
    "deadline": ("Deadline", "Срок"),
    "on_no_reaction": ("If the client does not react", "Если клиент не отреагирует"),
    "move_to_active": ("move to active requests", "перевести в активные запросы"),
    "comment": ("Comment", "Комментарий"),
    "messages": ("Messages", "Сообщения"),
    "schedules": ("Schedules", "Графики работы"),
    "timezone": ("Time zone", "Часовой пояс"),
    "holidays": ("Holidays", "Праздники"),
    "support_settings": ("Support settings", "Настройки поддержки"),
    "transfer_notices_shown": (
        "Transfer notices the client sees (at most)",
        "Сколько уведомлений о передаче видит клиент",
    ),
    "close_after_days": (
        "Close after days without activity",
        "Закрывать через дней без активности",
    ),
    "rate_after_days": ("Ask for a rating after days", "Просить оценку через дней"),
    "rating_mode": ("Rating", "Оценка"),
    "rating_mode_message": ("each reply", "каждого ответа"),
    "rating_mode_ticket": ("the whole request", "всего запроса"),
    "categories": ("Categories", "Категории"),
    "warning": ("Warning to the client", "Предупреждение клиенту"),
    "companies": ("Companies", "Компании"),
    "members": ("Members", "Участники"),
    "client_manager": ("client manager", "менеджер клиента"),
    "add": ("Add", "Добавить"),
    "contacts": ("Contacts", "Контакты"),
    "messenger": ("Messenger", "Мессенджер"),
    "messenger_id": ("Messenger id", "Идентификатор в мессенджере"),
    "equipment": ("Equipment", "Оборудование"),
    "equipment_type": ("Type", "Тип"),
    "serial": ("Serial number", "Серийный номер"),
    "inside": ("Inside", "Внутри"),
    "search": ("Search", "Поиск"),
    "search_words": ("Words", "Слова"),
    "requests_found": ("Requests", "Запросы"),
    "reports": ("Reports", "Отчёты"),
    "month_from": ("From month", "С месяца"),
    "month_to": ("To month", "По месяц"),
    "response_speed": ("Response speed (average)", "Скорость ответа (в среднем)"),
    "first_response": ("First response", "Первый ответ"),
    "response": ("Each response", "Каждый ответ"),
    "minutes": ("min", "мин"),
    "hours": ("h", "ч"),
    "answered_per_month": ("Answered per month", "Отвечено по месяцам"),
    "answered_hint": (
        "Bars: tickets answered; numbers: tickets / replies.",
        "Полосы: отвеченные запросы; числа: запросы / ответы.",
    ),
    "ratings": ("Ratings", "Оценки"),
    "average": ("Average", "Среднее"),
    "deliveries": ("Deliveries", "Доставка уведомлений"),
    "recipient": ("To", "Кому"),
    "channel": ("Channel", "Канал"),
    "sent": ("Sent", "Отправлено"),
    "timers": ("Timers", "Таймеры"),
    "pending": ("pending", "ожидают"),
    "timer_kind": ("Deadline", "Срок"),
    "due": ("Due", "Когда"),
    "ticket": ("Ticket", "Запрос"),
    "subscriptions": ("My notifications", "Мои уведомления"),
    "notice_new_ticket": ("A new request in my department", "Новый запрос в моём отделе"),
    "notice_client_reply": ("The client answered my request", "Клиент ответил в моём запросе"),
    "notice_ticket_transferred": ("A request was transferred to me", "Мне передан запрос"),
    "notice_deadline_near": ("A response deadline is near", "Скоро истекает срок ответа"),
    "second_factor": ("Two-factor authentication", "Двухфакторная аутентификация"),
    "second_factor_intro": (
        "Logging in will also need a one-time code from an authenticator app.",
        "Для входа понадобится ещё одноразовый код из приложения-аутентификатора.",
    ),
    "second_factor_start": ("Set it up", "Настроить"),
    "second_factor_scan": (
        "Add this key to your authenticator app (the link, or the secret by hand), then"
        " enter the code it shows.",
        "Добавьте ключ в приложение-аутентификатор (ссылкой или секретом вручную) и"
        " введите код, который оно покажет.",
    ),
    "second_factor_secret": ("Secret", "Секрет"),
    "second_factor_code": ("Code", "Код"),
    "second_factor_confirm": ("Turn it on", "Включить"),
    "second_factor_done": (
        "Two-factor authentication is on. Keep these recovery codes somewhere safe: each"
        " works once instead of a code, and they are shown only now.",
        "Двухфакторная аутентификация включена. Сохраните коды восстановления: каждый"
        " заменяет код один раз, и показываются они только сейчас.",
    ),
    "second_factor_off": ("Turn it off", "Выключить"),
    "second_factor_off_hint": (
        "To turn it off, enter a current code or a recovery code.",
        "Чтобы выключить, введите текущий код или код восстановления.",
    ),
    "second_factor_off_done": (
        "Two-factor authentication is off.",
        "Двухфакторная аутентификация выключена.",
    ),
    "second_factor_required": (
        "Set up two-factor authentication to continue.",
        "Чтобы продолжить, настройте двухфакторную аутентификацию.",
    ),
    "viewers": ("Who could see this at …", "Кто мог видеть это на момент …"),
    "viewers_at": ("Moment (UTC)", "Момент (UTC)"),
    "viewers_show": ("Show", "Показать"),
    "viewers_title": ("Who could see this request at {at}", "Кто мог видеть запрос на {at}"),
    "viewers_not_yet": (
        "The request did not exist yet at that moment.",
        "На тот момент запроса ещё не было.",
    ),
    "viewers_history_from": (
        "Access history is kept from {at}; before that this list may be incomplete.",
        "История доступа хранится с {at}; до этого список может быть неполным.",
    ),
    "why": ("Why", "Почему"),
    "reason_full_access": ("full access", "полный доступ"),
    "reason_all_departments": (
        "right “requests of all departments”",
        "право «запросы всех отделов»",
    ),
    "reason_department": ("member of the request's department", "сотрудник отдела запроса"),
    "reason_assignee": ("assignee", "ответственный"),
    "reason_messages": ("may message clients", "может писать клиентам"),
    "reason_client": ("the request's client", "клиент запроса"),
    "reason_company_manager": ("the company's client manager", "менеджер компании клиента"),
    "access_since": ("Access as of", "Доступ по состоянию на"),
}


def translate(lang: str, key: str, **values: Any) -> str:
    words = WORDS.get(key)
    if words is None:
        return key
    text = words[1] if lang == "ru" and words[1] else words[0]
    return text.format(**values) if values else text


def pick(value: Any, lang: str) -> str:
    """A ``{"en","ru"}`` text from an API in ``lang`` (English when the other is empty)."""
    if isinstance(value, Mapping):
        chosen = value.get(lang) or value.get("en") or ""
        return str(chosen)
    return "" if value is None else str(value)


def preferred(accept_language: str | None) -> str:
    """The first of our languages the browser asks for; English otherwise."""
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return "en"
