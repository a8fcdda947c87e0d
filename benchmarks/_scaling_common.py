"""Scaling benchmark's shared parts: strategy variants, the key of a point, batch and labels.

:mod:`benchmarks.bench_scaling` re-exports them.
"""

import ast

BATCH = 500
N_LABELED = 1000


def _registry():
    from benchmarks import label_efficiency

    return label_efficiency


def parse_strategy(spec):
    """``"name"`` or ``"name@param=value,param=value"`` -> ``(name, params)``.

    Examples
    --------
    >>> parse_strategy("dfal@candidate_factor=10,preselect='random'")
    ('dfal', {'candidate_factor': 10, 'preselect': 'random'})
    >>> parse_strategy("margin")
    ('margin', {})
    """
    name, _, rest = spec.partition("@")
    params = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"strategy variant {spec!r}: expected param=value, got {item!r}.")
        try:
            params[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            params[key.strip()] = value.strip()  # a bare word is a string
    return name, params


def make_strategy(spec):
    """The strategy of a registry name or variant, seeded (``random_state=0``)."""
    name, params = parse_strategy(spec)
    strategy = _registry().make_strategy(name)
    if "random_state" in strategy.get_params():
        params.setdefault("random_state", 0)
    return strategy.set_params(**params)


def family(spec):
    """A strategy's family: the registry module it comes from (``uncertainty``, ``dfal``, ...)."""
    name = parse_strategy(spec)[0]
    module = _registry().STRATEGIES.get(name, ("?",))[0]
    return module.rsplit(".", 1)[-1]


def point_key(spec, n):
    """The JSON key of one point.

    Examples
    --------
    >>> point_key("margin", 10000)
    'margin|10000'
    """
    return f"{spec}|{int(n)}"
