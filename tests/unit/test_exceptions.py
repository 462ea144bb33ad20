"""Every concurdeploy exception crosses a process boundary (pickle) with its fields intact."""

from __future__ import annotations

import inspect
import pickle

import pytest

from concurdeploy import exceptions as ex

#: A sample value per constructor parameter name; a new parameter must be added here.
SAMPLES = {
    "message": "something is wrong\nsecond line",
    "path": "/srv/inv/hosts.yaml",
    "line": 12,
    "key": "port",
    "output": "validator said: line 3: bad",
    "exit_status": 4,
    "hosts": ["lb1", "lb2"],
    "signum": 15,
}


def all_classes() -> list[type]:
    return [getattr(ex, name) for name in ex.__all__]


def build(cls: type) -> BaseException:
    """Instantiate ``cls`` with a sample for every constructor parameter."""
    try:
        signature = inspect.signature(cls)
    except ValueError:  # no own __init__: BaseException(*args)
        return cls(SAMPLES["message"])
    params = [p for p in signature.parameters.values()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not params:  # plain Exception.__init__(*args)
        return cls(SAMPLES["message"])
    missing = [p.name for p in params if p.name not in SAMPLES]
    assert not missing, f"{cls.__name__}: add samples for {missing} to SAMPLES"
    return cls(**{p.name: SAMPLES[p.name] for p in params})


def test_every_error_class_is_exported():
    defined = {name for name, obj in vars(ex).items()
               if isinstance(obj, type) and issubclass(obj, ex.ConcurdeployError)}
    assert defined == set(ex.__all__)


@pytest.mark.parametrize("cls", all_classes(), ids=lambda c: c.__name__)
def test_round_trips_through_pickle_with_its_fields(cls):
    err = build(cls)
    err.transient = True  # attributes set after construction travel too (e.g. by connection.py)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert back.args == err.args
    assert vars(back) == vars(err)
    assert str(back) == str(err)
    assert back.transient is True
    for base in cls.__mro__:  # still catchable as every built-in base (KeyError, OSError, …)
        assert isinstance(back, base)


@pytest.mark.parametrize("cls", [c for c in all_classes() if issubclass(c, ex.HostError)],
                         ids=lambda c: c.__name__)
def test_host_errors_keep_message_output_and_status(cls):
    back = pickle.loads(pickle.dumps(build(cls)))
    assert back.message == SAMPLES["message"]
    assert back.output == SAMPLES["output"]
    assert back.status == ("unreachable" if issubclass(cls, ex.HostUnreachable) else "failed")
    if issubclass(cls, ex.RemoteCommandFailed):
        assert back.exit_status == SAMPLES["exit_status"]


@pytest.mark.parametrize("cls", [c for c in all_classes() if issubclass(c, ex.InventoryError)],
                         ids=lambda c: c.__name__)
def test_inventory_errors_keep_file_line_key(cls):
    back = pickle.loads(pickle.dumps(build(cls)))
    assert (back.path, back.line, back.key) == ("/srv/inv/hosts.yaml", 12, "port")
    assert str(back).startswith("/srv/inv/hosts.yaml:12: key 'port': something is wrong")
    assert isinstance(back, ex.UsageError)


def test_hosts_failed_keeps_hosts():
    back = pickle.loads(pickle.dumps(ex.HostsFailed(("a", "b"))))
    assert back.hosts == ["a", "b"]
    assert str(back) == "2 host(s) failed or unreachable: a, b"


def test_host_unreachable_is_an_oserror_without_errno_confusion():
    back = pickle.loads(pickle.dumps(ex.HostUnreachable("connect to x:22: Connection refused")))
    assert isinstance(back, OSError)
    assert str(back) == "connect to x:22: Connection refused"
    assert back.status == "unreachable"


def test_unknown_group_str_is_not_a_repr():
    err = ex.UnknownGroup("group 'web' is not defined", "/i.yaml", 3, "web")
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == "/i.yaml:3: key 'web': group 'web' is not defined"  # KeyError would quote it
    assert isinstance(back, KeyError)
