"""The syntax of a campaign's ``schedule.cron``: five crontab fields, each checked on its own so an error
names the field (when such a time falls is :mod:`campaigns.cron`'s business)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class _CronField:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i


_CRON_FIELDS = (
    _CronField("minute", 0, 59),
    _CronField("hour", 0, 23),
    _CronField("day", 1, 31),
    _CronField(
        "month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    ),
    _CronField("weekday", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")),
)


def check_cron(expression: str) -> str:
    """A five-field crontab expression (minute hour day month weekday), checked field by field.

    Each field is ``*``, a value, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma list of those;
    months and weekdays may be names (``jan``, ``mon-fri``). Weekday numbers follow cron: 0 and 7 are
    Sunday.

    :returns: the expression with its fields separated by single spaces.
    :raises ValueError: naming the field at fault.
    """
    fields = expression.split()
    if len(fields) != len(_CRON_FIELDS):
        raise ValueError(
            f"{expression!r}: a cron expression has 5 fields (minute hour day month weekday), "
            f"not {len(fields)}; e.g. '0 9 1 * *' is 9:00 on the 1st of every month"
        )
    for text, spec in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            problem = _cron_item_problem(item, spec)
            if problem:
                raise ValueError(f"{expression!r}: {spec.name} field {text!r}: {problem}")
    return " ".join(fields)


def _cron_item_problem(item: str, spec: _CronField) -> str | None:
    body, slash, step = item.partition("/")
    if slash and not (step.isdigit() and int(step) >= 1):
        return f"step {step!r} must be a whole number of at least 1"
    if body == "*":
        return None
    low_text, dash, high_text = body.partition("-")
    if slash and not dash:
        return f"a step needs '*' or a range before it ('*/{step}' or 'a-b/{step}')"
    low = _cron_value(low_text, spec)
    high = _cron_value(high_text, spec) if dash else low
    if low is None or high is None:
        bad = low_text if low is None else high_text
        return f"expected {_cron_range(spec)}, got {bad!r}"
    if low > high:
        return f"range {body!r} runs backwards"
    return None


def _cron_value(text: str, spec: _CronField) -> int | None:
    if text.isdigit():
        value = int(text)
        return value if spec.low <= value <= spec.high else None
    lowered = text.lower()
    return spec.low + spec.names.index(lowered) if lowered in spec.names else None


def _cron_range(spec: _CronField) -> str:
    names = f" or {spec.names[0]}-{spec.names[-2 if spec.name == 'weekday' else -1]}" if spec.names else ""
    return f"{spec.low}-{spec.high}{names}"
