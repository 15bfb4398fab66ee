"""Public factories returning ZenML steps: ``resource_step``, ``volume_step``, ``snapshot_step``, ``delete_step``.

Every option is validated when the factory is called (pipeline definition
time), so bad input never reaches the cluster. The options every kind shares
(namespace, conditions, timeout, fail_on_events, cleanup, kubeconfig, context)
are taken from the keyword arguments once, as a
:class:`~k8s_step_operator.steps.resource_spec.StepOptions` whose defaults are
the kind's (``RESOURCE_OPTIONS``, ``VOLUME_OPTIONS``, ...), and handed to the
spec builder. Inputs that may come from
earlier steps are step inputs, bound when the step is called in the pipeline::

    from k8s_step_operator.steps import (
        VOLUME_MODE_RWO, cleanup_run_resources, resource_step, snapshot_step, volume_step,
    )

    make_volume = volume_step("data", size="1Gi", storage_class="standard")
    take_snapshot = snapshot_step("snap")
    restore = volume_step("restored", storage_class="standard")

    @pipeline(on_success=cleanup_run_resources, on_failure=cleanup_run_resources)
    def p():
        name, manifest, size = make_volume()
        snap, _, _ = take_snapshot(volume=name)        # runs after make_volume
        restore(data_source=snap)                      # restores the snapshot

Outputs are ZenML artifacts: ``name`` (str), ``manifest`` (dict), then the
attribute outputs (resource steps) or ``size`` (volume: bound capacity;
snapshot: restoreSize). The steps run in the orchestrator's process and talk
to the cluster of the stack's ``k8s`` step operator (see :mod:`.cluster`).

The whole configuration (``k8s_resource`` included) is stored as the step's
``spec`` parameter in ZenML, visible to anyone who can read the run: reference
Secrets from manifests instead of inlining secret values.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

from zenml.steps import BaseStep
from zenml.utils import source_utils

from .bindings import placeholders, refuse_unknown
from .cel_values import CEL_OUTPUT, build_cel_spec, check_cel_call
from .custom_task_spec import CUSTOM_TASK_OPTIONS, REQUIRED, build_custom_task_spec
from .entrypoints import entrypoint_for
from .resource_list import build_resource_list_spec
from .resource_spec import (
    DELETE_OPTIONS,
    RESOURCE_OPTIONS,
    ResourceSpecError,
    build_resource_spec,
    is_object_list,
    read_resource,
)
from .volume_spec import (
    SNAPSHOT_INPUTS,
    SNAPSHOT_OPTIONS,
    VOLUME_INPUTS,
    VOLUME_MODE_RWO,
    VOLUME_OPTIONS,
    build_snapshot_spec,
    build_volume_spec,
    parse_data_source,
)

__all__ = [
    "KubeApiStep",
    "cel_step",
    "custom_task_step",
    "delete_step",
    "resource_step",
    "snapshot_step",
    "volume_step",
]

_RESERVED_CALL_ARGS = ("id", "after", "start_after")
CallCheck = Callable[[Mapping[str, Any]], None]


class KubeApiStep(BaseStep):
    """A ZenML step built by this package's factories (function entrypoint + a ``spec`` parameter)."""

    _call_check: Optional[CallCheck] = None
    _inputs: Optional[tuple[str, ...]] = None

    @property
    def source_object(self) -> Any:
        """The entrypoint function (what ZenML shows and hashes)."""
        return self.entrypoint

    def resolve(self) -> Any:
        """Resolve to the entrypoint function, which ZenML loads at run time."""
        return source_utils.resolve(self.entrypoint, skip_validation=True)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Check the inputs bound when the step is called in the pipeline, then invoke as usual."""
        if self._inputs is not None:
            takes = ", ".join(self._inputs) or "none"
            if args:
                raise ResourceSpecError(
                    f"step {self.name!r} takes its inputs by name ({takes}), not by position; "
                    f"got {len(args)} positional argument(s)"
                )
            bound = {k: v for k, v in kwargs.items() if k not in _RESERVED_CALL_ARGS}
            refuse_unknown(self.name, bound, self._inputs)
            if self._call_check is not None:
                self._call_check(bound)
        return super().__call__(*args, **kwargs)


def _make_step(
    kind: str,
    spec: Mapping[str, Any],
    name: str,
    inputs: Sequence[str],
    outputs: Sequence[tuple[str, str]],
    check: Optional[CallCheck],
    step_options: Optional[Mapping[str, Any]],
) -> KubeApiStep:
    func = entrypoint_for(kind, tuple(inputs), tuple(outputs))
    options = dict(step_options or {})
    for key in ("name", "enable_cache", "parameters"):
        if key in options:
            raise ResourceSpecError(f"step_options: {key!r} is set by the factory; allowed: other zenml.step options")
    cls = type(func.__name__, (KubeApiStep,), {"entrypoint": staticmethod(func), "__module__": func.__module__})
    instance = cls(name=name, enable_cache=False, **options)
    instance.configure(parameters={"spec": dict(spec)})
    instance._call_check = check
    instance._inputs = tuple(inputs)
    return instance


def _outputs(names: Sequence[str], codes: Mapping[str, str], default: str = "any") -> list[tuple[str, str]]:
    return [(name, codes.get(name, default)) for name in names]


_OBJECT_OUTPUTS = {"name": "str", "manifest": "dict", "size": "str"}


def _given(bound: Mapping[str, Any], key: str) -> bool:
    return bound.get(key) is not None


def resource_step(
    k8s_resource: Any = None,
    *,
    action: str = "create",
    name: Optional[str] = None,
    merge_strategy: Optional[str] = None,
    api_version: Optional[str] = None,
    kind: Optional[str] = None,
    resource_name: Optional[str] = None,
    namespace: Optional[str] = None,
    success_condition: Optional[str] = None,
    failure_condition: Optional[str] = None,
    timeout: Optional[float] = RESOURCE_OPTIONS.timeout,
    attribute_outputs: Optional[Mapping[str, str]] = None,
    fail_on_events: Optional[Sequence[str]] = None,
    force: bool = False,
    cleanup: str = RESOURCE_OPTIONS.cleanup,
    set_owner_reference: Any = None,
    block_owner_deletion: bool = False,
    propagation_policy: str = "Background",
    wait_for_deletion: bool = False,
    kubeconfig: Optional[str] = None,
    context: Optional[str] = None,
    stream_logs: bool = True,
    step_options: Optional[Mapping[str, Any]] = None,
) -> BaseStep:
    """A step doing ``action`` (get/create/apply/delete/replace/patch) on any kind (KFP ``ResourceOp``).

    Args:
        k8s_resource: The object: dict, YAML/JSON text, file path or client model;
            JSON-patch operations with ``merge_strategy="json"``.
        action: ``get``, ``create`` (``generateName`` allowed), ``apply`` (server-side,
            field manager ``k8s-step-operator``), ``replace``, ``patch`` or ``delete``.
        name: The ZenML step name (default ``<action>_<kind>``).
        merge_strategy: For ``patch``: ``strategic`` (default; not for custom resources),
            ``merge`` or ``json``.
        api_version, kind, resource_name: Name the target without a manifest (needed
            with ``json``). The step input ``resource_name`` can also be bound to an
            upstream output at call time.
        namespace: Default: the ``k8s`` step operator's namespace, else the kubeconfig's.
        success_condition, failure_condition: Argo grammar (``status.succeeded>0``) or
            CEL over ``object``; evaluated on watch events. A failure condition's
            comma-separated requirements are OR'ed (Argo's behaviour); success ones AND'ed.
        timeout: Seconds to wait for the conditions (None: forever). The error shows
            the last-seen status.
        attribute_outputs: Output name → kubectl JSONPath, each a named step output.
        fail_on_events: Warning-event reasons on the object that fail the wait at once.
        force: Server-side apply takes conflicting fields over.
        cleanup: ``never`` (default), ``on-run-end`` or ``on-success`` (with
            :func:`cleanup_run_resources` as the pipeline hook).
        set_owner_reference: An owner object (apiVersion, kind, name) in the same
            namespace; the created object is garbage-collected with it.
        propagation_policy, wait_for_deletion: For ``delete``.
        kubeconfig, context: Use this kubeconfig instead of the stack's step operator.
        stream_logs: While the step waits on its conditions, stream the logs of the pods a
            created or applied Job or Pod starts (``[step]``, ``[step:container]``); False: do not.
        step_options: Extra ``zenml.step`` options (settings, retry, hooks...).
    """
    return _resource_step(
        k8s_resource,
        name,
        step_options,
        action=action,
        merge_strategy=merge_strategy,
        api_version=api_version,
        kind=kind,
        resource_name=resource_name,
        attribute_outputs=attribute_outputs,
        force=force,
        set_owner_reference=set_owner_reference,
        block_owner_deletion=block_owner_deletion,
        propagation_policy=propagation_policy,
        wait_for_deletion=wait_for_deletion,
        stream_logs=stream_logs,
        options=RESOURCE_OPTIONS.with_arguments(locals()),
    )


def _resource_step(
    k8s_resource: Any, name: Optional[str], step_options: Optional[Mapping[str, Any]], **spec_options: Any
) -> BaseStep:
    """A resource step on one object or several; ``spec_options`` go to the spec builder."""
    loaded = read_resource(k8s_resource) if k8s_resource is not None else None
    fields = placeholders(loaded)
    for item in loaded if isinstance(loaded, list) and is_object_list(loaded) else [loaded]:
        for key in ("apiVersion", "kind"):
            if isinstance(item, dict) and placeholders(item.get(key)):
                raise ResourceSpecError(
                    f"k8s_resource.{key}: cannot be bound when the step is called (the kind is resolved up front); "
                    "allowed: placeholders in other fields"
                )
    inputs = ("resource_name", *[f for f in fields if f != "resource_name"])
    if isinstance(loaded, list) and is_object_list(loaded):
        many = build_resource_list_spec(loaded, **spec_options)
        first = many.specs()[0]
        outputs = [(key, "list") for key in many.output_names]
        step_name = name or f"{first.action}_{first.kind.lower()}_list"
        inputs = tuple(f for f in inputs if f != "resource_name")
        return _make_step(
            "resources", many.to_dict(), step_name, inputs, outputs, _placeholder_check(fields), step_options
        )
    spec = build_resource_spec(loaded, name_from_input=True, **spec_options)

    def check(bound: Mapping[str, Any]) -> None:
        _placeholder_check(fields)(bound)
        if not spec.name and not spec.generate_name and not _given(bound, "resource_name"):
            raise ResourceSpecError(
                "resource_name: the step has no object name; give metadata.name, resource_name=... to the "
                "factory, or bind the step's resource_name input"
            )

    step_name = name or f"{spec.action}_{spec.kind.lower()}"
    outputs = _outputs(spec.output_names, _OBJECT_OUTPUTS)
    return _make_step("resource", spec.to_dict(), step_name, inputs, outputs, check, step_options)


def _read(k8s_resource: Any) -> Any:
    """A ``k8s_resource`` given as a file is read here, where the step is defined: the specs stay pure
    and the step's pod needs no copy of the file."""
    return read_resource(k8s_resource) if k8s_resource is not None else None


def _placeholder_check(fields: Sequence[str]) -> CallCheck:
    """Every ``{{inputs.NAME}}`` of the manifest must be bound when the step is called."""

    def check(bound: Mapping[str, Any]) -> None:
        missing = [field for field in fields if not _given(bound, field)]
        if missing:
            raise ResourceSpecError(
                f"{missing[0]}: k8s_resource uses {{{{inputs.{missing[0]}}}}}; bind it when calling the step "
                f"({', '.join(f'{f}=...' for f in fields)})"
            )

    return check


def delete_step(
    k8s_resource: Any = None,
    *,
    api_version: Optional[str] = None,
    kind: Optional[str] = None,
    resource_name: Optional[str] = None,
    name: Optional[str] = None,
    namespace: Optional[str] = None,
    propagation_policy: str = "Background",
    wait_for_deletion: bool = False,
    timeout: Optional[float] = DELETE_OPTIONS.timeout,
    kubeconfig: Optional[str] = None,
    context: Optional[str] = None,
    step_options: Optional[Mapping[str, Any]] = None,
) -> BaseStep:
    """A step deleting one object (not-found is fine); its only output is ``name``.

    The object's name may be bound at call time: ``delete_step(api_version="v1",
    kind="PersistentVolumeClaim")(resource_name=volume_name_output)``.
    ``wait_for_deletion`` watches until it is gone (finalizers such as
    ``kubernetes.io/pvc-protection`` keep a PVC while a pod mounts it — the
    timeout then says so).
    """
    return _resource_step(
        k8s_resource,
        name,
        step_options,
        action="delete",
        api_version=api_version,
        kind=kind,
        resource_name=resource_name,
        propagation_policy=propagation_policy,
        wait_for_deletion=wait_for_deletion,
        options=DELETE_OPTIONS.with_arguments(locals()),
    )


def volume_step(
    resource_name: Optional[str] = None,
    size: Any = None,
    *,
    name: Optional[str] = None,
    storage_class: Optional[str] = None,
    modes: Any = VOLUME_MODE_RWO,
    annotations: Optional[Mapping[str, str]] = None,
    data_source: Any = None,
    data_source_kind: str = "VolumeSnapshot",
    volume_name: Optional[str] = None,
    volume_mode: Optional[str] = None,
    k8s_resource: Any = None,
    generate_unique_name: bool = True,
    namespace: Optional[str] = None,
    success_condition: Optional[str] = None,
    failure_condition: Optional[str] = None,
    timeout: Optional[float] = VOLUME_OPTIONS.timeout,
    fail_on_events: Optional[Sequence[str]] = VOLUME_OPTIONS.fail_on_events,
    cleanup: str = VOLUME_OPTIONS.cleanup,
    kubeconfig: Optional[str] = None,
    context: Optional[str] = None,
    step_options: Optional[Mapping[str, Any]] = None,
) -> BaseStep:
    """A step creating a PersistentVolumeClaim (KFP ``VolumeOp``); outputs ``name``, ``manifest``, ``size``.

    Args:
        resource_name: Base name, DNS-1123 sanitized and prefixed with the run name
            unless ``generate_unique_name=False``.
        size: A Kubernetes quantity (``1Gi``, ``1.5Gi``, ``500M``...). May be left out
            with a data source: the snapshot's restoreSize (or the source claim's size).
        storage_class: StorageClass name (default: the cluster's default class;
            ``""``: none). Checked up front, including its ``accessModes`` parameter.
        modes: Access modes: ``VOLUME_MODE_RWO`` (default), ``VOLUME_MODE_RWM``,
            ``VOLUME_MODE_ROM`` or names/short forms (RWO, RWX, ROX, RWOP).
        annotations: Annotations on the claim.
        data_source: A VolumeSnapshot name (e.g. a snapshot step's ``name`` output),
            ``pvc/<name>`` to clone a claim, or a typed reference. Also a step input.
        data_source_kind: Kind a bare data_source name refers to (``VolumeSnapshot``
            or ``PersistentVolumeClaim``).
        volume_name: Bind to this PersistentVolume.
        k8s_resource: A whole PVC manifest instead of the options above (never both).
        success_condition, failure_condition: Default ``status.phase==Bound`` /
            ``status.phase==Lost``; no wait with a WaitForFirstConsumer class (the
            ``size`` output is then the requested size).
        fail_on_events: Warning-event reasons that fail at once (default ProvisioningFailed).
        cleanup: ``on-run-end`` (default), ``on-success`` or ``never``.
    """
    spec = build_volume_spec(
        resource_name,
        size,
        storage_class=storage_class,
        modes=modes,
        annotations=annotations,
        data_source=data_source,
        data_source_kind=data_source_kind,
        volume_name=volume_name,
        volume_mode=volume_mode,
        k8s_resource=_read(k8s_resource),
        generate_unique_name=generate_unique_name,
        options=VOLUME_OPTIONS.with_arguments(locals()),
        late_inputs=True,
    )

    def check(bound: Mapping[str, Any]) -> None:
        _check_late_inputs(spec, bound, VOLUME_INPUTS)
        given = bound.get("data_source")
        if given is None:
            if spec.k8s_resource is None and spec.size is None and spec.data_source is None and not _given(
                bound, "size"
            ):
                raise ResourceSpecError(
                    "size: required (a Kubernetes quantity such as '1Gi'); give it to volume_step(...) or bind the "
                    "step's size input; it may only be left out with a data_source"
                )
            return
        if spec.k8s_resource is not None:
            raise ResourceSpecError("data_source: not allowed with k8s_resource (put spec.dataSource in the manifest)")
        if spec.data_source is not None:
            raise ResourceSpecError(
                "data_source: given both to volume_step(...) and as a step input; give it in one place"
            )
        if isinstance(given, str):
            parse_data_source(given, default_kind=spec.data_source_kind)

    step_name = name or f"volume_{(spec.resource_name or 'pvc')}"
    outputs = _outputs(("name", "manifest", "size"), _OBJECT_OUTPUTS)
    return _make_step("volume", spec.to_dict(), _identifier(step_name), VOLUME_INPUTS, outputs, check, step_options)


def snapshot_step(
    resource_name: Optional[str] = None,
    *,
    name: Optional[str] = None,
    pvc: Optional[str] = None,
    volume: Any = None,
    snapshot_class: Optional[str] = None,
    annotations: Optional[Mapping[str, str]] = None,
    k8s_resource: Any = None,
    generate_unique_name: bool = True,
    namespace: Optional[str] = None,
    success_condition: Optional[str] = SNAPSHOT_OPTIONS.success_condition,
    failure_condition: Optional[str] = None,
    timeout: Optional[float] = SNAPSHOT_OPTIONS.timeout,
    fail_on_events: Optional[Sequence[str]] = None,
    cleanup: str = SNAPSHOT_OPTIONS.cleanup,
    kubeconfig: Optional[str] = None,
    context: Optional[str] = None,
    step_options: Optional[Mapping[str, Any]] = None,
) -> BaseStep:
    """A step creating a ``snapshot.storage.k8s.io/v1`` VolumeSnapshot (KFP ``VolumeSnapshotOp``).

    Exactly one source: ``pvc`` (a claim name) or ``volume`` (a volume step's
    ``name`` output or a V1Volume), given here or bound as step inputs
    (``snapshot_step("snap")(volume=vol_name)``). Waits for
    ``status.readyToUse==true``; outputs ``name``, ``manifest`` and ``size``
    (``status.restoreSize``). Restore with ``volume_step(data_source=<name output>)``.
    """
    spec = build_snapshot_spec(
        resource_name,
        pvc=pvc,
        volume=volume,
        snapshot_class=snapshot_class,
        annotations=annotations,
        k8s_resource=_read(k8s_resource),
        generate_unique_name=generate_unique_name,
        options=SNAPSHOT_OPTIONS.with_arguments(locals()),
        late_inputs=True,
    )

    def check(bound: Mapping[str, Any]) -> None:
        _check_late_inputs(spec, bound, SNAPSHOT_INPUTS)
        inputs = [key for key in ("pvc", "volume") if _given(bound, key)]
        if len(inputs) == 2:
            raise ResourceSpecError("pvc, volume: give exactly one of them, not both")
        if spec.k8s_resource is not None:
            if inputs:
                raise ResourceSpecError(f"{inputs[0]}: not allowed with k8s_resource (put spec.source in the manifest)")
            return
        if inputs and spec.pvc is not None:
            raise ResourceSpecError(
                f"pvc, volume: the source was given to snapshot_step(...) ({spec.pvc!r}) and as the step input "
                f"{inputs[0]!r}; give exactly one"
            )
        if not inputs and spec.pvc is None:
            raise ResourceSpecError(
                "pvc, volume: the snapshot step has no source; give pvc=... or volume=... (e.g. a volume step's "
                "name output)"
            )

    step_name = name or f"snapshot_{(spec.resource_name or 'volume')}"
    outputs = _outputs(("name", "manifest", "size"), _OBJECT_OUTPUTS)
    return _make_step("snapshot", spec.to_dict(), _identifier(step_name), SNAPSHOT_INPUTS, outputs, check, step_options)


def _check_late_inputs(spec: Any, bound: Mapping[str, Any], names: Sequence[str]) -> None:
    """Inputs that k8s_resource excludes, given twice, or a resource_name given nowhere."""
    if spec.k8s_resource is not None:
        given = [key for key in names if _given(bound, key)]
        if given:
            raise ResourceSpecError(f"{given[0]}: not allowed with k8s_resource (the manifest says it all)")
        return
    for key in ("resource_name", "size", "storage_class", "snapshot_class", "annotations"):
        defined = getattr(spec, key, None)
        if key in names and defined not in (None, {}) and _given(bound, key):
            raise ResourceSpecError(
                f"{key}: given both when the step was defined ({defined!r}) and as a step input; give it in one place"
            )
    if spec.resource_name is None and not _given(bound, "resource_name"):
        raise ResourceSpecError(
            "resource_name: required (a name; it is sanitized to DNS-1123 and prefixed with the run name); give "
            "it to the factory or bind the step's resource_name input"
        )


def _identifier(text: str) -> str:
    """A readable step name from a resource name (``my-pvc`` → ``volume_my_pvc``)."""
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in text)


def cel_step(expression: str, *, name: Optional[str] = None, step_options: Optional[Mapping[str, Any]] = None) -> BaseStep:
    """A step evaluating a CEL expression over its inputs (KFP-Tekton's ``CEL_ConditionOp``); output ``outcome``.

    The expression's free variables are the step's inputs, bound when it is
    called: ``cel_step("flip == 'heads'")(flip=flip_output)``. It is compiled
    here, so a syntax error fails the pipeline definition. In a dynamic
    pipeline, feed its outcome to :func:`k8s_step_operator.steps.run_when`.
    """
    spec = build_cel_spec(expression)

    def check(bound: Mapping[str, Any]) -> None:
        check_cel_call(spec, step_name, bound)

    step_name = name or "condition_cel"
    return _make_step(
        "cel", spec.to_dict(), _identifier(step_name), spec.variables, [(CEL_OUTPUT, "any")], check, step_options
    )


def custom_task_step(
    api_version: str,
    kind: str,
    name: str,
    *,
    task_spec: Optional[Mapping[str, Any]] = None,
    task_ref: Any = None,
    params: Optional[Mapping[str, Any]] = None,
    results: Sequence[str] = (),
    step_name: Optional[str] = None,
    namespace: Optional[str] = None,
    success_condition: Optional[str] = None,
    failure_condition: Optional[str] = None,
    timeout: Optional[float] = CUSTOM_TASK_OPTIONS.timeout,
    cleanup: str = CUSTOM_TASK_OPTIONS.cleanup,
    kubeconfig: Optional[str] = None,
    context: Optional[str] = None,
    step_options: Optional[Mapping[str, Any]] = None,
) -> BaseStep:
    """A step running a Tekton custom task (KFP-Tekton's custom-task ContainerOp) as a ``CustomRun``.

    Args:
        api_version, kind: The custom task's type (what its controller reconciles).
        name: The custom task's name; the run is named ``<name>-<random>``.
        task_spec: The task's spec, embedded (``spec.customSpec``); or
        task_ref: the name (or ``{"name": ...}``) of a task object (``spec.customRef``).
        params: Param names and default values (``spec.params``); each is also a step
            input that can be bound when the step is called; ``REQUIRED`` means it must be.
        results: The run's ``status.results`` to output (the seed's ``file_outputs``),
            after ``name`` and ``manifest``; a missing one fails the step.
        success_condition, failure_condition: Instead of the ``Succeeded`` condition
            (Argo grammar or CEL over ``object``).
        cleanup: ``on-run-end`` (default), ``on-success`` or ``never`` for the run object.
    """
    spec = build_custom_task_spec(
        api_version,
        kind,
        name,
        task_spec=task_spec,
        task_ref=task_ref,
        params=params,
        results=results,
        options=CUSTOM_TASK_OPTIONS.with_arguments(locals()),
    )
    inputs = tuple(spec.params)

    def check(bound: Mapping[str, Any]) -> None:
        required = [key for key, value in spec.params.items() if value == REQUIRED and not _given(bound, key)]
        if required:
            raise ResourceSpecError(
                f"{required[0]}: the custom task's param {required[0]!r} is required; bind it when calling the step"
            )

    label = step_name or _identifier(f"{kind.lower()}_{name}")
    outputs = _outputs(spec.output_names, _OBJECT_OUTPUTS)
    return _make_step("custom_task", spec.to_dict(), label, inputs, outputs, check, step_options)
