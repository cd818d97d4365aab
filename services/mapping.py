"""Between spyne objects and the plain dicts the bus carries (zeep's shape, wsdl/examples/'s shape).

A complex value is a dict of its element names; a repeated element is a list; an ``Array``
(a wrapper element around repeated children) is a dict holding that list under the child's
name, as zeep gives it. ``None`` values are left out.
"""
from __future__ import annotations

from spyne.model import ComplexModelBase
from spyne.model.complex import Array


def _is_array(cls) -> bool:
    return isinstance(cls, type) and issubclass(cls, Array)


def _is_complex(cls) -> bool:
    return isinstance(cls, type) and issubclass(cls, ComplexModelBase)


def _many(cls) -> bool:
    max_occurs = cls.Attributes.max_occurs  # an int, or Decimal('inf') for "unbounded"
    return max_occurs == "unbounded" or max_occurs > 1


def to_dict(value, cls):
    """A spyne value of type ``cls`` as plain data."""
    if value is None:
        return None
    if _is_array(cls):
        (name, member), = cls._type_info.items()
        return {name: [to_dict(v, member) for v in value]}
    if _is_complex(cls):
        out = {}
        for name, member in cls.get_flat_type_info(cls).items():
            v = getattr(value, name, None)
            if v is None:
                continue
            out[name] = [to_dict(x, member) for x in v] if _many(member) else to_dict(v, member)
        return out
    return value


def from_dict(data, cls):
    """Plain data as a spyne value of type ``cls`` (the inverse of :func:`to_dict`)."""
    if data is None:
        return None
    if _is_array(cls):
        (name, member), = cls._type_info.items()
        items = data.get(name) if isinstance(data, dict) else data
        return [from_dict(v, member) for v in (items or [])]
    if _is_complex(cls):
        info = cls.get_flat_type_info(cls)
        kwargs = {}
        for name, v in data.items():
            member = info.get(name)
            if member is None or v is None:
                continue
            if _many(member):
                kwargs[name] = [from_dict(x, member) for x in (v if isinstance(v, list) else [v])]
            else:
                kwargs[name] = from_dict(v, member)
        return (getattr(cls, "__orig__", None) or cls)(**kwargs)
    return data
