"""Filter expressions and typed attribute values (docs/python.md "Filters").

A filter is a dict in LangChain's (and MongoDB's) filter language, turned into the request's
``where`` (``FilterExpression``):

>>> where({"source": "wiki", "year": {"$gte": 2021}})
>>> where({"$or": [{"lang": {"$in": ["en", "de"]}}, {"translated": True}]})

* ``{"key": value}`` is ``$eq``; several keys in one dict are ANDed;
* ``{"key": {"$eq"|"$ne"|"$gt"|"$gte"|"$lt"|"$lte": value}}``, ``{"$in"|"$nin": [values]}``,
  ``{"$exists": True|False}``, ``{"$contains"|"$contain": "x"}`` (a list attribute holds "x"),
  ``{"$prefix": "ab"}`` (also ``{"$like": "ab%"}``: a prefix pattern only);
* ``{"$and": [...]}``, ``{"$or": [...]}``, ``{"$not": {...}}`` (``{"$not": [...]}``: none of
  the filters holds);
* ``entity_type`` and ``entity_id`` are the entity's own fields.

Values: ``bool``, ``int``, ``float``, ``str``, ``datetime`` (a timestamp) and, for attributes,
lists of strings. Anything else (an unknown ``$`` operator, a ``$like`` pattern that is not a
prefix, a dict value) raises ``ValueError`` naming it: a filter never silently matches nothing.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Mapping, Union

from ._proto import allidb_pb2 as pb

__all__ = ["attribute_value", "from_attribute_value", "where", "FilterLike"]

#: A filter dict, or a ready ``FilterExpression``.
FilterLike = Union[Mapping[str, Any], "pb.FilterExpression"]

_COMPARISONS = {"$eq": "eq", "$ne": "ne", "$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _nanos(value: _dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def attribute_value(value: Any, where_: str = "value") -> "pb.AttributeValue":
    """The typed value of ``value`` (``where_`` names it in errors)."""
    if isinstance(value, bool):
        return pb.AttributeValue(bool_value=value)
    if isinstance(value, int):
        return pb.AttributeValue(int_value=value)
    if isinstance(value, float):
        return pb.AttributeValue(double_value=value)
    if isinstance(value, str):
        return pb.AttributeValue(string_value=value)
    if isinstance(value, _dt.datetime):
        nanos = _nanos(value)
        if not -(2**63) <= nanos < 2**63:
            raise ValueError(f"{where_}: {value!r} is outside the timestamps of 64-bit nanoseconds")
        return pb.AttributeValue(timestamp_nanos=nanos)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return pb.AttributeValue(string_list=pb.StringList(values=list(value)))
    raise ValueError(
        f"{where_}: {value!r} is not a filterable value (bool, int, float, str, datetime or a "
        "list of str)"
    )


def from_attribute_value(value: "pb.AttributeValue") -> Any:
    """The Python value of a typed attribute (timestamps as UTC datetimes)."""
    if value.HasField("timestamp_nanos"):
        return _EPOCH + _dt.timedelta(microseconds=value.timestamp_nanos // 1_000)
    if value.HasField("string_list"):
        return list(value.string_list.values)
    for name in ("string_value", "int_value", "double_value", "bool_value"):
        if value.HasField(name):
            return getattr(value, name)
    return None


def _condition(field: str, value: Any, path: str) -> "pb.FieldCondition":
    if isinstance(value, (list, tuple)):
        raise ValueError(f"{path}: compares with one value, got a list (use $in)")
    return pb.FieldCondition(field=field, value=attribute_value(value, path))


def _field(field: str, spec: Any, path: str) -> "pb.FilterExpression":
    """The expression of one ``field: spec`` entry."""
    if not isinstance(spec, Mapping):
        return pb.FilterExpression(eq=_condition(field, spec, path))
    if not spec:
        raise ValueError(f"{path}: an empty operator dict")
    parts = []
    for op, value in spec.items():
        at = f"{path}.{op}"
        if op in _COMPARISONS:
            parts.append(pb.FilterExpression(**{_COMPARISONS[op]: _condition(field, value, at)}))
        elif op in ("$in", "$nin"):
            if not isinstance(value, (list, tuple, set)):
                raise ValueError(f"{at}: needs a list, got {value!r}")
            values = [attribute_value(v, f"{at}[{i}]") for i, v in enumerate(value)]
            parts.append(
                pb.FilterExpression(**{op[1:]: pb.FieldValues(field=field, values=values)})
            )
        elif op == "$exists":
            if not isinstance(value, bool):
                raise ValueError(f"{at}: needs True or False, got {value!r}")
            exists = pb.FilterExpression(exists=field)
            parts.append(exists if value else pb.FilterExpression(**{"not": exists}))
        elif op in ("$contains", "$contain"):
            if not isinstance(value, str):
                raise ValueError(f"{at}: needs a string, got {value!r}")
            parts.append(pb.FilterExpression(contains=_condition(field, value, at)))
        elif op == "$prefix":
            parts.append(pb.FilterExpression(prefix=_condition(field, value, at)))
        elif op == "$like":
            if (
                not isinstance(value, str)
                or not value.endswith("%")
                or any(c in value[:-1] for c in "%_")
            ):
                raise ValueError(f"{at}: only prefix patterns ('abc%') are supported, got {value!r}")
            parts.append(pb.FilterExpression(prefix=_condition(field, value[:-1], at)))
        elif op == "$not":
            parts.append(pb.FilterExpression(**{"not": _field(field, value, at)}))
        else:
            raise ValueError(f"{at}: unknown operator {op!r}")
    return parts[0] if len(parts) == 1 else pb.FilterExpression(**{"and": parts})


def _expression(spec: Any, path: str) -> "pb.FilterExpression":
    if not isinstance(spec, Mapping):
        raise ValueError(f"{path}: a filter is a dict, got {spec!r}")
    if not spec:
        raise ValueError(f"{path}: an empty filter")
    parts = []
    for key, value in spec.items():
        at = f"{path}.{key}"
        if key in ("$and", "$or"):
            if not isinstance(value, (list, tuple)) or not value:
                raise ValueError(f"{at}: needs a non-empty list of filters")
            operands = [_expression(v, f"{at}[{i}]") for i, v in enumerate(value)]
            parts.append(pb.FilterExpression(**{key[1:]: operands}))
        elif key == "$not" and isinstance(value, (list, tuple)):
            # A list: none of the filters holds (what LangChain's PGVector store does).
            if not value:
                raise ValueError(f"{at}: needs a filter or a non-empty list of filters")
            for i, v in enumerate(value):
                parts.append(pb.FilterExpression(**{"not": _expression(v, f"{at}[{i}]")}))
        elif key == "$not":
            parts.append(pb.FilterExpression(**{"not": _expression(value, at)}))
        elif key.startswith("$"):
            raise ValueError(f"{at}: unknown operator {key!r}")
        else:
            parts.append(_field(str(key), value, at))
    return parts[0] if len(parts) == 1 else pb.FilterExpression(**{"and": parts})


def where(filter: FilterLike) -> "pb.FilterExpression":
    """The ``FilterExpression`` of a filter dict (see the module documentation); a
    ``FilterExpression`` is returned as it is."""
    if isinstance(filter, pb.FilterExpression):
        return filter
    return _expression(filter, "filter")
