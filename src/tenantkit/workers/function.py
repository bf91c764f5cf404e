"""``TenantApp`` and the ``@tenant_function`` decorator.

A tenant function is a plain Python function (sync or async) whose
parameters become the request body, validated from their type hints with
pydantic, the way FastAPI validates a route's body. A parameter annotated
:class:`~tenantkit.workers.context.TenantContext` receives the caller's
context and is never read from the body::

    app = TenantApp("multi-tenant-saas")

    @app.tenant_function(timeout=30, tiers={"pro", "enterprise"})
    def analyze(items: list[float], ctx: TenantContext) -> dict[str, float]:
        return {"mean": sum(items) / len(items)}

The decorator returns the function itself, still callable as plain Python;
tenantkit keeps its own record in ``app.functions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar, overload

import pydantic
import pydantic_core
from pydantic import BaseModel, ConfigDict

from tenantkit.config import DEFAULT_TIERS, Tier
from tenantkit.errors import ConfigurationError, ValidationError
from tenantkit.workers.context import TenantContext
from tenantkit.workers.options import FunctionOptions, validate_options

__all__ = [
    "InvalidArguments",
    "TenantApp",
    "TenantFunction",
    "current_app",
    "may_hold_non_finite",
    "non_finite_errors",
    "tenant_function",
]

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__tenant_function__"
_BASE_ATTRS = frozenset(dir(BaseModel))

_DIGITS_TO_ZERO = bytes.maketrans(b"123456789E", b"000000000e")
_LONG_DIGIT_RUN = b"0" * 200
_NON_FINITE_MSG = "Input should be a finite number (JSON has no NaN or Infinity)"
_MAX_REPORTED = 20


def may_hold_non_finite(body: bytes) -> bool:
    """Whether a JSON body might hold a number that is not finite (a byte scan).

    ``False`` is certain: the body has no ``NaN`` or ``Infinity`` token, and
    no number literal that could overflow a float (that takes an exponent of
    100 or more, or an integer part of 200 digits or more). ``True`` only
    means the parsed value is worth walking with :func:`non_finite_errors`.
    The scan runs at C speed (about 3 ms a MiB) and costs nothing measurable
    on small bodies.
    """
    scan = body.translate(_DIGITS_TO_ZERO, b"+")
    return b"NaN" in scan or b"Infinity" in scan or b"e000" in scan or _LONG_DIGIT_RUN in scan


def non_finite_errors(value: Any, prefix: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Where parsed JSON holds a float that is NaN or infinite (``finite_number`` errors).

    Python's JSON parsers accept ``NaN``, ``Infinity`` and ``-Infinity``
    tokens and turn a literal like ``1e400`` into ``inf``; none of them is a
    JSON number, so the gateway refuses them (422) wherever they are, even
    in a parameter typed ``Any``. At most 20 places are reported.
    """
    errors: list[dict[str, Any]] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, tuple(prefix))]
    while stack and len(errors) < _MAX_REPORTED:
        item, loc = stack.pop()
        if isinstance(item, float):
            if item != item or item in (math.inf, -math.inf):
                errors.append({"loc": list(loc), "msg": _NON_FINITE_MSG, "type": "finite_number"})
        elif isinstance(item, dict):
            stack.extend((v, (*loc, k)) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, (*loc, i)) for i, v in reversed(list(enumerate(item))))
    return errors


def _refuse_non_finite(errors: list[dict[str, Any]]) -> InvalidArguments:
    count = len(errors)
    return InvalidArguments(
        f"{count} number{'s' if count != 1 else ''} not finite: JSON has no NaN or "
        "Infinity, and numbers must fit a 64-bit float",
        errors,
    )


class InvalidArguments(ValidationError):
    """A call's arguments do not match the function's signature.

    Attributes:
        errors: One entry per problem: ``loc`` (where), ``msg`` and ``type``.
    """

    code = "invalid-arguments"
    title = "Invalid arguments"

    def __init__(self, message: str, errors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.errors = [dict(e) for e in errors]

    def problem_extras(self) -> dict[str, Any]:
        return {"errors": self.errors}

    @classmethod
    def from_pydantic(cls, exc: pydantic.ValidationError, prefix: tuple[Any, ...] = ()) -> Any:
        errors = [
            {"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        count = len(errors)
        return cls(f"{count} invalid argument{'s' if count != 1 else ''}", errors)


@dataclass(eq=False)
class TenantFunction:
    """tenantkit's record of one decorated function.

    Attributes:
        name: The name callers use (``task_type`` in ``/process``).
        fn: The user's function, unchanged.
        options: The decorator's validated options.
        input_model: Pydantic model of the body (every parameter but the context).
        is_async: Whether ``fn`` is a coroutine function.
        context_param: Name of the parameter receiving the context, if any.
        aliases: Body field name -> parameter name, where they differ.
    """

    name: str
    fn: Callable[..., Any]
    options: FunctionOptions
    input_model: type[BaseModel]
    is_async: bool
    context_param: str | None
    parameters: tuple[str, ...] = ()
    description: str | None = None
    return_annotation: Any = None
    _output_schema: dict[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def build(cls, fn: Callable[..., Any], name: str, options: FunctionOptions) -> TenantFunction:
        """Inspect ``fn`` and build its record.

        Raises:
            ConfigurationError: for signatures a body cannot express.
        """
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            raise ConfigurationError(f"tenant function {name!r}: generators are not supported")
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception as exc:
            raise ConfigurationError(
                f"tenant function {name!r}: cannot resolve its type hints ({exc})"
            ) from exc
        signature = inspect.signature(fn)
        fields: dict[str, Any] = {}
        context_param: str | None = None
        parameters: list[str] = []
        for param in signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
                raise ConfigurationError(
                    f"tenant function {name!r}: parameter {param.name!r} must be a plain "
                    "named parameter (no *args, **kwargs or positional-only)"
                )
            annotation = hints.get(param.name, Any)
            if _is_context(annotation):
                if context_param is not None:
                    raise ConfigurationError(
                        f"tenant function {name!r}: only one TenantContext parameter is allowed"
                    )
                context_param = param.name
                continue
            default = ... if param.default is param.empty else param.default
            parameters.append(param.name)
            if param.name in _BASE_ATTRS or param.name.startswith("_"):
                fields[f"p_{param.name}"] = (
                    annotation,
                    pydantic.Field(default, alias=param.name),
                )
            else:
                fields[param.name] = (annotation, default)
        model_name = "".join(part.capitalize() for part in name.replace("-", "_").split("_"))
        try:
            model = pydantic.create_model(
                f"{model_name or 'Function'}Input",
                __config__=ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False),
                **fields,
            )
        except Exception as exc:
            raise ConfigurationError(
                f"tenant function {name!r}: its parameters cannot be validated ({exc})"
            ) from exc
        return cls(
            name=name,
            fn=fn,
            options=options,
            input_model=model,
            is_async=inspect.iscoroutinefunction(fn),
            context_param=context_param,
            parameters=tuple(parameters),
            description=inspect.getdoc(fn),
            return_annotation=hints.get("return"),
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # The pydantic model is rebuilt on the other side (it is created at run time).
        return (TenantFunction.build, (self.fn, self.name, self.options))

    def validate(self, data: Any, *, check_finite: bool = True) -> dict[str, Any]:
        """Validate a body (already parsed JSON) into keyword arguments.

        Args:
            data: The parsed body.
            check_finite: Refuse NaN and infinite floats anywhere in ``data``
                (a walk of the whole value). Pass ``False`` when
                :func:`may_hold_non_finite` said the raw body cannot hold one;
                float parameters refuse them either way.

        Raises:
            InvalidArguments: with one entry per problem.
        """
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InvalidArguments(
                "the arguments must be a JSON object",
                [{"loc": [], "msg": "Input should be an object", "type": "dict_type"}],
            )
        if check_finite and (errors := non_finite_errors(data)):
            raise _refuse_non_finite(errors)
        try:
            model = self.input_model.model_validate(data)
        except pydantic.ValidationError as exc:
            raise InvalidArguments.from_pydantic(exc) from None
        return self._arguments(model)

    def validate_json(self, body: bytes) -> dict[str, Any]:
        """Validate a raw JSON body into keyword arguments (one pass, no ``json.loads``).

        A body holding a non-finite number (``NaN``, ``Infinity``, ``1e400``)
        is refused with ``finite_number`` errors, wherever the number is.
        """
        if not body.strip():
            return self.validate({})
        if may_hold_non_finite(body):
            try:
                parsed = pydantic_core.from_json(body)
            except ValueError:
                parsed = None  # not JSON: model_validate_json says so below
            if errors := non_finite_errors(parsed):
                raise _refuse_non_finite(errors)
        try:
            model = self.input_model.model_validate_json(body)
        except pydantic.ValidationError as exc:
            raise InvalidArguments.from_pydantic(exc) from None
        return self._arguments(model)

    def _arguments(self, model: BaseModel) -> dict[str, Any]:
        values = model.__dict__
        out: dict[str, Any] = {}
        for param in self.parameters:
            out[param] = values[param] if param in values else values[f"p_{param}"]
        return out

    def bind(self, arguments: Mapping[str, Any], ctx: TenantContext) -> dict[str, Any]:
        """Keyword arguments for ``fn``: the validated arguments plus the context."""
        kwargs = dict(arguments)
        if self.context_param is not None:
            kwargs[self.context_param] = ctx
        return kwargs

    def invoke(self, arguments: dict[str, Any], ctx: TenantContext) -> Any:
        """Call the function synchronously (an async one runs to completion here)."""
        result = self.fn(**self.bind(arguments, ctx))
        if self.is_async:
            return asyncio.run(result)
        return result

    async def ainvoke(self, arguments: dict[str, Any], ctx: TenantContext) -> Any:
        """Await an async function (for sync ones use :meth:`invoke` in a thread)."""
        return await self.fn(**self.bind(arguments, ctx))

    def input_schema(self, ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
        """JSON Schema of the request body."""
        return self.input_model.model_json_schema(by_alias=True, ref_template=ref_template)

    def output_schema(self, ref_template: str = "#/$defs/{model}") -> dict[str, Any] | None:
        """JSON Schema of the return value, where the annotation allows one."""
        if self.return_annotation in (None, Any, type(None)):
            return None
        try:
            return pydantic.TypeAdapter(self.return_annotation).json_schema(
                ref_template=ref_template
            )
        except Exception:
            return None


def _is_context(annotation: Any) -> bool:
    if annotation is TenantContext:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_context(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):  # TenantContext | None
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(members) == 1 and _is_context(members[0])
    return False


_current: TenantApp | None = None


def current_app() -> TenantApp:
    """The most recently created :class:`TenantApp` (one is made if there is none)."""
    global _current
    if _current is None:
        _current = TenantApp("tenantkit")
    return _current


class TenantApp:
    """A multi-tenant API: a name, a tier table and tenant functions.

    Args:
        name: App name (the Modal app name on deploy).
        tiers: Tier table; defaults to the seed's free/pro/enterprise.
        requirements: pip requirements for the deployed image.
        secrets: Names of Modal Secrets every function gets.

    Example:
        >>> app = TenantApp("demo")
        >>> @app.tenant_function(timeout=10)
        ... def double(x: int) -> int:
        ...     return 2 * x
        >>> double(21), sorted(app.functions)
        (42, ['double'])
    """

    def __init__(
        self,
        name: str,
        *,
        tiers: Mapping[str, Tier] | None = None,
        requirements: Sequence[str] = (),
        secrets: Sequence[str] = (),
    ) -> None:
        global _current
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError("a TenantApp needs a non-empty name")
        self.name = name
        self.tiers: Mapping[str, Tier] = MappingProxyType(
            dict(tiers if tiers is not None else DEFAULT_TIERS)
        )
        if not self.tiers:
            raise ConfigurationError(f"app {name!r}: the tier table is empty")
        for key, tier in self.tiers.items():
            if key != tier.name:
                raise ConfigurationError(
                    f"app {name!r}: tier table key {key!r} differs from its tier's name"
                )
        self.requirements = tuple(requirements)
        self.secrets = tuple(secrets)
        self._functions: dict[str, TenantFunction] = {}
        _current = self

    @property
    def functions(self) -> Mapping[str, TenantFunction]:
        """The registered functions by name."""
        return MappingProxyType(self._functions)

    def get(self, name: str) -> TenantFunction | None:
        return self._functions.get(name)

    def __repr__(self) -> str:
        return f"TenantApp({self.name!r}, functions={sorted(self._functions)})"

    @overload
    def tenant_function(self, fn: F, /) -> F: ...

    @overload
    def tenant_function(
        self,
        fn: None = None,
        /,
        *,
        gpu: str | None = None,
        timeout: float = 300,
        memory: int | None = None,
        cpu: float | None = None,
        tiers: Iterable[str] | None = None,
        path: str | None = None,
        name: str | None = None,
        retries: int = 0,
        secrets: Sequence[str] = (),
    ) -> Callable[[F], F]: ...

    def tenant_function(
        self,
        fn: F | None = None,
        /,
        *,
        gpu: str | None = None,
        timeout: float = 300,
        memory: int | None = None,
        cpu: float | None = None,
        tiers: Iterable[str] | None = None,
        path: str | None = None,
        name: str | None = None,
        retries: int = 0,
        secrets: Sequence[str] = (),
    ) -> F | Callable[[F], F]:
        """Register a function as a tenant function of this app.

        Args:
            gpu: Modal GPU string (``"A100"``, ``"H100:2"``, ``"any"`` ...).
            timeout: Seconds before a call is stopped with 504.
            memory: MiB of memory (Modal).
            cpu: CPU cores (Modal).
            tiers: Tiers that may call it; others get 403.
            path: Also serve it on its own route, e.g. ``"/inference"``.
            name: Name callers use; defaults to the function's name.
            retries: Extra attempts when the function raises.
            secrets: Modal Secret names for this function.

        Raises:
            ConfigurationError: for an invalid option, a duplicate name or path,
                or a signature that cannot be a request body.
        """

        def register(func: F) -> F:
            if not callable(func):
                raise ConfigurationError(f"@tenant_function needs a function, not {func!r}")
            fname = name if name is not None else getattr(func, "__name__", "")
            options = validate_options(
                name=fname,
                gpu=gpu,
                timeout=timeout,
                memory=memory,
                cpu=cpu,
                tiers=tiers,
                path=path,
                retries=retries,
                secrets=secrets,
                known_tiers=self.tiers,
            )
            if fname in self._functions:
                raise ConfigurationError(f"app {self.name!r}: a function named {fname!r} exists")
            if options.path is not None:
                for other in self._functions.values():
                    if other.options.path == options.path:
                        raise ConfigurationError(
                            f"app {self.name!r}: path {options.path!r} is already "
                            f"served by {other.name!r}"
                        )
            record = TenantFunction.build(func, fname, options)
            self._functions[fname] = record
            with contextlib.suppress(AttributeError, TypeError):
                setattr(func, _MARK, record)
            return func

        if fn is not None:
            return register(fn)
        return register


@overload
def tenant_function(fn: F, /) -> F: ...


@overload
def tenant_function(
    fn: None = None,
    /,
    *,
    gpu: str | None = None,
    timeout: float = 300,
    memory: int | None = None,
    cpu: float | None = None,
    tiers: Iterable[str] | None = None,
    path: str | None = None,
    name: str | None = None,
    retries: int = 0,
    secrets: Sequence[str] = (),
) -> Callable[[F], F]: ...


def tenant_function(
    fn: F | None = None,
    /,
    *,
    gpu: str | None = None,
    timeout: float = 300,
    memory: int | None = None,
    cpu: float | None = None,
    tiers: Iterable[str] | None = None,
    path: str | None = None,
    name: str | None = None,
    retries: int = 0,
    secrets: Sequence[str] = (),
) -> F | Callable[[F], F]:
    """Register a function on the most recently created :class:`TenantApp`.

    Same options as :meth:`TenantApp.tenant_function`.
    """
    decorator = current_app().tenant_function(
        gpu=gpu,
        timeout=timeout,
        memory=memory,
        cpu=cpu,
        tiers=tiers,
        path=path,
        name=name,
        retries=retries,
        secrets=secrets,
    )
    if fn is not None:
        return decorator(fn)
    return decorator


def function_record(fn: Callable[..., Any]) -> TenantFunction | None:
    """tenantkit's record of a decorated function (``None`` if it is not one)."""
    record = getattr(fn, _MARK, None)
    return record if isinstance(record, TenantFunction) else None
